"""POST /api/v1/payments/ (write:payments): record through payment_record, Idempotency-Key, reference idempotency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from billing.models import Invoice, Payment
from integrations.services.clients import integration_client_create
from tests.disputes.payments.factories import issued_invoice
from tests.factories import ClientFactory
from tests.integrations.api.helpers import assert_error

URL = "/api/v1/payments/"
pytestmark = pytest.mark.django_db


def api(scopes: list[str], name: str = "erp-mw") -> tuple[APIClient, object]:
    client, token, _secret = integration_client_create(name=name, scopes=scopes)
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return http, client


def body(invoice_number: str = "", **kwargs) -> dict:
    return {"amount": "100.00", "currency": "EUR", "date": "2025-04-20", "external_reference": "ERP-PAY-1",
            "invoice_number": invoice_number, **kwargs}


def test_record_a_payment_with_an_idempotency_key():
    http, client = api(["write:payments", "read:billing"])
    invoice = issued_invoice(total="250.00")
    response = http.post(URL, body(invoice.number), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["invoice_number"], data["amount"], data["source"], data["exceptions"]) == (
        invoice.number, "100.00", "api", [])
    assert response["Location"].endswith(f"/api/v1/payments/{data['id']}/")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PARTIALLY_PAID, Decimal("100.00"))
    assert Payment.objects.get().recorded_by == client.user

    again = http.post(URL, body(invoice.number), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == data
    other = http.post(URL, body(invoice.number, amount="5.00"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert_error(other, 409, "idempotency_key_reused")
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")
    # The list still answers GET on the same path.
    listing = http.get(URL)
    assert listing.status_code == 200 and [p["external_reference"] for p in listing.json()["results"]] == [
        "ERP-PAY-1"]


def test_same_reference_new_key_answers_200_or_409():
    http, _client = api(["write:payments"])
    invoice = issued_invoice(total="250.00")
    assert http.post(URL, body(invoice.number), format="json", HTTP_IDEMPOTENCY_KEY="a").status_code == 201
    same = http.post(URL, body(invoice.number), format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert same.status_code == 200
    assert_error(http.post(URL, body(invoice.number, amount="7.00"), format="json", HTTP_IDEMPOTENCY_KEY="c"),
                 409, "conflict")
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")


def test_unknown_invoice_is_unapplied_cash_with_the_exception_in_the_answer():
    http, _client = api(["write:payments"])
    payer = ClientFactory(code="ACME")
    response = http.post(URL, body("NOPE", client="ACME"), format="json", HTTP_IDEMPOTENCY_KEY="u")
    assert response.status_code == 201
    data = response.json()
    assert (data["invoice"], data["client"]) == (None, payer.code)
    assert [e["code"] for e in data["exceptions"]] == ["PAYMENT_UNMATCHED"]


def test_overpayment_answer_names_the_excess():
    http, _client = api(["write:payments"])
    invoice = issued_invoice(total="80.00")
    response = http.post(URL, body(invoice.number), format="json", HTTP_IDEMPOTENCY_KEY="o")
    assert response.status_code == 201
    [excess] = response.json()["exceptions"]
    assert (excess["code"], excess["amount"], excess["payment_reference"]) == ("OVERPAYMENT", "20.00", "ERP-PAY-1~1")


def test_scope_key_and_validation():
    reader, _ = api(["read:billing"], name="reader")
    assert_error(reader.post(URL, body(), format="json", HTTP_IDEMPOTENCY_KEY="x"), 403, "insufficient_scope")
    http, _ = api(["write:payments"])
    assert_error(http.post(URL, body(), format="json"), 400, "idempotency_key_missing")
    bad = http.post(URL, body(amount="-1", currency="eur", client="NOBODY"), format="json", HTTP_IDEMPOTENCY_KEY="v")
    error = assert_error(bad, 400, "invalid")
    assert {"amount", "currency"} <= set(error["field_errors"])
    unknown_client = http.post(URL, body(client="NOBODY"), format="json", HTTP_IDEMPOTENCY_KEY="w")
    assert "client" in assert_error(unknown_client, 400, "invalid")["field_errors"]
    jpy = http.post(URL, body(currency="JPY", amount="10.50"), format="json", HTTP_IDEMPOTENCY_KEY="j")
    assert "amount" in assert_error(jpy, 400, "invalid")["field_errors"]
    assert not Payment.objects.exists()
