"""An e-signature provider simulator: a real HTTP server speaking `HttpESignatureAdapter`'s API (ADR 0097).

`python manage.py esign_simulator --port 8770 --webhook-secret S` runs it for the demo; tests start
`ESignSimulator(...).start()` on a free port (the shared frame of kernel/simulator.py).

What a typical provider does, reduced to what Billable sees:

- `POST /envelopes` {name, document (base64 PDF), recipients, callback_url, expires_in_days} → 201 {id, status}
- `GET /envelopes/<id>` → {id, status, recipients, reminders, expires_at}; an envelope past its expiry is
  `expired` (and its webhook sent) the first time anyone looks.
- `GET /envelopes/<id>/document` → the signed PDF (the provider's certificate page appended); 409 before.
- `POST /envelopes/<id>/remind` (counts reminders), `POST /envelopes/<id>/void`.
- The recipient's side, as the provider's signing page would do it: `POST /envelopes/<id>/sign` {name},
  `POST /envelopes/<id>/decline` {reason}; `POST /__admin/envelopes/<id>/expire` ends it as expired.
- Each outcome is POSTed to the envelope's callback URL as a signed webhook
  (`X-Esign-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`); `state.delivered` keeps what was sent
  (tests replay it).

A bearer token is required when `config.token` is set.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from kernel.simulator import LocalSimulator

from .adapter import SIGNATURE_HEADER, sign_payload


@dataclass
class SimulatorConfig:
    token: str = ""
    webhook_secret: str = ""
    fail_next: int = 0  # answer 503 to this many next API calls


@dataclass
class Envelope:
    id: str
    name: str
    document: bytes
    recipients: list[dict[str, Any]]
    callback_url: str
    expires_at: datetime
    status: str = "sent"
    reminders: int = 0
    signed_document: bytes = b""
    signer_name: str = ""
    decline_reason: str = ""


@dataclass
class SimulatorState:
    config: SimulatorConfig = field(default_factory=SimulatorConfig)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    delivered: list[tuple[str, bytes, str, int]] = field(default_factory=list)  # url, body, header, status
    lock: threading.Lock = field(default_factory=threading.Lock)


def _certificate(envelope: Envelope, signer: str, at: datetime) -> bytes:
    from pypdf import PdfReader, PdfWriter
    from weasyprint import HTML

    page = HTML(
        string=(
            "<h1>Certificate of completion</h1>"
            f"<p>Envelope {envelope.id}: {envelope.name}</p><p>Signed by {signer} at {at:%Y-%m-%d %H:%M:%S} UTC</p>"
            "<p>E-signature simulator</p>"
        )
    ).write_pdf()
    writer = PdfWriter()
    for source in (envelope.document, page):
        for p in PdfReader(io.BytesIO(source)).pages:
            writer.add_page(p)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _deliver(state: SimulatorState, envelope: Envelope, event: str, **extra: Any) -> None:
    body = json.dumps(
        {
            "event_id": f"evt_{uuid.uuid4().hex}",
            "envelope_id": envelope.id,
            "event": event,
            "occurred_at": datetime.now(UTC).isoformat(),
            **extra,
        }
    ).encode()
    header = sign_payload(state.config.webhook_secret, body)
    status = 0
    if envelope.callback_url:
        import httpx

        try:
            status = httpx.post(
                envelope.callback_url,
                content=body,
                timeout=30,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: header},
            ).status_code
        except httpx.HTTPError:
            status = -1
    state.delivered.append((envelope.callback_url, body, header, status))


class Handler(BaseHTTPRequestHandler):
    server_version = "EsignSimulator/1.0"

    @property
    def state(self) -> SimulatorState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _answer(self, status: int, payload: Any = None, *, raw: bytes | None = None, ctype: str = "application/json"):
        data = raw if raw is not None else json.dumps(payload or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return {}

    def _authorised(self) -> bool:
        token = self.state.config.token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self._answer(401, {"error": "unauthorized"})
            return False
        if self.state.config.fail_next > 0:
            self.state.config.fail_next -= 1
            self._answer(503, {"error": "temporarily unavailable"})
            return False
        return True

    def _envelope(self, envelope_id: str) -> Envelope | None:
        envelope = self.state.envelopes.get(envelope_id)
        if envelope is None:
            self._answer(404, {"error": "no such envelope"})
            return None
        if envelope.status == "sent" and datetime.now(UTC) >= envelope.expires_at:
            envelope.status = "expired"
            self.pending_expiry = envelope  # delivered once the lock is released (the receiver calls back)
        return envelope

    pending_expiry: Envelope | None = None

    def _flush_expiry(self) -> None:
        if self.pending_expiry is not None:
            envelope, self.pending_expiry = self.pending_expiry, None
            _deliver(self.state, envelope, "envelope.expired")

    def handle_one_request(self) -> None:
        """After the answer is written and the lock released: an expiry found while answering is delivered."""
        super().handle_one_request()
        self._flush_expiry()

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if not self._authorised():
            return
        if len(parts) >= 2 and parts[0] == "envelopes":
            with self.state.lock:
                envelope = self._envelope(parts[1])
            if envelope is None:
                return
            if len(parts) == 2:
                return self._answer(
                    200,
                    {
                        "id": envelope.id,
                        "status": envelope.status,
                        "recipients": envelope.recipients,
                        "reminders": envelope.reminders,
                        "expires_at": envelope.expires_at.isoformat(),
                    },
                )
            if parts[2:] == ["document"]:
                if envelope.status != "signed":
                    return self._answer(409, {"error": f"envelope is {envelope.status}"})
                return self._answer(200, raw=envelope.signed_document, ctype="application/pdf")
        self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        body = self._body()
        if parts[:1] == ["__admin"]:
            return self._admin(parts[1:], body)
        if not self._authorised():
            return
        if parts == ["envelopes"]:
            try:
                document = base64.b64decode(body["document"], validate=True)
                recipients = list(body["recipients"])
            except (KeyError, ValueError, TypeError):
                return self._answer(400, {"error": "document (base64) and recipients are required"})
            if not document.startswith(b"%PDF") or not recipients:
                return self._answer(422, {"error": "a PDF document and at least one recipient"})
            envelope = Envelope(
                id=f"env_{uuid.uuid4().hex[:16]}",
                name=str(body.get("name", "")),
                document=document,
                recipients=recipients,
                callback_url=str(body.get("callback_url", "")),
                expires_at=datetime.now(UTC) + timedelta(days=int(body.get("expires_in_days") or 14)),
            )
            with self.state.lock:
                self.state.envelopes[envelope.id] = envelope
            return self._answer(201, {"id": envelope.id, "status": envelope.status})
        if len(parts) == 3 and parts[0] == "envelopes":
            with self.state.lock:
                envelope = self._envelope(parts[1])
                if envelope is None:
                    return
                action = parts[2]
                if action == "remind":
                    if envelope.status != "sent":
                        return self._answer(409, {"error": f"envelope is {envelope.status}"})
                    envelope.reminders += 1
                    return self._answer(200, {"reminders": envelope.reminders})
                if action in ("sign", "decline", "void"):
                    if envelope.status != "sent":
                        return self._answer(409, {"error": f"envelope is {envelope.status}"})
                    if action == "sign":
                        now = datetime.now(UTC)
                        envelope.signer_name = str(body.get("name") or envelope.recipients[0].get("name", ""))
                        envelope.signed_document = _certificate(envelope, envelope.signer_name, now)
                        envelope.status = "signed"
                        extra = {"signer": {"name": envelope.signer_name, "email": envelope.recipients[0]["email"]}}
                    elif action == "decline":
                        envelope.status = "declined"
                        envelope.decline_reason = str(body.get("reason", ""))
                        extra = {"reason": envelope.decline_reason}
                    else:
                        envelope.status = "voided"
                        return self._answer(200, {"status": envelope.status})
            _deliver(self.state, envelope, f"envelope.{envelope.status}", **extra)
            return self._answer(200, {"status": envelope.status})
        self._answer(404, {"error": "not found"})

    def _admin(self, parts: list[str], body: dict[str, Any]) -> None:
        if parts == ["config"]:
            for name, value in body.items():
                if hasattr(self.state.config, name):
                    setattr(self.state.config, name, value)
            return self._answer(200, {})
        if len(parts) == 3 and parts[0] == "envelopes" and parts[2] == "expire":
            with self.state.lock:
                envelope = self.state.envelopes.get(parts[1])
                if envelope is None:
                    return self._answer(404, {"error": "no such envelope"})
                envelope.expires_at = datetime.now(UTC) - timedelta(seconds=1)
                envelope = self._envelope(parts[1])
            return self._answer(200, {"status": envelope.status if envelope else ""})
        self._answer(404, {"error": "not found"})


class ESignSimulator(LocalSimulator):
    thread_name = "esign-simulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        webhook_secret: str = "",
        token: str = "",
        verbose: bool = False,
    ):
        state = SimulatorState(config=SimulatorConfig(token=token, webhook_secret=webhook_secret))
        super().__init__(Handler, state, host, port, verbose)
