"""Bulk decisions benchmark: approving a PM's selection of N items, in queries and seconds.

    python -m bench.bulk [--sizes 10 50 500] [--repeat 2] [--reuse]

`<db>` (DATABASE_URL, default `billable_load_bench_bulk`; the name must contain "bench") is dropped,
created and migrated (the default approval policies come with the migrations). For each size N,
N submitted items of one consultant (four time entries to one expense) on a project are routed to
their policy, then approved:

- `bulk`: `work_approve_bulk` (the PM's "Approve week", a queue selection): one decision per item
  through `approval_decide_bulk`;
- `one_by_one`: `work_approve` per item (what the bulk path cost before: each item decided alone).

Each measurement runs in a transaction that is rolled back, so both decide the same items. It
counts every statement sent (an execute wrapper) and times the call (best of --repeat), and checks that
every item ended approved. Writes bench/results/bulk.json. Query counts are exact; the seconds are
noisy on a shared machine.
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
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_load_bench_bulk")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.db import admin  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bulk.json"


class _Rollback(Exception):
    pass


def _fresh_database() -> None:
    settings = connections["default"].settings_dict
    name = settings["NAME"]
    if settings["ENGINE"] != "django.db.backends.postgresql" or "bench" not in name:
        sys.exit(f"bench.bulk drops and recreates its PostgreSQL database: {name!r} must contain 'bench'.")
    connection.close()
    admin(
        settings,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)),
    )
    call_command("migrate", verbosity=0)


def _items(count: int):
    from approvals.services import approval_requests_open_bulk
    from tests.factories import ExpenseFactory, PersonFactory, ProjectFactory, TimeEntryFactory

    project, person = ProjectFactory(), PersonFactory()
    items = [
        (ExpenseFactory if i % 5 == 4 else TimeEntryFactory)(status="submitted", project=project, person=person)
        for i in range(count)
    ]
    approval_requests_open_bulk(subjects=items)
    return project.project_manager, items


def _measure(count: int, how: str, repeat: int) -> dict:
    from django.contrib.contenttypes.models import ContentType

    from billing.models import Expense, TimeEntry
    from billing.services.work import work_approve, work_approve_bulk

    ContentType.objects.get_for_models(TimeEntry, Expense)
    samples, queries = [], 0
    for _ in range(repeat):
        try:
            with transaction.atomic():
                pm, items = _items(count)
                counted = [0]

                def statement(execute, sql, params, many, context, counted=counted):
                    counted[0] += 1
                    return execute(sql, params, many, context)

                with connection.execute_wrapper(statement):
                    began = time.perf_counter()
                    if how == "bulk":
                        work_approve_bulk(items=items, user=pm)
                    else:
                        for item in items:
                            work_approve(item=item, user=pm)
                    samples.append(time.perf_counter() - began)
                queries = counted[0]
                approved = sum(
                    m.objects.filter(pk__in=[i.pk for i in items if isinstance(i, m)], status="approved").count()
                    for m in (TimeEntry, Expense)
                )
                if approved != count:
                    raise SystemExit(f"{how} {count}: {approved} of {count} approved")
                raise _Rollback
        except _Rollback:
            pass
    return {
        "items": count,
        "queries": queries,
        "queries_per_item": round(queries / count, 2),
        "best_s": round(min(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--one-by-one-sizes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="Keep the database (each measurement rolls back).")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.reuse:
        call_command("migrate", verbosity=0)
    else:
        print("Migrating a fresh database ...")
        _fresh_database()
    results: dict[str, list] = {"bulk": [], "one_by_one": []}
    for how, sizes in (("bulk", args.sizes), ("one_by_one", args.one_by_one_sizes)):
        for count in sizes:
            row = _measure(count, how, args.repeat)
            results[how].append(row)
            print(f"  {how:<11} {count:4d} items  {row['queries']:6d} queries  {row['best_s']:7.3f} s")
    result = {
        "measured_on": timezone.localdate().isoformat(),
        **results,
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "note": "Queries are exact (every statement through Django). Seconds are wall time on a shared 2-core "
        "machine: noisy.",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
