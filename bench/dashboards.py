"""Dashboard benchmark: every KPI dashboard over twelve months of scale-10 demo data.

    python -m bench.dashboards [--scale 10] [--repeat 3] [--reuse]

1. seed: `<db>` (DATABASE_URL, default `billable_bench_dash`) is dropped, created, migrated
   and filled with `seed_demo --scale N` (the current quarter's work and the twelve months of
   history of `insights.demo`), then `VACUUM ANALYZE`. `--reuse` keeps a seeded database.
2. measure: as a finance controller (Django's test client, the real middleware, templates
   and navigation), every dashboard, a few drill-down lists, `GET /api/v1/kpis/` and the
   `kpis` command's selector, each `--repeat` times over the default period (the twelve
   months up to today); the best wall time and the number of queries of each. First the KPI
   snapshots are refreshed as the django-q2 schedule does (timed); `--live` turns snapshots off
   (every request computes live, as before docs/decisions/0101-kpi-snapshots.md).

Prints a table and writes `bench/results/dashboards.json`. Only databases whose name
contains "bench" are ever dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_bench_dash")
# Pages are rendered without collectstatic (no manifest), over plain HTTP to the test client.
os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.db import admin, connect  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dashboards.json"
PAGES = (
    ("leadership", "/insights/"),
    ("operations", "/insights/operations/"),
    ("workflow_monitor", "/insights/workflow/"),
    ("drilldown_invoices", "/insights/records/?metric=first_pass_accuracy&outcome=disputed"),
    ("drilldown_ar", "/insights/records/?metric=ar_aging"),
    ("drilldown_leakage", "/insights/records/?metric=leakage&kind=time&bucket=31-60"),
    ("export_ar_csv", "/insights/operations/?export=ar_aging"),
)


def seed(scale: int, reuse: bool) -> dict:
    settings = connections["default"].settings_dict
    name = settings["NAME"]
    if settings["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench.dashboards needs PostgreSQL: DATABASE_URL=postgresql://…/billable_bench_dash")
    if "bench" not in name:
        sys.exit(f"bench.dashboards drops and recreates its database: {name!r} must contain 'bench'.")
    from billing.models import Client

    if reuse:
        try:
            if Client.objects.exists():
                call_command("migrate", verbosity=0, skip_checks=True)  # tables added since the seed
                return {"seed_s": None, "reused": True}
        except Exception:  # noqa: S110 - no database yet: seed it
            pass
    connection.close()
    admin(settings, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin(settings, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    started = time.perf_counter()
    call_command("migrate", verbosity=0, skip_checks=True)
    from billing.demo import seed_demo

    seed_demo(scale=scale, log=lambda line: print("  " + line))
    connection.close()
    with connect(settings, name, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"seed_s": round(time.perf_counter() - started, 1), "reused": False}


def sizes() -> dict:
    from django_fsm_log.models import StateLog

    from approvals.models import ApprovalDecision
    from billing.models import Invoice, Payment, TimeEntry
    from disputes.models import Dispute

    return {
        "invoices": Invoice.objects.filter(kind="invoice").count(),
        "credit_notes": Invoice.objects.filter(kind="credit_note").count(),
        "payments": Payment.objects.count(),
        "approval_decisions": ApprovalDecision.objects.count(),
        "disputes": Dispute.objects.count(),
        "transition_log": StateLog.objects.count(),
        "time_entries": TimeEntry.objects.count(),
    }


def measure(repeat: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from insights import selectors
    from insights.params import default_period
    from integrations.services.clients import integration_client_create

    user = get_user_model().objects.get(username="controller")
    browser = Client()
    browser.force_login(user)
    from bench.sessions import verify_mfa

    verify_mfa(browser.session, user)  # a controller passes MFA before any page
    start, end = default_period()
    period = f"period_start={start.isoformat()}&period_end={end.isoformat()}"
    results: dict[str, dict] = {}

    def timed(key: str, call) -> None:
        samples, queries, size = [], None, 0
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                size = call()
                samples.append(time.perf_counter() - began)
            queries = len(captured.captured_queries)
        results[key] = {
            "best_s": round(min(samples), 3),
            "samples_s": [round(s, 3) for s in samples],
            "queries": queries,
            "bytes": size,
        }
        print(f"  {key:<22} {min(samples):7.3f} s  {queries:4d} queries")

    def page(url: str):
        def call() -> int:
            joiner = "&" if "?" in url else "?"
            response = browser.get(f"{url}{joiner}{period}", secure=True)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}")
            body = b"".join(response.streaming_content) if response.streaming else response.content
            return len(body)

        return call

    for key, url in PAGES:
        timed(key, page(url))

    name = f"bench-kpis-{int(time.time())}"
    _client, token, _secret = integration_client_create(name=name, scopes=["read:kpis"], throttle_rate="100000/min")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def api_call() -> int:
        response = api.get(f"/api/v1/kpis/?{period}", secure=True)
        if response.status_code != 200:
            raise SystemExit(f"/api/v1/kpis/: HTTP {response.status_code} {response.content[:200]!r}")
        return len(response.content)

    timed("api_kpis", api_call)
    timed("selector_kpis", lambda: len(json.dumps(selectors.jsonable(selectors.kpis(start, end)))))
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="Keep an already seeded database.")
    parser.add_argument(
        "--live",
        action="store_true",
        help="Compute every KPI live at each request (snapshots off), as before the snapshots.",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.live:
        settings.INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S = 0
    print(f"Seeding scale {args.scale} (12 months of history) ...")
    seeded = seed(args.scale, args.reuse)
    counts = sizes()
    print("  " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    refresh = None
    if not args.live:
        # What the django-q2 schedule does every few minutes (insights.tasks.refresh_kpi_snapshots): the pages
        # then read the snapshots of the default period (docs/decisions/0101-kpi-snapshots.md).
        from insights.tasks import refresh_kpi_snapshots

        began = time.perf_counter()
        refresh = {"compute_ms": refresh_kpi_snapshots(), "wall_s": round(time.perf_counter() - began, 3)}
        print(f"  snapshots refreshed in {refresh['wall_s']} s")
    print(f"Measuring (best of {args.repeat}) ...")
    pages = measure(args.repeat)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    result = {
        "scale": args.scale,
        "measured_on": timezone.localdate().isoformat(),
        **seeded,
        "rows": counts,
        "pages": pages,
        "snapshots": "off (live)"
        if args.live
        else {"max_age_s": settings.INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S, "refresh": refresh},
        "environment": {
            "python": platform.python_version(),
            "postgresql": server,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "note": "Wall time of a full request through Django's test client as a finance controller (templates, "
        "navigation, session included), best of --repeat; queries counted per request. The machine is "
        "shared: compare query counts and orders of magnitude, not milliseconds.",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
