"""Revenue close benchmark: the close of one month over the demo's history at scale N.

    python -m bench.revenue_close [--scale 10] [--repeat 3] [--reuse] [--profile close.prof]

1. seed: `<db>` (DATABASE_URL, default `billable_bench_revenue`; the name must contain "bench_revenue")
   is dropped, created, migrated and filled with `seed_demo --scale N` by bench/dashboards.py's `seed`
   (the demo closes its twelve months of history, Nov 2025 – Oct 2026, while seeding). `--reuse` keeps
   a seeded database.
2. measure: the close of the next open month (November 2026), as finance runs it: `--repeat` draft runs
   (`revenue_close(lock=False)`, each replacing the previous draft, as the screen's "Compute draft"
   does), then the final close (`lock=True`: checklist, lock, journals queued) inside a transaction that
   is rolled back, so `--reuse` measures the same month again. For each: wall seconds, CPU seconds (this
   process plus its PostgreSQL backend, from /proc: less disturbed by other load than wall time) and
   queries.

Prints a table and writes `bench/results/revenue_close.json`. Only databases whose name contains
"bench_revenue" are ever dropped.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_bench_revenue")
# bench.dashboards sets up Django (its own defaults apply only where ours did not).
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.billing import CpuClock
from bench.dashboards import seed

RESULTS = Path(__file__).resolve().parent / "results" / "revenue_close.json"
MONTH = "2026-11"  # the first month after the demo's closed history


class _Rollback(Exception):
    pass


def _sample(call) -> dict:
    connection.ensure_connection()
    cpu = CpuClock(connection.connection.info.backend_pid)
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        call()
        wall = time.perf_counter() - began
    return {"wall_s": round(wall, 3), "cpu_s": cpu.stop(), "queries": len(captured.captured_queries)}


def measure(repeat: int, profile: Path | None) -> dict:
    from billing.models import Contract
    from revenue.models import RevenuePeriod, RevenueSchedule
    from revenue.services.close import revenue_close

    if RevenuePeriod.objects.filter(start="2026-11-01", status=RevenuePeriod.Status.CLOSED).exists():
        sys.exit(f"{MONTH} is closed in this database: seed it again (without --reuse).")
    drafts = []
    profiler = cProfile.Profile() if profile else None
    for i in range(repeat):
        if profiler is not None and i == repeat - 1:
            profiler.enable()
        drafts.append(_sample(lambda: revenue_close(period=MONTH, user=None, lock=False, reason="bench")))
        if profiler is not None and i == repeat - 1:
            profiler.disable()
            profiler.dump_stats(profile)
        print(
            f"  draft {i + 1}: {drafts[-1]['wall_s']:7.2f} s wall, {drafts[-1]['cpu_s']} s CPU, "
            f"{drafts[-1]['queries']} queries"
        )
    schedules = RevenueSchedule.objects.filter(period__start="2026-11-01").count()

    def close_and_roll_back() -> None:
        try:
            with transaction.atomic():
                revenue_close(
                    period=MONTH, user=None, lock=True, reason="bench", override_reason="bench: the month as it stands"
                )
                raise _Rollback
        except _Rollback:
            pass

    final = _sample(close_and_roll_back)
    print(f"  close: {final['wall_s']:7.2f} s wall, {final['cpu_s']} s CPU, {final['queries']} queries")
    best = min(drafts, key=lambda s: s["cpu_s"] or s["wall_s"])
    return {
        "month": MONTH,
        "live_contracts": Contract.objects.exclude(status=Contract.Status.DRAFT).count(),
        "contracts_scheduled": schedules,
        "draft_best": best,
        "draft_samples": drafts,
        "close_locked_rolled_back": final,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="Keep an already seeded database.")
    parser.add_argument("--profile", type=Path, help="cProfile of the last draft run, to this file.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    name = connection.settings_dict["NAME"]
    if "bench_revenue" not in name:
        sys.exit(f"bench.revenue_close drops and recreates its database: {name!r} must contain 'bench_revenue'.")
    load_before = os.getloadavg()
    print(f"Seeding scale {args.scale} (12 months of history, closed) into {name} ...")
    seeded = seed(args.scale, args.reuse)
    from billing.models import Invoice, TimeEntry
    from revenue.models import RevenuePeriod

    rows = {
        "time_entries": TimeEntry.objects.count(),
        "invoices": Invoice.objects.count(),
        "closed_months": RevenuePeriod.objects.filter(status=RevenuePeriod.Status.CLOSED).count(),
    }
    print("  " + ", ".join(f"{v:,} {k}" for k, v in rows.items()))
    print(f"Measuring the close of {MONTH} ({args.repeat} drafts, then the lock, rolled back) ...")
    measured = measure(args.repeat, args.profile)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    result = {
        "scale": args.scale,
        "measured_on": timezone.localdate().isoformat(),
        **seeded,
        "rows": rows,
        **measured,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "environment": {
            "python": platform.python_version(),
            "postgresql": server,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "note": "One month's close over the demo history: every live contract's approved work to the month end "
        "is read and priced. Wall time depends on the machine's load; CPU seconds (process + backend) "
        "and queries are the figures to compare.",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
