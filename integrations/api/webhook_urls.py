"""Webhook routes (namespace `api`): signed payment events, and the payments write API."""

from django.urls import path

from integrations.api import peppol_receipts, webhooks

urlpatterns: list = [
    path("webhooks/payments/", webhooks.PaymentWebhookView.as_view(), name="webhook_payments"),
    path("webhooks/peppol/", peppol_receipts.PeppolReceiptWebhookView.as_view(), name="webhook_peppol"),
]
