"""Signed payment webhooks (docs/rules/integrations.md): verify, store the event once, apply the payment once.

The payment provider (or the bank middleware) posts `payment.received` events to
`POST /api/v1/webhooks/payments/` (docs/manual/payments.md, ADR 0023):

- `X-Billable-Client: <integration client name>` names the sender; the client must be active,
  hold the scope `webhooks:payments` and have a `webhook_secret`.
- `X-Billable-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>` —
  compared in constant time (`hmac.compare_digest`); `t` must be within 5 minutes of our clock,
  either way. Several `v1=` entries may be sent (secret rotation): one match is enough.
- The event id is unique per client (`WebhookEvent`, a database constraint): the first delivery
  is stored and applied in one transaction; a replay — also one racing the first — gets the
  first answer again (200, `"replay": true`) and changes nothing.
- The payment goes through `billing.services.payments.payment_record` as the client's service
  user: unknown invoice, other currency, overpayment or a closed invoice become exceptions for
  finance and the event is still acknowledged (202). Never a 500 for a business outcome.
- A delivery that does not prove the client's secret (unknown or revoked client, no secret,
  signature missing, wrong or stale) is answered 401 `unauthenticated`, always the same, and
  stores nothing (the reason is logged); an address that sends more than
  `WEBHOOK_AUTH_FAILURES_PER_MINUTE` of those in a minute is answered 429 without any check.
- Rejected deliveries of an authenticated client (missing scope, not JSON, invalid event) are stored
  with result `rejected` under a generated id (`rejected:<uuid>`), so a broken delivery can never
  claim the id of a genuine event.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from billing.models import Client, InvoiceException, Payment
from billing.services.payments import payment_family, payment_record
from integrations.middleware import current_correlation_id
from integrations.models import IntegrationClient, WebhookEvent
from kernel.errors import ApplicationError

logger = logging.getLogger(__name__)

CLIENT_HEADER = "X-Billable-Client"
SIGNATURE_HEADER = "X-Billable-Signature"
SCOPE = "webhooks:payments"
EVENT_TYPE = "payment.received"
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
REJECTED_PREFIX = "rejected:"


class WebhookRejected(ApplicationError):
    """A delivery refused before anything is applied; `status_code` is the HTTP answer."""

    def __init__(self, message: str, *, code: str, status_code: int = 401, field_errors: dict | None = None):
        super().__init__(message, code=code, field_errors=field_errors)
        self.status_code = status_code


@dataclass(frozen=True)
class WebhookAnswer:
    status_code: int
    body: dict[str, Any]
    event: WebhookEvent


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Billable-Signature` value a sender computes (used by tests, the demo and the manual)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(*, secret: str, header: str, body: bytes, now: float | None = None) -> int:
    """Check the signature over `t.body` in constant time and the 5-minute window; returns `t`."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise WebhookRejected(
            f"Send {SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256 of 't.body'>.", code="signature_missing"
        )
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise WebhookRejected(
            f"The signature timestamp is more than {TOLERANCE_SECONDS // 60} minutes from our clock "
            "(a replayed or delayed delivery, or a skewed clock).",
            code="timestamp_out_of_tolerance",
        )
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in signatures):
        raise WebhookRejected("The signature does not match the body and the client's webhook secret.",
                              code="signature_invalid")
    return timestamp


def webhook_client(name: str) -> IntegrationClient | None:
    name = (name or "").strip().lower()
    if not name or len(name) > 100:
        return None
    return IntegrationClient.objects.select_related("user").filter(name=name).first()


#: The one answer to every delivery that does not prove the client's secret (ADR 0023, issue 12 finding 6):
#: whether the client is unknown, revoked, without a secret, or the signature missing, wrong or stale is
#: told to nobody — the operators read it in the log.
UNAUTHENTICATED_MESSAGE = (
    f"Not authenticated. Send {CLIENT_HEADER} with your integration client's name and "
    f"{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, 't.' + raw body)>, "
    f"within {TOLERANCE_SECONDS // 60} minutes of our clock."
)
#: A secret no client has: an unknown client's signature is checked against it, so the answer takes as long.
_NO_SECRET = uuid.uuid4().hex


def _unauthenticated(reason: str, client_name: str) -> WebhookRejected:
    logger.warning("Payment webhook refused (%s) for client %r", reason, (client_name or "")[:100])
    return WebhookRejected(UNAUTHENTICATED_MESSAGE, code="unauthenticated", status_code=401)


def authenticate(*, client_name: str, signature: str, body: bytes, now: float | None = None) -> IntegrationClient:
    """The sending client, when known, active, allowed and the signature holds; else WebhookRejected.

    Until the signature holds, nothing is stored and every refusal is the same 401 (the reason is logged):
    a stranger learns neither which client names exist nor which check failed, and cannot fill the
    database. Only a client that proved its secret but lacks the scope gets its own answer (403).
    """
    client = webhook_client(client_name)
    usable = client is not None and client.is_active and bool(client.webhook_secret)
    try:
        verify_signature(secret=client.webhook_secret if usable else _NO_SECRET, header=signature, body=body,
                         now=now)
    except WebhookRejected as exc:
        raise _unauthenticated(exc.code, client_name) from None
    if not usable:
        raise _unauthenticated("unknown_client" if client is None else (
            "client_revoked" if not client.is_active else "no_webhook_secret"), client_name)
    if not client.has_scope(SCOPE):
        exc = WebhookRejected(f"This client lacks the scope {SCOPE}.", code="insufficient_scope", status_code=403)
        webhook_reject(client=client, reason=exc, body=body)
        raise exc
    return client


def failure_throttle_key(address: str) -> str:
    return f"webhooks:payments:failures:{address}"


def throttled(*, address: str) -> bool:
    """Whether `address` sent too many unauthenticated deliveries in the current minute (then: 429, no work)."""
    from django.conf import settings
    from django.core.cache import cache

    return cache.get(failure_throttle_key(address), 0) >= settings.WEBHOOK_AUTH_FAILURES_PER_MINUTE


def count_failure(*, address: str) -> None:
    """One more unauthenticated delivery from `address` in this minute (a fixed window in the cache)."""
    from django.core.cache import cache

    key = failure_throttle_key(address)
    if cache.add(key, 1, timeout=60):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired in between
        cache.add(key, 1, timeout=60)


def webhook_reject(*, client: IntegrationClient, reason: ApplicationError, body: bytes,
                   payload: Any = None, event_id: str = "") -> WebhookEvent:
    """Store a refused delivery under a generated id (it never claims the event id it carried)."""
    if payload is None:
        payload = {"raw": body[:2000].decode("utf-8", errors="replace")}
    elif not isinstance(payload, dict):
        payload = {"raw": payload}
    payload = _jsonable(payload)
    claimed = f" (event id {event_id[:200]!r})" if event_id else ""
    message = reason.message.replace("\x00", "")
    logger.warning("Payment webhook from %s rejected: %s%s", client.name, reason.code, claimed)
    return WebhookEvent.objects.create(
        client=client,
        event_id=f"{REJECTED_PREFIX}{uuid.uuid4().hex}",
        event_type=str(payload.get("type", ""))[:100] if isinstance(payload.get("type", ""), str) else "",
        payload=payload,
        result=WebhookEvent.Result.REJECTED,
        detail=f"{reason.code}: {message}{claimed}",
        correlation_id=current_correlation_id(),
    )


def _jsonable(value: Any) -> Any:
    """The parsed event for the JSON column: Decimals and non-finite numbers as strings, no NUL characters
    (PostgreSQL's jsonb refuses them)."""
    if isinstance(value, dict):
        return {_jsonable(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal) or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    return value


def answer_body(event: WebhookEvent, *, replay: bool) -> dict[str, Any]:
    """The acknowledgement: built from the stored event only, so a replay gets the same body."""
    payment = event.payment
    return {
        "event_id": event.event_id,
        "result": event.result,
        "payment_id": payment.pk if payment is not None else None,
        "payment_reference": payment.external_reference if payment is not None else None,
        "detail": event.detail,
        "replay": replay,
    }


def _payer(reference: str) -> Client | None:
    reference = (reference or "").strip()
    if not reference:
        return None
    return Client.objects.filter(Q(code__iexact=reference) | Q(external_id=reference)).order_by("id").first()


def _outcome(payment: Payment) -> tuple[str, str]:
    """(result, detail) of a recorded payment: applied, or the exceptions it opened for finance."""
    family = list(payment_family(payment.external_reference).values_list("id", flat=True))
    codes = sorted(set(
        InvoiceException.objects.filter(payment_id__in=family).values_list("code", flat=True)
    ))
    where = f"invoice {payment.invoice.number}" if payment.invoice_id else "unapplied cash"
    detail = f"Payment {payment.external_reference} of {payment.amount} {payment.currency}: {where}"
    if codes:
        return WebhookEvent.Result.EXCEPTION, f"{detail}; for finance: {', '.join(codes)}."
    return WebhookEvent.Result.APPLIED, f"{detail}."


def payment_event_receive(*, client: IntegrationClient, event: dict[str, Any], payload: Any) -> WebhookAnswer:
    """Store the (validated) event once and apply its payment once; a replay gets the first answer.

    `event`: {"id", "type", "data": {"amount", "currency", "date", "invoice_number", "payer_reference",
    "payment_reference"}}. Raises ApplicationError (nothing stored, nothing applied) when the
    payment is refused, e.g. its reference was recorded with other data (conflict).
    """
    event_id = event["id"]
    data = event["data"]
    with transaction.atomic():
        try:
            with transaction.atomic():
                stored = WebhookEvent.objects.create(
                    client=client,
                    event_id=event_id,
                    event_type=event["type"],
                    payload=_jsonable(payload),
                    result=WebhookEvent.Result.APPLIED,
                    correlation_id=current_correlation_id(),
                )
        except IntegrityError:
            # Delivered before (or right now by a concurrent request, which has committed by the time
            # the unique index lets us through): acknowledge, apply nothing.
            first = WebhookEvent.objects.select_related("payment").get(client=client, event_id=event_id)
            logger.info("Payment webhook %s from %s replayed", event_id, client.name)
            return WebhookAnswer(200, answer_body(first, replay=True), first)
        payer = _payer(data.get("payer_reference", ""))
        note = f"Webhook event {event_id} from {client.name}"
        if data.get("payer_reference"):
            note += f"; payer {data['payer_reference']}"
        payment = payment_record(
            amount=data["amount"],
            currency=data["currency"],
            date=data["date"],
            external_reference=data["payment_reference"],
            source=Payment.Source.WEBHOOK,
            user=client.user,
            invoice_reference=data.get("invoice_number", ""),
            client=payer,
            note=note,
        )
        stored.result, stored.detail = _outcome(payment)
        stored.payment = payment
        stored.save(update_fields=["result", "detail", "payment"])
    status = 200 if stored.result == WebhookEvent.Result.APPLIED else 202
    logger.info("Payment webhook %s from %s: %s", event_id, client.name, stored.detail)
    return WebhookAnswer(status, answer_body(stored, replay=False), stored)
