"""POST /api/v1/webhooks/payments/: signature, tolerance, replay (also concurrent), business outcomes, no 500."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client as DjangoClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Invoice, InvoiceException, Payment
from integrations.models import WebhookEvent
from integrations.services.clients import integration_client_create
from integrations.services.webhooks import signature_header
from tests.disputes.payments.factories import issued_invoice
from tests.integrations.api.helpers import assert_error

URL = "/api/v1/webhooks/payments/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(db):
    client, _token, secret = integration_client_create(name="bank-hook", scopes=["webhooks:payments"])
    return client, secret


def event(invoice_number: str = "", *, event_id: str = "evt_1", amount: str = "100.00", currency: str = "EUR",
          reference: str = "TRX-1", payer: str = "") -> dict:
    return {
        "id": event_id,
        "type": "payment.received",
        "created_at": "2025-04-20T09:00:00Z",
        "data": {"amount": amount, "currency": currency, "date": "2025-04-20", "invoice_number": invoice_number,
                 "payer_reference": payer, "payment_reference": reference},
    }


def post(body: dict | bytes, *, name: str = "bank-hook", secret: str | None = None, timestamp: int | None = None,
         signature: str | None = None, http=None, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if signature is None and secret is not None:
        signature = signature_header(secret=secret, body=raw, timestamp=timestamp)
    extra = {"HTTP_X_BILLABLE_CLIENT": name}
    if signature is not None:
        extra["HTTP_X_BILLABLE_SIGNATURE"] = signature
    extra.update(headers)
    return (http or DjangoClient()).post(URL, data=raw, content_type="application/json", **extra)


def test_a_signed_payment_is_applied(provider):
    client, secret = provider
    invoice = issued_invoice(total="100.00")
    response = post(event(invoice.number), secret=secret, HTTP_X_CORRELATION_ID="trace-0001-abc")
    assert response.status_code == 200, response.content
    assert response["X-Correlation-ID"] == "trace-0001-abc"
    body = response.json()
    assert (body["result"], body["replay"], body["payment_reference"]) == ("applied", False, "TRX-1")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, Decimal("100.00"))
    payment = Payment.objects.get()
    assert (payment.source, payment.recorded_by) == ("webhook", client.user)
    stored = WebhookEvent.objects.get()
    assert (stored.event_id, stored.result, stored.payment, stored.correlation_id) == (
        "evt_1", "applied", payment, "trace-0001-abc")


def test_bad_signature_is_401_and_stores_nothing(provider):
    _client, secret = provider
    invoice = issued_invoice(total="100.00")
    response = post(event(invoice.number), secret="not-the-secret")
    assert_error(response, 401, "unauthenticated")
    assert "X-Correlation-ID" in response
    assert not WebhookEvent.objects.exists()  # an unauthenticated caller cannot fill the database
    # The genuine event with the same id is still applied afterwards.
    assert post(event(invoice.number), secret=secret).status_code == 200
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")


def test_tampered_body_missing_signature_unknown_client(provider):
    _client, secret = provider
    raw = json.dumps(event("X")).encode()
    good = signature_header(secret=secret, body=raw)
    assert_error(post(raw.replace(b"100.00", b"900.00"), signature=good), 401, "unauthenticated")
    assert_error(post(raw), 401, "unauthenticated")
    assert_error(post(raw, signature="t=abc,v1=zz"), 401, "unauthenticated")
    assert_error(post(raw, name="nobody", secret=secret), 401, "unauthenticated")
    assert not Payment.objects.exists()
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_401(provider, skew):
    _client, secret = provider
    response = post(event("X"), secret=secret, timestamp=int(time.time()) + skew)
    assert_error(response, 401, "unauthenticated")
    assert not WebhookEvent.objects.exists()


def test_within_tolerance_is_accepted(provider):
    _client, secret = provider
    response = post(event("UNKNOWN"), secret=secret, timestamp=int(time.time()) - 290)
    assert response.status_code == 202


def test_client_without_scope_or_secret_or_revoked(db):
    client, _token, secret = integration_client_create(name="psa", scopes=["read:billing"])
    assert_error(post(event("X"), name="psa", secret=secret), 403, "insufficient_scope")
    client.webhook_secret = ""
    client.save()
    assert_error(post(event("X"), name="psa", secret=secret), 401, "unauthenticated")
    assert not Payment.objects.exists()


def test_replay_is_acknowledged_with_the_same_body_and_not_applied_twice(provider):
    _client, secret = provider
    invoice = issued_invoice(total="300.00")
    first = post(event(invoice.number), secret=secret)
    again = post(event(invoice.number), secret=secret)
    assert (first.status_code, again.status_code) == (200, 200)
    assert {**first.json(), "replay": True} == again.json()
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")
    assert (Payment.objects.count(), WebhookEvent.objects.count()) == (1, 1)


def test_unknown_invoice_is_an_exception_for_finance_acknowledged_202(provider):
    _client, secret = provider
    issued = issued_invoice(total="100.00")
    response = post(event("NOPE-404", payer=issued.client.code), secret=secret)
    assert response.status_code == 202
    assert response.json()["result"] == "exception" and "PAYMENT_UNMATCHED" in response.json()["detail"]
    payment = Payment.objects.get()
    assert (payment.invoice, payment.client) == (None, issued.client)  # the payer is known: its unapplied cash
    assert InvoiceException.objects.get().code == "PAYMENT_UNMATCHED"
    assert WebhookEvent.objects.get().result == "exception"


def test_currency_mismatch_is_an_exception(provider):
    _client, secret = provider
    invoice = issued_invoice(total="100.00")
    response = post(event(invoice.number, currency="USD"), secret=secret)
    assert response.status_code == 202
    assert InvoiceException.objects.get(invoice=invoice).code == "PAYMENT_CURRENCY_MISMATCH"


def test_overpayment_applies_the_balance_and_flags_the_excess(provider):
    _client, secret = provider
    invoice = issued_invoice(total="100.00")
    response = post(event(invoice.number, amount="130.00"), secret=secret)
    assert response.status_code == 202 and "OVERPAYMENT" in response.json()["detail"]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, Decimal("100.00"))
    exception = InvoiceException.objects.get()
    assert (exception.code, exception.amount) == ("OVERPAYMENT", Decimal("30.00"))


def test_same_payment_reference_with_other_data_is_409_and_not_applied(provider):
    _client, secret = provider
    invoice = issued_invoice(total="500.00")
    assert post(event(invoice.number, amount="100.00"), secret=secret).status_code == 200
    response = post(event(invoice.number, event_id="evt_2", amount="200.00"), secret=secret)
    assert_error(response, 409, "conflict")
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")
    assert WebhookEvent.objects.filter(result="rejected").count() == 1


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "parse_error"),
        (b"[1, 2]", "invalid"),
        (json.dumps({"id": "e", "type": "payment.refunded", "data": {}}).encode(), "invalid"),
        (json.dumps(event("X", amount="-5")).encode(), "invalid"),
        (json.dumps(event("X", currency="eur")).encode(), "invalid"),
        (json.dumps(event("X", reference="A~1")).encode(), "invalid"),
        (json.dumps(event("X", event_id="rejected:x")).encode(), "invalid"),
    ],
)
def test_invalid_events_are_400_in_the_error_shape(provider, raw, code):
    _client, secret = provider
    assert_error(post(raw, secret=secret), 400, code)
    assert WebhookEvent.objects.get().result == "rejected"
    assert not Payment.objects.exists()


def test_body_too_large_is_413(provider):
    _client, secret = provider
    raw = b'{"pad": "' + b"x" * (70 * 1024) + b'"}'
    assert_error(post(raw, secret=secret), 413, "too_large")


def test_get_is_not_allowed(provider):
    assert DjangoClient().get(URL).status_code == 405


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(st.sampled_from(["id", "type", "data", "x"]),
                        st.one_of(st.none(), st.text(max_size=20), st.integers(), st.floats(allow_nan=True),
                                  st.dictionaries(st.sampled_from(["amount", "currency", "date", "invoice_number",
                                                                   "payment_reference", "payer_reference"]),
                                                  st.one_of(st.text(max_size=12), st.integers(), st.none(),
                                                            st.floats())))),
    ),
    signed=st.booleans(),
)
def test_no_input_ever_makes_a_500(provider, data, signed):
    _client, secret = provider
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    response = post(raw, secret=secret if signed else None, signature=None if signed else "t=1,v1=00")
    assert response.status_code in (200, 202, 400, 401, 409), response.content
    assert set(response.json()) >= {"code", "message", "field_errors"} or "event_id" in response.json()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_apply_the_payment_once():
    """Eight deliveries of one event at once (real threads, own connections): one payment, the rest replays."""
    _client, _token, secret = integration_client_create(name="bank-race", scopes=["webhooks:payments"])
    invoice = issued_invoice(total="100.00")
    raw = json.dumps(event(invoice.number, event_id="evt_race", reference="TRX-race")).encode()
    results: list[tuple[int, bool]] = []
    barrier = threading.Barrier(8)

    def deliver():
        try:
            barrier.wait(timeout=10)
            response = post(raw, name="bank-race", secret=secret)
            results.append((response.status_code, response.json().get("replay")))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [(200, False)] + [(200, True)] * 7
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")
    assert (Payment.objects.count(), WebhookEvent.objects.filter(event_id="evt_race").count()) == (1, 1)
