"""Webhook routes (namespace `api`): signed payment events, and the payments write API."""

from django.urls import path

from integrations.api import webhooks

urlpatterns: list = [
    path("webhooks/payments/", webhooks.PaymentWebhookView.as_view(), name="webhook_payments"),
]
