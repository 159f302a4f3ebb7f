"""A Peppol access-point provider simulator: a real threaded HTTP server speaking `HttpAccessPointAdapter`'s API.

`python manage.py peppol_simulator --port 8766 [--callback-url URL --webhook-secret S] [--reject 0208:…]`
runs it for the demo; tests start `PeppolSimulator(...).start()` in a thread on a free port.

What a provider's access point does, reduced to what Billable sees:

- `POST /transmissions` checks the document as an access point's outbound check would — well-formed UBL,
  the Peppol BIS or XRechnung specification id (PEPPOL-EN16931-R004), Peppol endpoint schemes, never `EM`
  (PEPPOL-EN16931-CL008), the receiver is the document's buyer endpoint — and looks the receiver up in its
  SMP: an unregistered receiver is refused with the AS4 error `PEPPOL:NOT_SERVICED`. Refusals answer 422
  with the error codes; nothing is transmitted.
- An accepted document (202, a transmission id; the same Idempotency-Key returns the same id) is
  "transmitted" at once: its receipt is `delivered`, or `rejected` with the buyer's message-level response
  (a Peppol rule id) for receivers in `reject_receivers` or on a share `reject_rate` of the documents.
- The receipt is queued as a signed webhook event (`X-Billable-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`);
  with `callback_url` it is POSTed there, else `pending_receipts()` / `POST /__admin/flush` hands it out.
- `GET /transmissions/<id>` answers the current state (the status poll).

Test hooks: GET /__admin/transmissions, POST /__admin/reset, POST /__admin/config {...}, POST /__admin/flush.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from kernel.simulator import LocalSimulator, SimulatorServer

PEPPOL_CUSTOMIZATIONS = (
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0",
    "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
    "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0#conformant#urn:xeinkauf.de:kosit:extension:xrechnung_3.0",
)
NS = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
      "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}
NOT_SERVICED = "PEPPOL:NOT_SERVICED"


@dataclass
class SimulatorConfig:
    token: str = ""  # required bearer token ("" = none)
    webhook_secret: str = ""  # signs the receipts
    callback_url: str = ""  # where receipts are POSTed ("" = kept for pending_receipts())
    unregistered: list[str] = field(default_factory=list)  # receivers not in the SMP
    reject_receivers: list[str] = field(default_factory=list)  # receivers whose access point rejects
    reject_rate: float = 0.0
    reject_code: str = "PEPPOL-EN16931-R053"
    reject_text: str = "Only one tax total with tax subtotals MUST be provided."
    seed: int | None = None
    outage: bool = False


class SimulatorState:
    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.lock = threading.Lock()
        self.random = random.Random(config.seed)  # noqa: S311 - fault dice, not secrets
        self.transmissions: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.receipts: list[tuple[bytes, str]] = []
        self.counter = 0

    def reset(self) -> None:
        with self.lock:
            self.transmissions.clear()
            self.by_key.clear()
            self.receipts.clear()
            self.counter = 0
            self.random = random.Random(self.config.seed)  # noqa: S311

    def sign(self, body: bytes) -> str:
        timestamp = int(time.time())
        digest = hmac.new(self.config.webhook_secret.encode(), f"{timestamp}.".encode() + body,
                          hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={digest}"

    def check(self, payload: dict[str, Any]) -> tuple[list[dict[str, str]], bytes]:
        """The outbound checks of the access point: (errors, document bytes)."""
        try:
            document = base64.b64decode(payload.get("document", ""), validate=True)
            root = etree.fromstring(document, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        except (ValueError, etree.XMLSyntaxError) as exc:
            return [{"code": "SV", "text": f"Not a well-formed XML document: {exc}"}], b""
        errors = []
        customization = root.findtext("cbc:CustomizationID", namespaces=NS) or ""
        if customization not in PEPPOL_CUSTOMIZATIONS:
            errors.append({"code": "PEPPOL-EN16931-R004",
                           "text": f"Specification identifier {customization!r} is not a Peppol BIS 3.0 one."})
        for endpoint in root.iterfind(".//cac:Party/cbc:EndpointID", namespaces=NS):
            if not (endpoint.get("schemeID") or "").isdigit():
                errors.append({"code": "PEPPOL-EN16931-CL008",
                               "text": f"Electronic address scheme {endpoint.get('schemeID')!r} is not in the "
                                       "Peppol code list."})
        buyer = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", namespaces=NS)
        receiver = payload.get("receiver", "")
        if buyer is None or f"{buyer.get('schemeID')}:{buyer.text}" != receiver:
            errors.append({"code": "PEPPOL-COMMON-R040",  # the envelope's receiver is the document's buyer
                           "text": f"Receiver {receiver!r} is not the buyer's electronic address of the document."})
        if not errors and receiver in self.config.unregistered:
            errors.append({"code": NOT_SERVICED,
                           "text": f"Receiver {receiver} is not registered in the Peppol SMP for this document type."})
        return errors, document

    def accept(self, key: str, payload: dict[str, Any], document: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            known = self.by_key.get(key)
            if known:
                record = self.transmissions[known]
                return 202, {"id": record["id"], "status": "accepted", "replayed": True}
            self.counter += 1
            transmission_id = f"TX-{self.counter:06d}"
            receiver = payload.get("receiver", "")
            rejected = receiver in self.config.reject_receivers or (
                self.config.reject_rate and self.random.random() < self.config.reject_rate
            )
            errors = [{"code": self.config.reject_code, "text": self.config.reject_text}] if rejected else []
            record = {
                "id": transmission_id, "idempotency_key": key, "sender": payload.get("sender", ""),
                "receiver": receiver, "document_type": payload.get("document_type", ""),
                "sha256": hashlib.sha256(document).hexdigest(), "status": "rejected" if rejected else "delivered",
                "errors": errors, "received_at": datetime.now(UTC).isoformat(),
            }
            self.transmissions[transmission_id] = record
            self.by_key[key] = transmission_id
            event = {"id": f"evt-{transmission_id}", "type": f"transmission.{record['status']}",
                     "transmission_id": transmission_id, "at": record["received_at"], "errors": errors}
            body = json.dumps(event).encode()
            self.receipts.append((body, self.sign(body)))
        if self.config.callback_url:
            threading.Thread(target=self.flush, daemon=True).start()
        return 202, {"id": transmission_id, "status": "accepted"}

    def take_receipts(self) -> list[tuple[bytes, str]]:
        with self.lock:
            receipts, self.receipts = self.receipts, []
        return receipts

    def flush(self) -> int:
        """POST the queued receipts to `callback_url` (one try each; the status poll covers a lost one)."""
        import httpx

        sent = 0
        for body, signature in self.take_receipts():
            try:
                httpx.post(self.config.callback_url, content=body, timeout=10,
                           headers={"Content-Type": "application/json", "X-Billable-Signature": signature})
                sent += 1
            except httpx.HTTPError:
                pass
        return sent


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        token = self.server.state.config.token
        header = self.headers.get("Authorization", "")
        return not token or hmac.compare_digest(header.encode(), f"Bearer {token}".encode())

    def do_GET(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        if path == "/__admin/transmissions":
            with state.lock:
                return self._send(200, {"transmissions": list(state.transmissions.values())})
        if not self._authorised():
            return self._send(401, {"code": "unauthorised"})
        if path.startswith("/transmissions/"):
            with state.lock:
                record = state.transmissions.get(path.removeprefix("/transmissions/"))
            if record is None:
                return self._send(404, {"code": "not_found"})
            return self._send(200, {"id": record["id"], "status": record["status"], "errors": record["errors"]})
        return self._send(404, {"code": "not_found"})

    def do_POST(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/__admin/reset":
            state.reset()
            return self._send(200, {"reset": True})
        if path == "/__admin/flush":
            return self._send(200, {"sent": state.flush()})
        if path == "/__admin/config":
            for name, value in json.loads(body or b"{}").items():
                if not hasattr(state.config, name):
                    return self._send(400, {"code": "unknown_setting", "message": name})
                setattr(state.config, name, value)
            return self._send(200, asdict(state.config))
        if path != "/transmissions":
            return self._send(404, {"code": "not_found"})
        if not self._authorised():
            return self._send(401, {"code": "unauthorised"})
        if state.config.outage:
            return self._send(503, {"code": "unavailable", "message": "Simulated outage."})
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            return self._send(400, {"code": "idempotency_key_required"})
        try:
            payload = json.loads(body)
        except ValueError:
            return self._send(400, {"code": "invalid_json"})
        errors, document = state.check(payload if isinstance(payload, dict) else {})
        if errors:
            return self._send(422, {"status": "rejected", "errors": errors})
        status, answer = state.accept(key, payload, document)
        return self._send(status, answer)


class PeppolSimulator(LocalSimulator):
    """`start()` serves in a daemon thread, `serve_forever()` in this one."""

    thread_name = "peppol-simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **config: Any):
        super().__init__(_Handler, SimulatorState(SimulatorConfig(**config)), host, port, verbose)

    def transmissions(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.transmissions.values())

    def pending_receipts(self) -> list[tuple[bytes, str]]:
        """The signed receipt events not yet POSTed: (body, X-Billable-Signature)."""
        return self.state.take_receipts()
