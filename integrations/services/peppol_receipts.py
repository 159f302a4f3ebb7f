"""Signed delivery receipts of the Peppol access-point provider (ADR 0070).

The provider POSTs `transmission.delivered` / `transmission.rejected` events to
`POST /api/v1/webhooks/peppol/`, signed like the payment webhooks:
`X-Billable-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(PEPPOL_AP_WEBHOOK_SECRET, "t." + raw body)>`,
checked by the same `verify_signature` (constant-time compare, 5-minute window). A receipt that does
not prove the secret — no secret configured, signature missing, wrong or stale — is answered with the
one 401 and changes nothing; failures count towards the same per-address throttle as the payment webhook.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from billing.access_point import PeppolError
from billing.services.delivery import peppol_receipt_apply
from integrations.services.webhooks import _NO_SECRET, SIGNATURE_HEADER, WebhookRejected, verify_signature
from kernel.errors import ApplicationError

logger = logging.getLogger(__name__)

EVENT_TYPES = {"transmission.delivered": "delivered", "transmission.rejected": "rejected"}
UNAUTHENTICATED_MESSAGE = (
    f"Not authenticated. Send {SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, "
    "'t.' + raw body)>, within 5 minutes of our clock."
)


@dataclass(frozen=True)
class ReceiptAnswer:
    status_code: int
    body: dict[str, Any]


def receipt_authenticate(*, signature: str, body: bytes, now: float | None = None) -> None:
    """Raise the one 401 unless the body is signed with the configured access-point webhook secret."""
    secret = settings.PEPPOL_AP_WEBHOOK_SECRET
    try:
        verify_signature(secret=secret or _NO_SECRET, header=signature, body=body, now=now)
    except WebhookRejected as exc:
        logger.warning("Peppol receipt refused (%s)", exc.code)
        raise WebhookRejected(UNAUTHENTICATED_MESSAGE, code="unauthenticated", status_code=401) from None
    if not secret:
        logger.warning("Peppol receipt refused (no PEPPOL_AP_WEBHOOK_SECRET configured)")
        raise WebhookRejected(UNAUTHENTICATED_MESSAGE, code="unauthenticated", status_code=401)


def peppol_receipt_receive(*, signature: str, body: bytes, now: float | None = None) -> ReceiptAnswer:
    """Authenticate a receipt, then apply it to its delivery attempt (idempotent)."""
    receipt_authenticate(signature=signature, body=body, now=now)
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApplicationError("The body is not JSON.", code="parse_error") from None
    if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES or not isinstance(
        event.get("transmission_id"), str
    ):
        raise ApplicationError(
            f"Expected an event with type {' or '.join(EVENT_TYPES)} and a transmission_id.", code="invalid"
        )
    at = parse_datetime(event["at"]) if isinstance(event.get("at"), str) else None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    attempt = peppol_receipt_apply(
        transmission_id=event["transmission_id"][:300], status=EVENT_TYPES[event["type"]],
        errors=PeppolError.parse(event.get("errors")), at=at,
    )
    if attempt is None:
        return ReceiptAnswer(202, {"transmission_id": event["transmission_id"], "result": "unknown_transmission"})
    return ReceiptAnswer(200, {"transmission_id": attempt.message_id, "invoice": attempt.invoice.number,
                               "result": attempt.receipt})
