"""Load test: a realistic user mix against gunicorn + PostgreSQL + Redis-backed django-q2.

    python -m bench.loadtest [--scale 10] [--reuse] [--users 16 64] [--run-time 180] [--warm-up 30]
                             [--workers 2×cores+1]

1. seed: `<db>` (DATABASE_URL, default `billable_load_bench`; the name must contain "bench") is
   dropped, created, migrated and filled with `seed_demo --scale N` (as bench/dashboards.py does);
   `--reuse` keeps a seeded database (then only `migrate` runs).
2. prepare: signed-in sessions (MFA passed where the role needs it) for consultants (persons of the
   demo given a login), the 12 PMs with the most weeks to decide (rejected weeks resubmitted by their
   people until each PM has 20 waiting, a month-end queue), the analysts, controllers and collections;
   an integration client (write:time, read:billing) and samples of invoices, clients and
   person/project pairs; written to var/loadtest/fixtures.json for bench/locustfile.py.
3. serve: gunicorn (`--workers`, sync) with bench/load_settings.py (the production settings plus an
   empty view), DEBUG off, and a django-q2 cluster on Redis (`Q_REDIS_URL`, default db 15), started
   with `nice -n 10` as the deployment guide runs it next to the web workers.
4. run: 30 s of the mix to warm the web workers (`--warm-up`, not recorded), then locust headless,
   each user count in turn (`--run-time` seconds, ramp 4 users/s), and reads
   its per-request statistics: requests, failures, p50/p95/p99 (ms) and requests/s per page; before
   each, the machine's speed (`machine_speed_ms`, a fixed piece of pure-Python work).

Writes bench/results/load.json (with the machine, the load average before and after each run)
and prints the table. Timings on a shared machine are noisy: read them with the load noted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_load_bench")
os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.procs import cpu_snapshot, wait_until_idle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "load.json"
VAR = ROOT / "var" / "loadtest"
INTERACTIVE_P95_MS = 250
FLOOR_NAME = "empty view (floor)"
WORKER_NICENESS = 10


def prepare(consultants: int = 24, pms: int = 12) -> dict:
    """Sessions per role and samples of ids for the locustfile."""
    from django.contrib.auth import get_user_model

    from bench.sessions import signed_in_session_key
    from billing.models import Client, Invoice, Person, TimeEntry
    from integrations.services.clients import integration_client_create

    users = get_user_model()
    today = timezone.localdate()
    # PMs: those with the most weeks to decide, busiest first (a 16-user run signs in the first few).
    pm_ids = _busiest_pms(pms)
    resubmitted = _resubmit_rejected_weeks(pm_ids)
    # Consultants: the demo's one, plus persons with open (draft or rejected) time given a login of their own.
    linked = list(users.objects.filter(person__isnull=False, groups__name="consultant").distinct()[:consultants])
    people = list(
        Person.objects.filter(user__isnull=True, active=True, time_entries__status__in=["draft", "rejected"])
        .distinct()
        .order_by("pk")[: max(0, consultants - len(linked))]
    )
    for person in people:  # a login for each (kept for the next run)
        _login_for(person, consultant=True)
    consultant_users = list(
        users.objects.filter(person__isnull=False, groups__name="consultant").distinct().order_by("pk")[:consultants]
    )
    # Each consultant opens the week of their latest open time, where they have rows to save.
    weeks = {user.pk: _week_to_save(user, today) for user in consultant_users}
    pm_users = users.objects.in_bulk(pm_ids)
    sessions = {
        "consultant": [signed_in_session_key(u) for u in consultant_users],
        "pm": [signed_in_session_key(pm_users[pk]) for pk in pm_ids],
        "analyst": [signed_in_session_key(u) for u in users.objects.filter(groups__name="finance_analyst")],
        "controller": [signed_in_session_key(u) for u in users.objects.filter(groups__name="finance_controller")],
        "collections": [signed_in_session_key(u) for u in users.objects.filter(groups__name="collections")],
    }
    name = f"load-{int(time.time())}"
    _client, token, _secret = integration_client_create(
        name=name, scopes=["write:time", "read:billing"], source=name, throttle_rate="1000000/min"
    )
    pairs = list(
        TimeEntry.objects.filter(project__status="active", person__active=True)
        .values("person__code", "project__code")
        .distinct()[:200]
    )
    fixtures = {
        "today": today.isoformat(),
        "consultant_weeks": [weeks[u.pk] for u in consultant_users],
        "sessions": sessions,
        "api_token": token,
        "invoices": list(Invoice.objects.order_by("-pk").values_list("pk", flat=True)[:500]),
        # /api/v1/invoices/ serves invoices (credit notes have their own route); issued ones here.
        "api_invoices": list(
            Invoice.objects.filter(kind="invoice", number__isnull=False)
            .order_by("-pk")
            .values_list("pk", flat=True)[:500]
        ),
        "clients": list(Client.objects.filter(invoices__isnull=False).distinct().values_list("pk", flat=True)[:200]),
        "work_pairs": [{"person_code": p["person__code"], "project_code": p["project__code"]} for p in pairs],
    }
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / "fixtures.json").write_text(json.dumps(fixtures))
    return {**{role: len(keys) for role, keys in sessions.items()}, "weeks_resubmitted": resubmitted}


def _busiest_pms(count: int) -> list[int]:
    """The project managers with the most person-weeks submitted or rejected on active projects, most first."""
    from collections import Counter

    from django.db.models.functions import TruncWeek

    from billing.models import TimeEntry

    person_weeks = (
        TimeEntry.objects.filter(status__in=["submitted", "rejected"], project__status="active")
        .exclude(project__project_manager=None)
        .annotate(week=TruncWeek("date"))
        .values_list("project__project_manager_id", "person_id", "week")
        .distinct()
    )
    weeks = Counter(pm for pm, _person, _week in person_weeks)
    return [pm for pm, _n in sorted(weeks.items(), key=lambda item: (-item[1], item[0]))[:count]]


def _login_for(person, *, consultant: bool = False):
    """A login for a seeded person (kept for the next run): the person acts on their own time through it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from billing.models import Person

    if person.user_id:
        return person.user
    user, _ = get_user_model().objects.get_or_create(
        username=f"load-{person.code}".lower()[:150], defaults={"first_name": person.name[:30]}
    )
    if consultant:
        user.groups.add(Group.objects.get(name="consultant"))
    Person.objects.filter(pk=person.pk).update(user=user)
    person.user = user
    return user


def _resubmit_rejected_weeks(pm_ids: list[int], waiting: int = 20) -> int:
    """The PMs' consultants correct and resubmit rejected weeks, until each PM has `waiting` weeks to decide.

    The seed leaves 3 to 7 weeks waiting for each PM, and the queues emptied within the first half
    minute of a run: "approve week" had 11 requests, all on workers not yet warm. Each rejected week,
    the latest first, goes back to draft and is submitted again by its person through the services (one
    refused stays as it is). Returns the weeks resubmitted.
    """
    from django.db.models.functions import TruncWeek

    from billing.models import TimeEntry
    from billing.services.work import work_redraft, work_submit_bulk
    from kernel.errors import ApplicationError

    def person_weeks(status: str):
        return (
            TimeEntry.objects.filter(status=status, project__status="active", project__project_manager_id__in=pm_ids)
            .annotate(week=TruncWeek("date"))
        )

    queued: dict[int, set] = {pm: set() for pm in pm_ids}
    for pm, person, week in person_weeks("submitted").values_list("project__project_manager_id", "person_id", "week"):
        queued[pm].add((person, week))
    weeks: dict[tuple[int, int, date], list] = {}
    for entry in person_weeks("rejected").select_related("person__user", "project").order_by("-date", "pk"):
        weeks.setdefault((entry.project.project_manager_id, entry.person_id, entry.week), []).append(entry)
    done = 0
    for (pm, person, week), entries in weeks.items():
        if len(queued[pm]) >= waiting or (person, week) in queued[pm]:
            continue
        user = _login_for(entries[0].person)
        try:
            for entry in entries:
                work_redraft(item=entry, user=user)
            work_submit_bulk(items=entries, user=user)
        except ApplicationError:
            continue
        queued[pm].add((person, week))
        done += 1
    return done


def _week_to_save(user, today: date) -> str:
    """The ISO week of the consultant's latest open (draft or rejected) time that a save can change.

    The seeded history books its invoiced hours on the weekdays of each invoice's period in turn, and
    more of them than the staff has days for: many person-days hold over 24 h of old, invoiced work. A
    week with such a day refuses every save (the day limit), so it would measure the refusal, not a
    save. Failing an open week without one, the current week.
    """
    from django.db.models import Sum

    from billing.models import TimeEntry
    from billing.models.work import MAX_HOURS_PER_DAY

    over = set(
        TimeEntry.objects.filter(person__user=user)
        .values("date")
        .annotate(hours=Sum("hours"))
        .filter(hours__gt=MAX_HOURS_PER_DAY)
        .values_list("date", flat=True)
    )
    mondays = sorted(
        {
            day - timedelta(days=day.weekday())
            for day in TimeEntry.objects.filter(person__user=user, status__in=["draft", "rejected"]).values_list(
                "date", flat=True
            )
        },
        reverse=True,
    )
    monday = next((m for m in mondays if not any(m + timedelta(days=i) in over for i in range(7))), None)
    if monday is None:
        monday = today - timedelta(days=today.weekday())
        _begin_week(user, monday)
    iso = monday.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def _begin_week(user, monday: date) -> None:
    from billing.models import Project, TimeEntry
    from billing.services.work import time_entry_create
    from kernel.errors import ApplicationError

    person = user.person
    if TimeEntry.objects.filter(person=person, date__gte=monday, date__lte=monday + timedelta(days=6)).exists():
        return
    project = (
        Project.objects.filter(time_entries__person=person, status="active", contract__status="active")
        .order_by("-time_entries__date")
        .first()
    )
    if project is not None:
        with contextlib.suppress(ApplicationError):  # a person who may not book: the week stays empty
            time_entry_create(
                person=person, project=project, date=monday, hours="4", description="Load test", user=user
            )


def _wait_for(url: str, timeout: float = 90) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)  # noqa: S310 - our own local server
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"The server did not answer at {url} within {timeout} s.")


def serve(port: int, workers: int, redis_url: str) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "DEBUG": "false",
        "Q_REDIS_URL": redis_url,
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    bin_dir = Path(sys.executable).parent
    for log in ("access.log", "requests.log"):  # this server's requests only (bench/request_costs.py)
        (VAR / log).unlink(missing_ok=True)
    web = subprocess.Popen(
        [
            str(bin_dir / "gunicorn"),
            "portal.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
            # Each request's server-side time (µs) and worker: read beside locust's figures, it tells the
            # time spent in the application from the time spent waiting for a worker or in the client.
            "--access-logfile",
            str(VAR / "access.log"),
            "--access-logformat",
            "%(t)s %(p)s %(m)s %(U)s %(s)s %(D)s",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    # The workers run below the web workers' CPU priority, as README's deployment section says: PDF
    # rendering, deliveries and the KPI refresh yield the cores to the people waiting for a page.
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: os.nice(WORKER_NICENESS),  # this process runs no threads
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(f"http://127.0.0.1:{port}/__bench__/empty/")
    return [web, worker]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def machine_speed_ms(rounds: int = 5) -> float:
    """The fastest of `rounds` timings of one fixed piece of pure-Python work (about 20 ms on this machine).

    The shared machine runs at different speeds at different hours: the same page took 36.5 ms in
    the morning and 42 ms in the evening (ADR 0134). Measured before each run, it says which runs
    can be compared by their milliseconds.
    """
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        total = 0
        for number in range(200_000):
            total += len(str(number * 7)) % 3
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 1)


def _locust(port: int, users: int, run_time: int, prefix: Path) -> None:
    """Locust, headless, with the user mix of bench/locustfile.py; its statistics in `prefix`_stats.csv."""
    env = {**os.environ, "LOADTEST_FIXTURES": str(VAR / "fixtures.json")}
    subprocess.run(
        [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(max(1, min(users, 4))),
            "-t",
            f"{run_time}s",
            "--host",
            f"http://127.0.0.1:{port}",
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        check=False,
    )


def warm_up(port: int, users: int, run_time: int, worker_pgid: int) -> dict:
    """The user mix for `run_time` seconds, not measured: the web workers' first requests of each page.

    A gunicorn worker's first request of a page compiles what the page needs the first time (queries'
    SQL, lazily imported modules, per-process caches): two to five times the page's usual time, and
    up to a second for a worker's first request of all (ADR 0136). A server in use has long done that;
    measured, those requests were most of the rare pages' samples. The cluster then settles the work the
    warm-up made (deliveries) before the measured runs.
    """
    began = time.monotonic()
    _locust(port, users, run_time, VAR / "locust-warm-up")
    wait_until_idle(worker_pgid)
    with open(VAR / "locust-warm-up_stats.csv", newline="") as handle:
        requests = next((int(r["Request Count"]) for r in csv.DictReader(handle) if r["Name"] == "Aggregated"), 0)
    return {"users": users, "run_time_s": run_time, "requests": requests, "took_s": round(time.monotonic() - began, 1)}


def run_locust(port: int, users: int, run_time: int, groups: dict[str, int]) -> dict:
    prefix = VAR / f"locust-{users}"
    speed_ms = machine_speed_ms()
    load_before = os.getloadavg()
    began = timezone.now()
    cpu_before, locust_before = cpu_snapshot(groups), _children_cpu()
    _locust(port, users, run_time, prefix)
    cpu = {name: used - cpu_before[name] for name, used in cpu_snapshot(groups).items()}
    cpu["locust"] = _children_cpu() - locust_before
    cpu["other"] = cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine")
    pages: dict[str, dict] = {}
    total: dict = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            figures = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "p50_ms": float(row["50%"] or 0),
                "p95_ms": float(row["95%"] or 0),
                "p99_ms": float(row["99%"] or 0),
                "rps": round(float(row["Requests/s"]), 2),
            }
            if row["Name"] == "Aggregated":
                total = figures
            else:
                pages[f"{row['Type']} {row['Name']}"] = figures
    failures = []
    if Path(f"{prefix}_failures.csv").exists():
        with open(f"{prefix}_failures.csv", newline="") as handle:
            failures = [
                {"page": f"{r['Method']} {r['Name']}", "error": r["Error"][:300], "occurrences": int(r["Occurrences"])}
                for r in csv.DictReader(handle)
            ]
    return {
        "users": users,
        "run_time_s": run_time,
        "pages": pages,
        "total": total,
        "failures": failures,
        "machine_speed_ms": speed_ms,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "background_tasks": background_tasks(began, timezone.now()),
        # Where the run's CPU went, in seconds (two cores give 2 × run_time): the web tier, the worker
        # cluster, PostgreSQL, locust itself (the client shares the machine) and everything else.
        "cpu_s": {name: round(used, 1) for name, used in cpu.items()},
    }


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (locust runs as one, to its end, per user count)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def background_tasks(began, ended) -> dict[str, dict]:
    """The django-q2 tasks the cluster ran during a run (deliveries, schedules): count and seconds, by function."""
    from django.db.models import Count, F, Sum
    from django_q.models import Task

    rows = (
        Task.objects.filter(started__gte=began, started__lte=ended)
        .values("func")
        .annotate(count=Count("id"), seconds=Sum(F("stopped") - F("started")))
        .order_by("func")
    )
    return {r["func"]: {"count": r["count"], "seconds": round(r["seconds"].total_seconds(), 1)} for r in rows}


def wait_for_due_schedules(due: datetime, timeout: float = 300) -> None:
    """Wait until the cluster has fired every schedule due at `due` (the scheduler moves `next_run` on)."""
    from django_q.models import Schedule

    deadline = time.monotonic() + timeout
    while Schedule.objects.filter(next_run__lte=due).exclude(repeats=0).exists() and time.monotonic() < deadline:
        time.sleep(1)
    connection.close()


def is_interactive(page: str) -> bool:
    """A page a person waits for in the browser: not the floor, not an API call ("GET api …", "PUT api …")."""
    _method, name = page.split(" ", 1)
    return name != FLOOR_NAME and not name.startswith("api ")


def verdict(run: dict) -> dict:
    """The targets at this user count: interactive pages p95 ≤ 250 ms and ≤ 5× the floor's; API calls are
    held to the same figures but reported apart (machine clients, bulk reads of 50 invoices with lines)."""
    floor = next((v for k, v in run["pages"].items() if k.endswith(FLOOR_NAME)), None)
    floor_p95 = floor["p95_ms"] if floor else None

    def slow(wanted) -> dict[str, float]:
        return {
            k: v["p95_ms"]
            for k, v in run["pages"].items()
            if wanted(k) and (v["p95_ms"] > INTERACTIVE_P95_MS or (floor_p95 and v["p95_ms"] > 5 * floor_p95))
        }

    return {
        "floor_p95_ms": floor_p95,
        "over_target": slow(is_interactive),
        "api_over_target": slow(lambda k: not is_interactive(k) and not k.endswith(FLOOR_NAME)),
        "errors": run["total"].get("failures", 0),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="Keep an already seeded database.")
    parser.add_argument("--users", type=int, nargs="+", default=[16, 64])
    # Three minutes a count: enough requests of the rarer pages (a few per cent of the mix) for a p95.
    parser.add_argument("--run-time", type=int, default=180)
    parser.add_argument("--warm-up", type=int, default=30, help="Seconds of the mix before the measured runs.")
    # The deployment guide's gunicorn size (README): about 2 × cores + 1 sync workers.
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--port", type=int, default=8897)
    parser.add_argument("--redis", default=os.environ.get("LOADTEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from bench.dashboards import seed, sizes

    print(f"Seeding scale {args.scale} ...")
    seeded = seed(args.scale, args.reuse)
    if seeded["reused"]:
        call_command("migrate", verbosity=0)
    counts = sizes()
    print("  " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    prepared = prepare()
    print(f"  sessions: {prepared}")
    connection.close()
    processes = serve(args.port, args.workers, args.redis)
    runs = []
    try:
        # Steady state: a cluster just started first runs the schedules that fell due while it was down
        # (the KPI refresh, 4-7 s of CPU at scale 10); they then recur on their own intervals. The
        # scheduler fires them on its first tick, some seconds after start: wait for that, then for quiet.
        began = time.monotonic()
        wait_for_due_schedules(timezone.now())
        wait_until_idle(processes[1].pid)
        warm_up_s = round(time.monotonic() - began, 1)
        print(f"Worker cluster idle after {warm_up_s} s")
        warmed = warm_up(args.port, args.users[0], args.warm_up, processes[1].pid) if args.warm_up else None
        print(f"Web workers warmed up: {warmed}")
        for users in args.users:
            print(f"Running {users} users for {args.run_time} s ...")
            run = run_locust(args.port, users, args.run_time, {"web": processes[0].pid, "workers": processes[1].pid})
            run["verdict"] = verdict(run)
            runs.append(run)
            for name, v in sorted(run["pages"].items()):
                print(
                    f"  {name:<40} {v['requests']:6d} req {v['failures']:4d} err  p50 {v['p50_ms']:7.0f}  "
                    f"p95 {v['p95_ms']:7.0f}  p99 {v['p99_ms']:7.0f} ms"
                )
            print(
                f"  total {run['total'].get('rps')} req/s, load average {run['load_average_after']}, "
                f"machine speed {run['machine_speed_ms']} ms"
            )
            print(f"  background tasks {run['background_tasks']}")
            print(f"  CPU seconds {run['cpu_s']}")
    finally:
        stop(processes)
    result = {
        "scale": args.scale,
        "measured_on": timezone.localdate().isoformat(),
        "rows": counts,
        "stack": {
            "gunicorn_workers": args.workers,
            "worker_class": "sync",
            "database": "PostgreSQL",
            "queue": f"django-q2 on Redis (nice {WORKER_NICENESS})",
            "client": "locust (same machine)",
        },
        "sessions": prepared,
        "worker_warm_up_s": warm_up_s,
        "web_warm_up": warmed,
        "runs": runs,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "node": platform.node(),
        },
        "note": "Locust, gunicorn, PostgreSQL and Redis share one machine with other work: the load average "
        "before and after each run is recorded; read the milliseconds with it.",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
