"""The Peppol access point's delivery receipts are applied only when signed with the configured secret.

A forged "rejected" receipt would open a delivery finding and mark a delivered invoice failed; a
forged "delivered" one would hide a rejection. Every receipt that does not prove the secret — unsigned,
signed with another secret, stale, or any signature while no secret is configured — gets the same 401
and changes nothing; those count towards the per-address throttle of the webhooks.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django.test import Client as HttpClient
from django.utils import timezone

from billing.models import DeliveryAttempt, InvoiceException
from integrations.services.webhooks import signature_header
from tests.factories import InvoiceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("webhook-authenticity")]

URL = "/api/v1/webhooks/peppol/"
SECRET = "ap-secret"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PEPPOL_AP_WEBHOOK_SECRET = SECRET
    settings.WEBHOOK_AUTH_FAILURES_PER_MINUTE = 20
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def attempt():
    invoice = InvoiceFactory()
    return DeliveryAttempt.objects.create(invoice=invoice, to="Peppol 0208:0403019261", attempted_at=timezone.now(),
                                          message_id="TX-000042", result="sent", channel="peppol")


def body(kind: str = "rejected") -> bytes:
    return json.dumps({"id": "evt-1", "type": f"transmission.{kind}", "transmission_id": "TX-000042",
                       "errors": [{"code": "PEPPOL-EN16931-R053", "text": "forged"}]}).encode()


def deliver(raw: bytes, signature: str | None, ip: str = "203.0.113.9"):
    headers = {"REMOTE_ADDR": ip}
    if signature is not None:
        headers["HTTP_X_BILLABLE_SIGNATURE"] = signature
    return HttpClient().post(URL, data=raw, content_type="application/json", **headers)


def unchanged(attempt: DeliveryAttempt) -> bool:
    attempt.refresh_from_db()
    return (attempt.receipt == "" and attempt.result == "sent"
            and not InvoiceException.objects.filter(invoice=attempt.invoice_id).exists())


def test_unsigned_wrongly_signed_and_stale_receipts_change_nothing(attempt):
    raw = body()
    answers = [
        deliver(raw, None),
        deliver(raw, signature_header(secret="guessed", body=raw)),
        deliver(raw, signature_header(secret=SECRET, body=raw, timestamp=int(time.time()) - 3600)),
        deliver(body("delivered"), signature_header(secret=SECRET, body=raw)),  # signature of another body
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.json()["message"] for a in answers}) == 1
    assert unchanged(attempt)


def test_without_a_configured_secret_every_receipt_is_refused(attempt, settings):
    settings.PEPPOL_AP_WEBHOOK_SECRET = ""
    raw = body()
    assert deliver(raw, signature_header(secret="", body=raw)).status_code == 401
    assert unchanged(attempt)


def test_refused_receipts_are_throttled_per_address(attempt, settings):
    settings.WEBHOOK_AUTH_FAILURES_PER_MINUTE = 3
    raw = body()
    codes = [deliver(raw, "t=1,v1=00").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert deliver(raw, signature_header(secret=SECRET, body=raw), ip="203.0.113.10").status_code == 200


def test_a_signed_receipt_is_applied(attempt):
    raw = body()
    answer = deliver(raw, signature_header(secret=SECRET, body=raw))
    assert answer.status_code == 200
    attempt.refresh_from_db()
    assert attempt.receipt == "rejected" and "PEPPOL-EN16931-R053" in attempt.receipt_detail
