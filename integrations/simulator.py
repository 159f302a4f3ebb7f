"""An ERP simulator: a real threaded HTTP server speaking the HTTP adapter's protocol, with fault injection.

`python manage.py erp_simulator --port 8765 [--fail-rate 0.2] [--latency-ms 50] [--mode mixed] [--seed N]`
runs it for the demo; tests start `ErpSimulator(...).start()` in a thread on a free port.

It keeps documents in memory (optionally in a JSON file), honours idempotency keys (the
same key returns the same ERP id and stores nothing new), answers look-ups by key and by
number, and injects faults on a share (`fail_rate`) of the calls, by `mode`:

    ok        no faults
    error     HTTP 500/502/503, nothing stored
    throttle  HTTP 429 with Retry-After, nothing stored
    timeout   store the document, then sleep beyond the client's timeout before answering
    drop      store the document, then close the connection without answering ("commit then drop")
    hang      store the document, then hold the connection for `hang_s` (to kill a worker mid-call)
    mixed     error, throttle, timeout or drop at random
    outage    every call answers 503 (fail_rate ignored)

Test hooks: GET /__admin/documents, POST /__admin/reset, POST /__admin/config {"mode": ..., ...},
GET /__admin/stats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MODES = ("ok", "error", "throttle", "timeout", "drop", "hang", "mixed", "outage")
# /journals: the revenue close's journal entries (a balanced set of lines, kind `journal`).
KINDS = {"/customers": ("customer", "CUST"), "/invoices": ("invoice", "INV"), "/credit-notes": ("credit_note", "CN"),
         "/journals": ("journal", "JNL")}


@dataclass
class SimulatorConfig:
    mode: str = "ok"
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None
    retry_after_s: float = 1.0
    timeout_sleep_s: float = 15.0
    hang_s: float = 60.0
    token: str = ""  # required bearer token ("" = none required)
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    oauth_expires_in: int = 3600
    store_path: str = ""


@dataclass
class Stats:
    requests: int = 0
    stored: int = 0
    replayed: int = 0
    lookups: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class ErpState:
    """The simulated ERP's books: documents by idempotency key, by number, and the fault dice."""

    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.lock = threading.Lock()
        self.random = random.Random(config.seed)  # noqa: S311 - fault dice, not secrets
        self.documents: dict[str, dict[str, Any]] = {}
        self.by_number: dict[tuple[str, str], str] = {}
        self.counters: dict[str, int] = {}
        self.tokens: dict[str, float] = {}
        self.stats = Stats()
        if config.store_path and Path(config.store_path).exists():
            saved = json.loads(Path(config.store_path).read_text())
            for record in saved.get("documents", []):
                self._index(record)
            self.counters = saved.get("counters", {})

    def _index(self, record: dict[str, Any]) -> None:
        self.documents[record["idempotency_key"]] = record
        if record.get("number"):
            self.by_number[(record["kind"], record["number"])] = record["idempotency_key"]

    def _save(self) -> None:
        if self.config.store_path:
            data = {"documents": list(self.documents.values()), "counters": self.counters}
            Path(self.config.store_path).write_text(json.dumps(data, indent=1))

    def reset(self) -> None:
        with self.lock:
            self.documents.clear()
            self.by_number.clear()
            self.counters.clear()
            self.stats = Stats()
            self.random = random.Random(self.config.seed)  # noqa: S311
            self._save()

    def fault(self) -> str | None:
        """The fault to inject into this call, if any (drawn under the lock: reproducible with a seed)."""
        mode = self.config.mode
        if mode == "outage":
            return "outage"
        if mode == "ok":
            return None
        with self.lock:
            if self.random.random() >= self.config.fail_rate:
                return None
            if mode == "mixed":
                return self.random.choice(("error", "error", "throttle", "timeout", "drop"))
            return mode

    def count_fault(self, fault: str) -> None:
        with self.lock:
            self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1

    def store(self, kind: str, prefix: str, key: str, body: bytes, document: dict) -> tuple[int, dict]:
        """Store once per key: (HTTP status, answer). The same key again → the same id, nothing new."""
        digest = hashlib.sha256(body).hexdigest()
        number = document.get("number") or (document.get("customer") or {}).get("code") or ""
        with self.lock:
            existing = self.documents.get(key)
            if existing is not None:
                if existing["sha256"] != digest and kind != "customer":
                    return 422, {"code": "idempotency_key_reused", "message": "Same key, different document."}
                self.stats.replayed += 1
                return 200, {"id": existing["id"], "status": "already_received", "replayed": True}
            if kind != "customer" and (kind, number) in self.by_number:
                return 422, {"code": "duplicate_number", "message": f"{kind} {number} exists under another key."}
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            record = {
                "id": f"{prefix}-{self.counters[prefix]:06d}",
                "kind": kind,
                "idempotency_key": key,
                "number": number,
                "sha256": digest,
                "total": (document.get("totals") or {}).get("total"),
                "currency": document.get("currency"),
                "received_at": datetime.now(UTC).isoformat(),
            }
            self._index(record)
            self.stats.stored += 1
            self._save()
            return 201, {"id": record["id"], "status": "created"}

    def issue_token(self) -> dict:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.config.oauth_expires_in
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.config.oauth_expires_in}

    def authorised(self, header: str) -> bool:
        if not self.config.token and not self.config.oauth_client_id:
            return True
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if self.config.token and secrets.compare_digest(token, self.config.token):
            return True
        with self.lock:
            return self.tokens.get(token, 0) > time.monotonic()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # --- helpers ------------------------------------------------------------------------------------
    def _send(self, status: int, body: dict | list, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        """Close the socket without a word: the client cannot know whether the document was stored."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _latency(self) -> None:
        if self.server.state.config.latency_ms:
            time.sleep(self.server.state.config.latency_ms / 1000)

    # --- routes -------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        if url.path == "/__admin/documents":
            with state.lock:
                docs = sorted(state.documents.values(), key=lambda d: d["received_at"])
            return self._send(200, {"count": len(docs), "documents": docs})
        if url.path == "/__admin/stats":
            with state.lock:
                return self._send(200, {**asdict(state.stats), "config": asdict(state.config)})
        with state.lock:
            state.stats.requests += 1
        if not state.authorised(self.headers.get("Authorization", "")):
            return self._send(401, {"code": "unauthorised", "message": "Bearer token missing or not valid."})
        self._latency()
        fault = state.fault()
        if fault in ("outage", "error"):
            state.count_fault(fault)
            return self._send(503, {"code": "unavailable", "message": "Simulated outage."}, {"Retry-After": "1"})
        with state.lock:
            state.stats.lookups += 1
            if url.path == "/documents":
                key = parse_qs(url.query).get("idempotency_key", [""])[0]
                record = state.documents.get(key)
            elif url.path.startswith("/invoices/") or url.path.startswith("/credit-notes/"):
                prefix, _, number = url.path[1:].partition("/")
                kind = "invoice" if prefix == "invoices" else "credit_note"
                record = state.documents.get(state.by_number.get((kind, unquote(number)), ""))
            else:
                return self._send(404, {"code": "not_found", "message": "No such endpoint."})
        if record is None:
            return self._send(404, {"code": "not_found", "message": "The ERP has no such document."})
        return self._send(200, {"id": record["id"], "kind": record["kind"], "number": record["number"],
                                "status": "posted"})

    def do_POST(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        body = self._body()
        if url.path == "/__admin/reset":
            state.reset()
            return self._send(200, {"reset": True})
        if url.path == "/__admin/config":
            changes = json.loads(body or b"{}")
            for name, value in changes.items():
                if not hasattr(state.config, name):
                    return self._send(400, {"code": "unknown_setting", "message": name})
                setattr(state.config, name, value)
            return self._send(200, asdict(state.config))
        if url.path == "/oauth/token":
            form = parse_qs(body.decode())
            cfg = state.config
            if (
                form.get("grant_type", [""])[0] != "client_credentials"
                or form.get("client_id", [""])[0] != cfg.oauth_client_id
                or not secrets.compare_digest(form.get("client_secret", [""])[0], cfg.oauth_client_secret)
            ):
                return self._send(401, {"error": "invalid_client"})
            return self._send(200, state.issue_token())
        with state.lock:
            state.stats.requests += 1
        if url.path not in KINDS:
            return self._send(404, {"code": "not_found", "message": "No such endpoint."})
        if not state.authorised(self.headers.get("Authorization", "")):
            return self._send(401, {"code": "unauthorised", "message": "Bearer token missing or not valid."})
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            return self._send(400, {"code": "idempotency_key_required", "message": "Send an Idempotency-Key."})
        try:
            document = json.loads(body)
        except ValueError:
            return self._send(400, {"code": "invalid_json", "message": "The body is not JSON."})
        if not isinstance(document, dict) or not document.get("type"):
            return self._send(422, {"code": "invalid_document", "message": "Not a canonical document."})
        self._latency()
        fault = state.fault()
        if fault:
            state.count_fault(fault)
        if fault in ("outage", "error"):
            status = 503 if fault == "outage" else state.random.choice((500, 502, 503))
            return self._send(status, {"code": "unavailable", "message": f"Simulated {fault}."})
        if fault == "throttle":
            return self._send(429, {"code": "throttled", "message": "Slow down."},
                              {"Retry-After": f"{state.config.retry_after_s:g}"})
        kind, prefix = KINDS[url.path]
        status, answer = state.store(kind, prefix, key, body, document)
        if fault == "drop":
            return self._drop()
        if fault in ("timeout", "hang"):
            time.sleep(state.config.timeout_sleep_s if fault == "timeout" else state.config.hang_s)
        headers = {"Idempotent-Replayed": "true"} if answer.get("replayed") else {}
        return self._send(status, answer, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timeout) or a dropped connection is part of the game, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError) or self.verbose:
            super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], state: ErpState, verbose: bool):
        self.state = state
        self.verbose = verbose
        super().__init__(address, _Handler)


class ErpSimulator:
    """The simulator as an object: `start()` serves in a daemon thread, `serve_forever()` in this one."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **config: Any):
        if config.get("mode", "ok") not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.state = ErpState(SimulatorConfig(**config))
        self.server = _Server((host, port), self.state, verbose)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ErpSimulator:
        self.thread = threading.Thread(target=self.server.serve_forever, name="erp-simulator", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def configure(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.state.config, name, value)

    def documents(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.documents.values())
