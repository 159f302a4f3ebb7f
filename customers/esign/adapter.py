"""`ESignatureAdapter`: what Billable needs from an e-signature provider (ADR 0097).

- `send_envelope(document, name, recipient_email, recipient_name, callback_url, expires_in_days)` → envelope id
- `status(envelope_id)` → `sent` | `signed` | `declined` | `expired` | `voided`
- `download_signed(envelope_id)` → the signed PDF (the provider's certificate page appended)
- `remind(envelope_id)`, `void(envelope_id)`
- webhooks: `verify_webhook(body, header)` checks `X-Esign-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "t.body")>`
  within a tolerance; the event id is then recorded once (a replay is refused by the receiver).

`HttpESignatureAdapter` speaks the JSON API of the provider simulator (`customers/esign/simulator.py`,
`manage.py esign_simulator`), shaped like the typical providers' envelope APIs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Protocol

import httpx
from django.conf import settings

from kernel.errors import ApplicationError

SIGNATURE_HEADER = "X-Esign-Signature"


class ESignatureError(ApplicationError):
    pass


class ESignatureAdapter(Protocol):
    def send_envelope(
        self,
        *,
        document: bytes,
        name: str,
        recipient_email: str,
        recipient_name: str,
        callback_url: str,
        expires_in_days: int = 14,
    ) -> str: ...

    def status(self, envelope_id: str) -> str: ...

    def download_signed(self, envelope_id: str) -> bytes: ...

    def remind(self, envelope_id: str) -> None: ...

    def void(self, envelope_id: str) -> None: ...


def sign_payload(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_webhook(
    body: bytes, header: str, *, secret: str | None = None, tolerance: int | None = None, now: float | None = None
) -> dict[str, Any]:
    """The event of a genuine webhook; `ESignatureError` for a missing, forged or stale signature."""
    secret = secret if secret is not None else getattr(settings, "ESIGN_WEBHOOK_SECRET", "")
    tolerance = tolerance if tolerance is not None else int(getattr(settings, "ESIGN_WEBHOOK_TOLERANCE", 300))
    if not secret:
        raise ESignatureError("E-signature webhooks are not configured (ESIGN_WEBHOOK_SECRET).", code="not_configured")
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError as exc:
        raise ESignatureError("Missing or malformed signature.", code="bad_signature") from exc
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise ESignatureError("The webhook signature does not match.", code="bad_signature")
    if abs((now if now is not None else time.time()) - t) > tolerance:
        raise ESignatureError("The webhook is too old (or from the future).", code="stale_signature")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise ESignatureError("The webhook body is not JSON.", code="bad_body") from exc
    if not isinstance(event, dict) or not event.get("event_id") or not event.get("envelope_id"):
        raise ESignatureError("The webhook names no event or envelope.", code="bad_body")
    return event


class HttpESignatureAdapter:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 10.0):
        self.base_url = (base_url or getattr(settings, "ESIGN_BASE_URL", "")).rstrip("/")
        self.api_key = api_key if api_key is not None else getattr(settings, "ESIGN_API_KEY", "")
        self.timeout = timeout
        if not self.base_url:
            raise ESignatureError("No e-signature provider configured (ESIGN_BASE_URL).", code="not_configured")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.request(method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise ESignatureError(f"The e-signature provider is unreachable: {exc}", code="esign_unavailable") from exc
        if response.status_code >= 400:
            raise ESignatureError(
                f"The e-signature provider answered {response.status_code}: {response.text[:200]}",
                code="esign_refused",
            )
        return response

    def send_envelope(
        self,
        *,
        document: bytes,
        name: str,
        recipient_email: str,
        recipient_name: str,
        callback_url: str,
        expires_in_days: int = 14,
    ) -> str:
        body = {
            "name": name,
            "document": base64.b64encode(document).decode(),
            "recipients": [{"email": recipient_email, "name": recipient_name, "role": "signer"}],
            "callback_url": callback_url,
            "expires_in_days": expires_in_days,
        }
        return str(self._call("POST", "/envelopes", json=body).json()["id"])

    def status(self, envelope_id: str) -> str:
        return str(self._call("GET", f"/envelopes/{envelope_id}").json()["status"])

    def download_signed(self, envelope_id: str) -> bytes:
        return self._call("GET", f"/envelopes/{envelope_id}/document").content

    def remind(self, envelope_id: str) -> None:
        self._call("POST", f"/envelopes/{envelope_id}/remind")

    def void(self, envelope_id: str) -> None:
        self._call("POST", f"/envelopes/{envelope_id}/void")


def get_adapter() -> ESignatureAdapter:
    return HttpESignatureAdapter()
