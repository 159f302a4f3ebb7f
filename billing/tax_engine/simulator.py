"""A tax-engine simulator: a real threaded HTTP server speaking `HttpTaxEngine`'s API (billing.tax_engine.http).

`python manage.py tax_engine_simulator --port 8767` runs it for the demo; tests start
`TaxEngineSimulator().start()` in a thread on a free port.

What an Avalara/Vertex-style service does, reduced to what Billable sees: US state sales tax by ship-to
state (a small table of state base rates, category S; no nexus set-up, no local taxes), ship-to outside the
seller's country → no tax (category O, export). A US ship-to without a known state is refused (400).
A quote records nothing; `POST /v1/transactions` with `commit` records the sale under its code (the invoice
number; a repeat returns the same transaction); `/void` voids it. `outage` answers 503 to everything.

Test hooks: GET /__admin/transactions, POST /__admin/reset, POST /__admin/config {"outage": true, ...}.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from kernel.simulator import LocalSimulator, SimulatorServer

# State base sales-tax rates (percent) as published by the states; services may be taxable or not per state,
# the simulator treats them all as taxable at the base rate.
STATE_RATES = {
    "CA": Decimal("7.25"), "NY": Decimal("4"), "TX": Decimal("6.25"), "WA": Decimal("6.5"), "FL": Decimal("6"),
    "IL": Decimal("6.25"), "MA": Decimal("6.25"), "NJ": Decimal("6.625"), "PA": Decimal("6"), "CO": Decimal("2.9"),
    "OR": Decimal("0"), "DE": Decimal("0"), "MT": Decimal("0"), "NH": Decimal("0"), "AK": Decimal("0"),
}
MINOR = {"JPY": Decimal("1")}


@dataclass
class SimulatorConfig:
    token: str = ""
    outage: bool = False
    state_rates: dict[str, str] = field(default_factory=dict)  # overrides, e.g. {"NY": "8.875"}


class SimulatorState:
    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.lock = threading.Lock()
        self.transactions: dict[str, dict[str, Any]] = {}
        self.quotes = 0

    def reset(self) -> None:
        with self.lock:
            self.transactions.clear()
            self.quotes = 0
            self.config.outage = False

    def rate(self, region: str) -> Decimal | None:
        if region in self.config.state_rates:
            return Decimal(str(self.config.state_rates[region]))
        return STATE_RATES.get(region)

    def calculate(self, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        seller, ship_to = doc.get("seller") or {}, doc.get("ship_to") or {}
        quantum = MINOR.get(doc.get("currency", ""), Decimal("0.01"))
        try:
            base = sum((Decimal(str(line["amount"])) for line in doc.get("lines", [])), Decimal(0))
        except (KeyError, ArithmeticError, ValueError):
            return 400, {"code": "invalid_lines", "message": "Every line needs a decimal amount."}
        if ship_to.get("country") != seller.get("country"):
            return 200, {"code": doc.get("code"), "total_tax": "0", "taxes": [
                {"jurisdiction": ship_to.get("country", ""), "category": "O", "rate": "0", "base": str(base),
                 "amount": str(Decimal(0).quantize(quantum)), "name": "Export: no US sales tax"}]}
        region = (ship_to.get("region") or "").upper()
        rate = self.rate(region)
        if rate is None:
            return 400, {"code": "invalid_address",
                         "message": f"Ship-to state {region or '(none)'} is not a known US state."}
        amount = (base * rate / 100).quantize(quantum, rounding=ROUND_HALF_UP)
        return 200, {"code": doc.get("code"), "total_tax": str(amount), "taxes": [
            {"jurisdiction": region, "category": "S", "rate": str(rate), "base": str(base), "amount": str(amount),
             "name": f"{region} state sales tax {rate}%"}]}


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorServer

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
        state = self.server.state
        if urlsplit(self.path).path == "/__admin/transactions":
            with state.lock:
                return self._send(200, {"transactions": list(state.transactions.values()), "quotes": state.quotes})
        return self._send(404, {"code": "not_found"})

    def do_POST(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            return self._send(400, {"code": "invalid_json", "message": "Body is not JSON."})
        if path == "/__admin/reset":
            state.reset()
            return self._send(200, {"reset": True})
        if path == "/__admin/config":
            for name, value in body.items():
                if not hasattr(state.config, name):
                    return self._send(400, {"code": "unknown_setting", "message": name})
                setattr(state.config, name, value)
            return self._send(200, asdict(state.config))
        if state.config.token and self.headers.get("Authorization") != f"Bearer {state.config.token}":
            return self._send(401, {"code": "unauthorised", "message": "Bad or missing bearer token."})
        if state.config.outage:
            return self._send(503, {"code": "unavailable", "message": "Simulated outage."})
        if path == "/v1/transactions/quote":
            status, answer = state.calculate(body)
            with state.lock:
                state.quotes += 1
            return self._send(status, answer)
        if path == "/v1/transactions":
            code = str(body.get("code") or "")
            if not code:
                return self._send(400, {"code": "code_required", "message": "A committed transaction needs a code."})
            with state.lock:
                if code in state.transactions:
                    return self._send(200, state.transactions[code])
                status, answer = state.calculate(body)
                if status != 200:
                    return self._send(status, answer)
                answer.update(status="committed", customer_code=body.get("customer_code"), date=body.get("date"))
                state.transactions[code] = answer
            return self._send(200, answer)
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "transactions"] and parts[3] == "void":
            with state.lock:
                transaction = state.transactions.get(parts[2])
                if transaction is None:
                    return self._send(404, {"code": "not_found", "message": f"No transaction {parts[2]}."})
                transaction["status"] = "voided"
                transaction["void_reason"] = body.get("reason", "")
            return self._send(200, transaction)
        return self._send(404, {"code": "not_found"})


class TaxEngineSimulator(LocalSimulator):
    """`start()` serves in a daemon thread, `serve_forever()` in this one."""

    thread_name = "tax-engine-simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **config: Any):
        super().__init__(_Handler, SimulatorState(SimulatorConfig(**config)), host, port, verbose)

    def transactions(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return {code: dict(t) for code, t in self.state.transactions.items()}
