"""Finding 6 of issue 12: unauthenticated payment webhooks store nothing, reveal nothing, and are throttled.

Before: every unsigned or wrongly signed delivery of a known client stored a "rejected" event (an
unauthenticated caller could fill the table, unthrottled), and the error codes told an unknown client
(`unknown_client`) from a known one with a bad signature (`signature_invalid`). Now every delivery that
does not prove the client's secret gets the same 401 and stores nothing; an address that keeps trying
is answered 429 without any check.
"""
from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django.test import Client

from billing.models import Payment
from integrations.models import WebhookEvent
from integrations.services.clients import integration_client_create, integration_client_revoke
from integrations.services.webhooks import signature_header

URL = "/api/v1/webhooks/payments/"
pytestmark = [pytest.mark.django_db, pytest.mark.control("webhook-authenticity")]

EVENT = {"id": "evt_1", "type": "payment.received",
         "data": {"amount": "100.00", "currency": "EUR", "date": "2025-04-20", "invoice_number": "X",
                  "payer_reference": "", "payment_reference": "TRX-1"}}
RAW = json.dumps(EVENT).encode()


@pytest.fixture(autouse=True)
def _fresh_counts(settings):
    settings.WEBHOOK_AUTH_FAILURES_PER_MINUTE = 20
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def provider():
    client, _token, secret = integration_client_create(name="bank-hook", scopes=["webhooks:payments"])
    return client, secret


def deliver(*, name: str, signature: str | None, raw: bytes = RAW, ip: str = "198.51.100.7"):
    headers = {"HTTP_X_BILLABLE_CLIENT": name, "REMOTE_ADDR": ip}
    if signature is not None:
        headers["HTTP_X_BILLABLE_SIGNATURE"] = signature
    return Client().post(URL, data=raw, content_type="application/json", **headers)


def _answer(response) -> tuple[int, dict]:
    return response.status_code, response.json()


def test_unknown_client_and_bad_signature_get_the_same_answer_and_store_nothing(provider):
    _client, secret = provider
    wrong = signature_header(secret="guessed", body=RAW)
    answers = {
        "unknown client, signed": deliver(name="nobody", signature=signature_header(secret=secret, body=RAW)),
        "unknown client, unsigned": deliver(name="nobody", signature=None),
        "known client, unsigned": deliver(name="bank-hook", signature=None),
        "known client, wrong secret": deliver(name="bank-hook", signature=wrong),
        "known client, garbage": deliver(name="bank-hook", signature="t=abc,v1=zz"),
        "known client, stale": deliver(
            name="bank-hook", signature=signature_header(secret=secret, body=RAW, timestamp=int(time.time()) - 3600)),
        "known client, tampered": deliver(
            name="bank-hook", signature=signature_header(secret=secret, body=RAW),
            raw=RAW.replace(b"100.00", b"900.00")),
    }
    bodies = {label: _answer(response) for label, response in answers.items()}

    assert len({json.dumps(body, sort_keys=True) for body in bodies.values()}) == 1, bodies
    status, body = next(iter(bodies.values()))
    assert status == 401 and body["code"] == "unauthenticated"
    assert "bank-hook" not in json.dumps(body) and "nobody" not in json.dumps(body)
    assert not WebhookEvent.objects.exists()
    assert not Payment.objects.exists()


def test_a_revoked_client_looks_like_an_unknown_one(provider):
    client, secret = provider
    unknown = _answer(deliver(name="nobody", signature=signature_header(secret=secret, body=RAW)))
    integration_client_revoke(name=client.name)
    revoked = _answer(deliver(name="bank-hook", signature=signature_header(secret=secret, body=RAW)))

    assert revoked == unknown
    assert not WebhookEvent.objects.exists()


def test_a_signed_delivery_is_still_applied_and_stored(provider):
    _client, secret = provider
    response = deliver(name="bank-hook", signature=signature_header(secret=secret, body=RAW))
    assert response.status_code == 202  # invoice X is unknown: recorded for finance
    assert WebhookEvent.objects.get().event_id == "evt_1"


def test_unauthenticated_deliveries_are_throttled_per_address(provider):
    _client, secret = provider
    codes = [deliver(name="nobody", signature=None).status_code for _ in range(25)]

    assert codes[:20] == [401] * 20
    assert set(codes[20:]) == {429}
    throttled = deliver(name="bank-hook", signature=signature_header(secret=secret, body=RAW))
    assert throttled.status_code == 429 and throttled["Retry-After"] == "60"
    assert throttled.json()["code"] == "throttled"
    assert not WebhookEvent.objects.exists()
    # Another address is not concerned; a genuine sender elsewhere goes through.
    other = deliver(name="bank-hook", signature=signature_header(secret=secret, body=RAW), ip="203.0.113.9")
    assert other.status_code == 202


def test_signed_deliveries_do_not_count_towards_the_throttle(provider):
    _client, secret = provider
    for n in range(25):
        raw = json.dumps({**EVENT, "id": f"evt_{n}", "data": {**EVENT["data"], "payment_reference": f"T-{n}"}}).encode()
        assert deliver(name="bank-hook", signature=signature_header(secret=secret, body=raw), raw=raw).status_code \
            in (200, 202)
