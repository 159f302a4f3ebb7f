"""A real Tryton 8.2 for the ERP integration tests (ops/tryton/setup.sh builds it; docs/manual/erp-mapping.md).

Session-scoped: a fresh Tryton database cloned from the template (CREATE DATABASE ... TEMPLATE, about a
second) and a `trytond` on a free local port serving it, both gone at the end. Without Tryton (no
`ops/tryton/setup.sh` run, the virtualenv or template missing, trytond not starting) these tests are
skipped with one notice — and fail in CI (CI=true), where .ci/run sets Tryton up first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from integrations.erp import base as erp_base
from integrations.erp.tryton import TrytonClient

ROOT = Path(__file__).resolve().parents[3]
ENV_FILE = ROOT / "var" / "tryton" / "env"

# Billable's demo entities → the companies and taxes ops/tryton/init_template.py creates.
DEMO_COMPANIES = {"NWB": "Nordwind Beratung GmbH", "TLL": "Thames Ledger Ltd", "HUD": "Hudson Advisory Inc"}
DEMO_TAXES = {
    "NWB": [("S", "19.00", "VAT 19% (S)"), ("AE", "0.00", "VAT 0% reverse charge (AE)"),
            ("O", "0.00", "VAT 0% out of scope (O)")],
    "TLL": [("S", "20.00", "VAT 20% (S)"), ("O", "0.00", "VAT 0% out of scope (O)")],
    "HUD": [("O", "0.00", "No VAT (O)")],
}


def _unavailable(why: str):
    message = f"Tryton is not available ({why}); run ops/tryton/setup.sh (make tryton) to set it up."
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} CI=true: the Tryton integration tests must run in CI.", pytrace=False)
    pytest.skip(f"NOTICE {message}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TrytonServer:
    url: str
    database: str
    user: str
    password: str
    conf: Path

    def client(self) -> TrytonClient:
        return TrytonClient(url=self.url, database=self.database, user=self.user, password=self.password,
                            timeout=60)


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory):
    if not ENV_FILE.exists():
        _unavailable(f"{ENV_FILE.relative_to(ROOT)} is missing")
    env = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    trytond = Path(env["TRYTON_VENV"]) / "bin" / "trytond"
    if not trytond.exists():
        _unavailable(f"{trytond} is missing")
    uri = env["TRYTON_DB_URI"].rstrip("/")
    database = f"billable_tryton_test_{os.getpid()}"
    try:
        with psycopg.connect(f"{uri}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{env["TRYTON_TEMPLATE_DB"]}"')
    except psycopg.Error as exc:
        _unavailable(f"cloning {env['TRYTON_TEMPLATE_DB']} failed: {exc}")
    directory = tmp_path_factory.mktemp("tryton")
    port = _free_port()
    conf = directory / "trytond.conf"
    conf.write_text(
        f"[database]\nuri = {uri}/\npath = {directory}/filestore\n"
        f"[session]\ntimeout = 3600\n[web]\nlisten = 127.0.0.1:{port}\n"
        # Queued tasks (the invoice report Tryton renders on posting) wait for a trytond-worker instead of
        # running inside the posting request; the tests run none.
        "[queue]\nworker = True\n"
    )
    log = (directory / "trytond.log").open("ab")
    # -d loads the database's modules at start (and spares trytond listing every database on the server)
    process = subprocess.Popen([str(trytond), "-c", str(conf), "-d", database], stdout=log,  # noqa: S603
                               stderr=log, start_new_session=True)
    server = TrytonServer(url=f"http://127.0.0.1:{port}", database=database, user=env["TRYTON_USER"],
                          password=env["TRYTON_PASSWORD"], conf=conf)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(server.url + "/", timeout=2)  # any answer: trytond is listening
                break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _unavailable(f"trytond did not start; log {directory / 'trytond.log'}")
            time.sleep(0.2)
        print(f"\ntryton: {database} served at {server.url} (log {directory / 'trytond.log'})")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        with psycopg.connect(f"{uri}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tryton(tryton_server) -> TrytonClient:
    """A JSON-RPC client of the session's Tryton database, for assertions and for what a Tryton user does."""
    client = tryton_server.client()
    yield client
    client.close()


def map_demo_entities(entities) -> None:
    """The ERP mappings of the demo's entities (those given), as a billing admin enters them."""
    from integrations.models import ErpEntityMapping, ErpTaxMapping

    for entity in entities:
        ErpEntityMapping.objects.update_or_create(entity=entity, defaults={"erp_company": DEMO_COMPANIES[entity.code]})
        for category, rate, name in DEMO_TAXES[entity.code]:
            ErpTaxMapping.objects.update_or_create(entity=entity, category=category, rate=rate,
                                                  defaults={"erp_tax": name})


@pytest.fixture
def tryton_settings(settings, tryton_server):
    settings.ERP_POSTING_ENABLED = True
    settings.ERP_ADAPTER = "integrations.erp.tryton.TrytonErpAdapter"
    settings.ERP_BASE_URL = tryton_server.url
    settings.TRYTON_DATABASE = tryton_server.database
    settings.TRYTON_USER = tryton_server.user
    settings.TRYTON_PASSWORD = tryton_server.password
    settings.ERP_TIMEOUT_S = 30
    settings.OUTBOX_MAX_ATTEMPTS = 3
    settings.OUTBOX_BACKOFF_BASE_S = 0.01
    settings.OUTBOX_BACKOFF_CAP_S = 0.05
    settings.OUTBOX_LEASE_S = 120
    settings.OUTBOX_ENQUEUE_ON_COMMIT = False
    erp_base._ADAPTER = None
    yield settings
    if erp_base._ADAPTER is not None:
        erp_base._ADAPTER[1].close()
    erp_base._ADAPTER = None


@pytest.fixture
def tryton_proxy(tryton_server, tryton_settings):
    """The adapter talks to Tryton through a fault-injecting proxy (tests/integrations/tryton/proxy.py)."""
    from tests.integrations.tryton.proxy import TrytonProxy

    proxy = TrytonProxy(tryton_server.url, hang_s=60).start()
    tryton_settings.ERP_BASE_URL = proxy.url
    erp_base._ADAPTER = None
    yield proxy
    proxy.stop()


def tryton_pay(tryton: TrytonClient, invoice_id: int, amount, date, *, partial: bool) -> None:
    """What a Tryton user does: the invoice's Pay wizard (account.invoice.pay), for `amount` on `date`."""
    (invoice,) = tryton.call("model.account.invoice.read", [invoice_id], ["company"])
    company = invoice["company"]
    context = {"company": company, "companies": [company], "active_model": "account.invoice",
               "active_id": invoice_id, "active_ids": [invoice_id]}
    (method,) = tryton.call("model.account.invoice.payment.method.search", [("company", "=", company)], 0, 1, None,
                            context=context)
    session, _start, _end = tryton.call("wizard.account.invoice.pay.create", context=context)
    view = tryton.call("wizard.account.invoice.pay.execute", session, {}, "start", context=context)
    start = {**view["view"]["defaults"], "amount": amount, "date": date, "payment_method": method,
             "description": "Bank transfer"}
    start = {k: v for k, v in start.items() if "." not in k}
    data = {"start": start}
    answer = tryton.call("wizard.account.invoice.pay.execute", session, data, "choice", context=context)
    if partial:
        assert answer.get("view", {}).get("state") == "ask", answer
        ask = {k: v for k, v in answer["view"]["defaults"].items() if "." not in k}
        data["ask"] = {**ask, "type": "partial"}
        tryton.call("wizard.account.invoice.pay.execute", session, data, "pay", context=context)
    tryton.call("wizard.account.invoice.pay.delete", session, context=context)
