"""A VIES simulator: a real threaded HTTP server speaking the Commission's REST API (billing.vies.rest).

`python manage.py vies_simulator --port 8768 [--invalid DE123456789] [--unavailable DE]` runs it for the demo;
tests start `ViesSimulator().start()` on a free port. A number is valid unless listed in `invalid` or
failing its check digits (python-stdnum); a member state in `unavailable` answers MS_UNAVAILABLE, and
`outage` answers SERVICE_UNAVAILABLE (HTTP 503) for all. With a requester, each answer carries a
consultation number (`requestIdentifier`).

Test hooks: GET /__admin/requests, POST /__admin/config {"invalid": [...], "unavailable": [...], "outage": true}.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from billing.vat import vat_id_is_valid


@dataclass
class SimulatorConfig:
    invalid: list[str] = field(default_factory=list)  # full VAT ids VIES reports invalid (e.g. DE136695976)
    unavailable: list[str] = field(default_factory=list)  # member states answering MS_UNAVAILABLE
    outage: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _Server

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

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/__admin/requests":
            with self.server.lock:
                return self._send(200, {"requests": list(self.server.requests)})
        return self._send(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})

    def do_POST(self) -> None:
        sim = self.server
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            return self._send(400, {"actionSucceed": False, "errorWrappers": [{"error": "INVALID_INPUT"}]})
        if path == "/__admin/config":
            for name, value in body.items():
                if not hasattr(sim.config, name):
                    return self._send(400, {"code": "unknown_setting", "message": name})
                setattr(sim.config, name, value)
            return self._send(200, asdict(sim.config))
        if not path.endswith("/check-vat-number"):
            return self._send(404, {"actionSucceed": False, "errorWrappers": [{"error": "NOT_FOUND"}]})
        country, number = str(body.get("countryCode", "")).upper(), str(body.get("vatNumber", ""))
        with sim.lock:
            sim.requests.append({"countryCode": country, "vatNumber": number})
            sim.counter += 1
            counter = sim.counter
        if sim.config.outage:
            return self._send(503, {"actionSucceed": False, "errorWrappers": [{"error": "SERVICE_UNAVAILABLE"}]})
        if country in sim.config.unavailable:
            return self._send(200, {"actionSucceed": False, "errorWrappers": [
                {"error": "MS_UNAVAILABLE", "message": f"The {country} service is unavailable."}]})
        iso = "GR" if country == "EL" else country
        vat_id = f"{country}{number}"
        valid = vat_id not in sim.config.invalid and vat_id_is_valid(f"{iso}{number}", iso)
        answer = {
            "countryCode": country, "vatNumber": number, "valid": valid,
            "requestDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "name": f"Trader {vat_id}" if valid else "---",
            "address": "Musterstraße 1\n10115 Berlin" if valid else "---",
        }
        if body.get("requesterNumber"):
            answer["requestIdentifier"] = f"WAPIAAAA{counter:08d}"
        return self._send(200, answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: SimulatorConfig, verbose: bool):
        self.config = config
        self.verbose = verbose
        self.lock = threading.Lock()
        self.requests: list[dict[str, str]] = []
        self.counter = 0
        super().__init__(address, _Handler)


class ViesSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **config: Any):
        self.config = SimulatorConfig(**config)
        self.server = _Server((host, port), self.config, verbose)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ViesSimulator:
        threading.Thread(target=self.server.serve_forever, name="vies-simulator", daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def configure(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.config, name, value)

    @property
    def requests(self) -> list[dict[str, str]]:
        with self.server.lock:
            return list(self.server.requests)
