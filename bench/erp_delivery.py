"""ERP delivery benchmark: N approved invoices posted to the ERP simulator by a 2-worker django-q2 cluster.

    python -m bench.erp_delivery [--invoices 1000] [--workers 2] [--latency-ms 0] [--fail-rate 0]

1. `<db>` (DATABASE_URL, default `billable_bench_erp`) is dropped, created and migrated; N approved,
   numbered invoices (one customer) and their outbox messages are written, and one delivery task per
   message is queued (ORM broker), as approvals would after commit.
2. The ERP simulator serves on a free port (real HTTP, in a thread of this process); a real
   `qcluster` with `--workers` workers (e-mail delivery switched off, as in the fault tests) is
   started and the clock runs until every message is delivered and every invoice `posted`.

Reports documents/s from the first to the last acknowledgement (the steady rate) and over the whole
wall time (cluster start-up included), and writes `bench/results/erp_delivery.json`. Only databases
whose name contains "bench" are ever dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_bench_erp")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from django.test import override_settings  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.db import admin  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "erp_delivery.json"


def fresh_database() -> None:
    settings = connections["default"].settings_dict
    name = settings["NAME"]
    if settings["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench.erp_delivery needs PostgreSQL: DATABASE_URL=postgresql://…/billable_bench_erp")
    if "bench" not in name:
        sys.exit(f"bench.erp_delivery drops and recreates its database: {name!r} must contain 'bench'.")
    connection.close()
    admin(settings, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin(settings, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Simulated ERP latency per call.")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="Share of ERP calls that fail (mixed faults).")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    from billing.models import Invoice
    from integrations.models import OutboxMessage
    from integrations.services.outbox import enqueue_delivery, outbox_enqueue_document
    from integrations.simulator import ErpSimulator
    from tests.factories import ContractFactory
    from tests.integrations.outbox.factories import approved_invoices
    from tests.integrations.outbox.worker import Cluster, Sweeper, worker_env

    started = time.monotonic()
    fresh_database()
    print(f"database ready in {time.monotonic() - started:.0f}s", flush=True)

    made = time.monotonic()
    with override_settings(OUTBOX_ENQUEUE_ON_COMMIT=False, ERP_POSTING_ENABLED=True), transaction.atomic():
        contract = ContractFactory(client__erp_id="CUST-BENCH")  # a known customer: invoices only
        for invoice in approved_invoices(args.invoices, contract=contract, prefix="BEN"):
            outbox_enqueue_document(invoice=invoice, user=None)
    for pk in OutboxMessage.objects.values_list("pk", flat=True):
        enqueue_delivery(pk)
    print(f"{args.invoices} invoices and tasks made in {time.monotonic() - made:.0f}s", flush=True)

    mode = "mixed" if args.fail_rate else "ok"
    erp = ErpSimulator(
        "127.0.0.1",
        0,
        mode=mode,
        fail_rate=args.fail_rate,
        latency_ms=args.latency_ms,
        seed=1,
        retry_after_s=0.2,
        timeout_sleep_s=1.5,
    ).start()
    log = Path(tempfile.gettempdir()) / f"bench-erp-qcluster-{os.getpid()}.log"
    env = worker_env(erp.url, Q_WORKERS=str(args.workers), LOG_LEVEL="WARNING")
    env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    sweeper = Sweeper({"OUTBOX_SWEEP_GRACE_S": 10, "OUTBOX_LEASE_S": 3})
    sweeper.start()
    cluster = Cluster(env, log)
    clock = time.monotonic()
    cluster.start()
    try:
        while True:
            done = OutboxMessage.objects.filter(status=OutboxMessage.Status.DELIVERED).count()
            if done == args.invoices:
                break
            if time.monotonic() - clock > args.timeout:
                sys.exit(f"timed out: {done}/{args.invoices} delivered; cluster log {log}")
            time.sleep(0.5)
        wall = time.monotonic() - clock
    finally:
        cluster.stop()
        sweeper.stop()
        erp.stop()

    span = OutboxMessage.objects.aggregate(first=Min("delivered_at"), last=Max("delivered_at"))
    steady = (span["last"] - span["first"]).total_seconds()
    posted = Invoice.objects.filter(status=Invoice.Status.POSTED).count()
    documents = len(erp.documents())
    assert posted == args.invoices and documents == args.invoices, (posted, documents)
    result = {
        "invoices": args.invoices,
        "workers": args.workers,
        "erp_latency_ms": args.latency_ms,
        "erp_fail_rate": args.fail_rate,
        "documents_in_erp": documents,
        "invoices_posted": posted,
        "documents_per_s_steady": round((args.invoices - 1) / steady, 1) if steady else None,
        "documents_per_s_wall": round(args.invoices / wall, 1),
        "wall_s_incl_cluster_start": round(wall, 1),
        "steady_s_first_to_last_ack": round(steady, 1),
        "erp_faults": dict(erp.state.stats.faults),
        "broker": "django-q2 ORM (PostgreSQL)",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
            "platform": platform.platform(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
