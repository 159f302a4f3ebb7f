"""Cash in a real browser: a partial payment from the invoice page, a webhook payment naming no invoice,
finance applies that unapplied cash, the invoice ends paid and the list shows no unapplied cash left."""

from __future__ import annotations

import datetime
import json
import re

import pytest
from django.test import Client as DjangoClient
from playwright.sync_api import expect

from billing.models import Invoice
from integrations.services.clients import integration_client_create
from integrations.services.webhooks import signature_header
from tests.disputes.payments.factories import issued_invoice
from tests.factories import UserFactory
from tests.login import log_in as form_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(page, username: str, next_url: str) -> None:
    """The login form, then the TOTP code when the user must pass two-factor (tests/login.py)."""
    form_log_in(page, username, next_url)


def test_partial_payment_then_unapplied_cash_applied(e2e_settings, new_page, shoot):
    UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"])
    invoice = issued_invoice(total="1190.00")
    page = new_page()
    log_in(page, "ana", f"/billing/invoices/{invoice.pk}/")

    # 1. Finance records a partial payment on the invoice page.
    panel = page.locator("section[aria-labelledby=payments-title]")
    panel.get_by_text("Record payment…").click()
    panel.get_by_label("Amount (EUR)").fill("500.00")
    panel.get_by_label("Payment reference (bank transaction id)").fill("BANK-E2E-1")
    panel.get_by_role("button", name="Record payment").click()
    expect(page.locator(".messages")).to_contain_text(f"applied to {invoice.number}; balance now 690.00 EUR")
    expect(page.locator(".page-header")).to_contain_text("Partially paid")
    expect(panel).to_contain_text("BANK-E2E-1")
    shoot(page, "payments-invoice-partial")

    # 2. The bank's webhook reports the rest, quoting a mistyped invoice number: unapplied cash.
    _client, _token, secret = integration_client_create(name="bank-e2e", scopes=["webhooks:payments"])
    event = {"id": "evt_e2e", "type": "payment.received", "data": {
        "amount": "690.00", "currency": "EUR", "date": datetime.date.today().isoformat(),
        "invoice_number": invoice.number.replace("-", ""), "payer_reference": invoice.client.code,
        "payment_reference": "TRX-E2E-2"}}
    raw = json.dumps(event).encode()
    answer = DjangoClient().post("/api/v1/webhooks/payments/", data=raw, content_type="application/json",
                                 HTTP_X_BILLABLE_CLIENT="bank-e2e",
                                 HTTP_X_BILLABLE_SIGNATURE=signature_header(secret=secret, body=raw))
    assert answer.status_code == 202, answer.content

    # 3. Finance finds it in unapplied cash, chooses the invoice among the payer's open ones and applies it.
    page.goto("/disputes/payments/")
    unapplied = page.locator("section[aria-labelledby=unapplied-title]")
    expect(unapplied).to_contain_text("690.00")
    expect(unapplied).to_contain_text("PAYMENT_UNMATCHED")
    shoot(page, "payments-list-unapplied")
    unapplied.get_by_role("link", name="Apply or refund…").click()
    page.get_by_role("link", name="Choose").click()
    expect(page.get_by_label("Invoice number")).to_have_value(invoice.number)
    page.get_by_label("Reason").first.fill("Remittance advice names the invoice without dashes")
    page.get_by_role("button", name=re.compile(r"^Apply ")).click()
    expect(page.locator(".messages")).to_contain_text(f"applied to {invoice.number}")
    expect(page.locator("section[aria-labelledby=unapplied-title]")).to_contain_text(
        "Every payment received is applied or settled.")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == (Invoice.Status.PAID, 0)
    page.goto(f"/billing/invoices/{invoice.pk}/")
    expect(page.locator(".page-header")).to_contain_text("Paid")
    shoot(page, "payments-invoice-paid")
