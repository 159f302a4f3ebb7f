"""A billing run whose worker dies: heartbeat, interruption, resume — and still nothing billed twice.

Issue #12, finding 10: a run killed with SIGKILL stayed `running` forever. The
first test kills a real worker process mid-chunk on PostgreSQL; the others pin
the sweep, the resume service and the run page (ADR 0037, ADR 0003).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone
from django_fsm_log.models import StateLog
from django_q.models import Schedule

from billing.models import BillingRun, Invoice, InvoiceLine, TimeEntry
from billing.schedules import STALE_RUN_SWEEP_FUNC
from billing.services.billing_run import (
    bill_period,
    billing_run_resume,
    billing_run_start,
    billing_runs_interrupt_stale,
)
from billing.tasks import run_billing_task, sweep_stale_billing_runs
from kernel.errors import ConflictError, PermissionDeniedError
from tests.factories import (
    BillingRunFactory,
    ContractFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.control("billing-run-recovery")

ROOT = Path(__file__).resolve().parents[2]
START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)
CONTRACTS, ENTRIES_PER_CONTRACT = 10, 3


def _work(contracts: int = CONTRACTS) -> None:
    """`contracts` T&M contracts, each with three approved 8-hour entries in March at 100.00."""
    role = RoleFactory(code="CONSULTANT")
    card = RateCardFactory()
    RateCardLineFactory(rate_card=card, role=role, rate=Decimal("100.00"))
    person = PersonFactory(role=role)
    entity = LegalEntityFactory()
    for _ in range(contracts):
        project = ProjectFactory(contract=ContractFactory(rate_card=card, entity=entity))
        for day in range(3, 3 + ENTRIES_PER_CONTRACT):
            TimeEntryFactory(project=project, person=person, date=datetime.date(2025, 3, day), status="approved")


def _assert_each_entry_billed_exactly_once(contracts: int = CONTRACTS) -> None:
    entries = contracts * ENTRIES_PER_CONTRACT
    assert TimeEntry.objects.filter(status="invoiced", invoice_line__isnull=False).count() == entries
    assert not TimeEntry.objects.filter(invoice_line__isnull=True).exists()
    live = Invoice.objects.exclude(status=Invoice.Status.CANCELLED)
    assert live.count() == contracts
    assert not live.values("contract").annotate(n=Count("pk")).filter(n__gt=1).exists()  # one per contract
    # The billed hours are the worked hours: no line bills an entry twice, none is lost.
    assert InvoiceLine.objects.aggregate(h=Sum("quantity"))["h"] == Decimal("8.00") * entries


def _transitions(run: BillingRun) -> list[StateLog]:
    content_type = ContentType.objects.get_for_model(BillingRun)
    return list(StateLog.objects.filter(content_type=content_type, object_id=run.pk).order_by("pk"))


@pytest.fixture
def analyst():
    return UserFactory(username="ana", groups=["finance_analyst"])


@pytest.fixture
def auditor():
    return UserFactory(username="audrey", groups=["auditor"])


# --- the real thing: a worker process killed with SIGKILL in the middle of a chunk ----------------------

WORKER = textwrap.dedent(
    """
    import functools, sys, time
    import django
    django.setup()
    from billing import tasks
    from billing.services import billing_run as br

    run_id, ready = int(sys.argv[1]), sys.argv[2]
    real_chunk, chunks = br._bill_chunk, []

    def chunk_then_hang(*args, **kwargs):
        real_chunk(*args, **kwargs)  # invoices written, not committed yet
        chunks.append(1)
        if len(chunks) == 3:
            open(ready, "w").write("inside chunk 3")
            time.sleep(600)  # SIGKILL lands here, inside chunk 3's transaction

    br._bill_chunk = chunk_then_hang
    tasks.run_billing = functools.partial(br.run_billing, chunk_size=2)  # five chunks of two contracts
    tasks.run_billing_task(run_id)
    """
)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_is_interrupted_and_resume_bills_every_entry_exactly_once(client, analyst, tmp_path):
    _work()
    dead = BillingRun.objects.create(period_start=START, period_end=END, run_date=RUN_DATE, started_by=analyst)
    ready = tmp_path / "ready"
    # One chunk after another (ADR 0085: chunks side by side would go on committing past the hung one).
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "BILLING_RUN_PARALLEL_CHUNKS": "1",
        "BILLING_RUN_CHUNK_SIZE": "2",  # five chunks of two contracts
        "BILLING_RUN_FAN_OUT": "false",  # one worker; the fanned-out run is killed in tests/billing/test_run_workers.py
    }
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", WORKER, str(dead.pk), str(ready)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert worker.poll() is None, worker.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "the worker never reached its third chunk"
            time.sleep(0.1)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()
        worker.stderr.close()

    dead.refresh_from_db()
    # The dead worker's state: two chunks committed with their heartbeat, the third rolled back by the database.
    assert dead.status == BillingRun.Status.RUNNING
    assert (dead.contracts_done, dead.contracts_total) == (4, CONTRACTS)
    assert dead.heartbeat_at is not None and dead.summary["invoices"] == 4
    assert Invoice.objects.filter(billing_run=dead).count() == 4
    assert TimeEntry.objects.filter(status="invoiced").count() == 4 * ENTRIES_PER_CONTRACT

    # A fresh heartbeat is a live worker as far as anyone can tell: the sweep leaves it alone.
    assert sweep_stale_billing_runs() == 0
    # Six minutes later (threshold five), the scheduled sweep declares it interrupted, with who/when/why.
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=6)):
        assert sweep_stale_billing_runs() == 1
    dead.refresh_from_db()
    assert dead.status == BillingRun.Status.INTERRUPTED
    interrupted = _transitions(dead)[-1]
    assert (interrupted.source_state, interrupted.state, interrupted.by) == ("running", "interrupted", None)
    assert "No heartbeat since" in interrupted.description and "4 of 10 contracts" in interrupted.description

    # The run page shows it ended, with a Resume button; no more polling.
    client.force_login(analyst)
    html = client.get(reverse("billing:run_detail", args=[dead.pk])).content.decode()
    assert "Interrupted" in html and 'id="resume-run"' in html and "hx-trigger" not in html

    with mock.patch("billing.services.billing_run.async_task") as enqueue:
        response = client.post(reverse("billing:run_resume", args=[dead.pk]))
    resuming = BillingRun.objects.get(resumes=dead)
    assert response.status_code == 303 and response.url == reverse("billing:run_detail", args=[resuming.pk])
    assert enqueue.call_args.args == ("billing.tasks.run_billing_task", resuming.pk)
    run_billing_task(resuming.pk)  # what the worker does with the queued task

    resuming.refresh_from_db()
    dead.refresh_from_db()
    assert resuming.status == BillingRun.Status.DONE, resuming.error
    assert resuming.summary["invoices"] == CONTRACTS - 4  # only what the dead run left
    assert dead.status == BillingRun.Status.RESUMED
    resumed = _transitions(dead)[-1]
    assert (resumed.state, resumed.by) == ("resumed", analyst)
    assert f"Resumed by run {resuming.pk}" in resumed.description
    _assert_each_entry_billed_exactly_once()

    # And running the period once more finds nothing left: still exactly once.
    again = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    assert again.summary["invoices"] == 0
    _assert_each_entry_billed_exactly_once()


def _test_database_url() -> str:
    settings = connection.settings_dict
    user, host, port = settings["USER"] or "postgres", settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{settings['NAME']}"


# --- the sweep ---------------------------------------------------------------------------------------------


def _running(*, silent_for: datetime.timedelta, **fields) -> BillingRun:
    run = BillingRunFactory(**fields)
    beat = timezone.now() - silent_for
    BillingRun.objects.filter(pk=run.pk).update(status="running", started_at=beat, heartbeat_at=beat, **fields)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_sweep_interrupts_only_running_runs_silent_beyond_the_threshold(settings):
    settings.BILLING_RUN_STALE_AFTER_SECONDS = 300
    dead = _running(silent_for=datetime.timedelta(minutes=6), contracts_total=8, contracts_done=3)
    alive = _running(silent_for=datetime.timedelta(minutes=4))
    never_beat = BillingRunFactory()
    BillingRun.objects.filter(pk=never_beat.pk).update(
        status="running", started_at=timezone.now() - datetime.timedelta(hours=1), heartbeat_at=None
    )
    queued, done = BillingRunFactory(), BillingRunFactory()
    BillingRun.objects.filter(pk=done.pk).update(
        status="done", heartbeat_at=timezone.now() - datetime.timedelta(days=3)
    )

    assert {r.pk for r in billing_runs_interrupt_stale()} == {dead.pk, never_beat.pk}
    statuses = dict(BillingRun.objects.values_list("pk", "status"))
    assert statuses == {
        dead.pk: "interrupted", never_beat.pk: "interrupted", alive.pk: "running", queued.pk: "queued", done.pk: "done",
    }
    dead.refresh_from_db()
    assert dead.finished_at is not None and "3 of 8 contracts" in dead.error
    assert billing_runs_interrupt_stale() == []  # idempotent: nothing left to interrupt
    assert len([t for t in _transitions(dead) if t.state == "interrupted"]) == 1


@pytest.mark.django_db
def test_the_sweep_is_scheduled_every_minute():
    schedule = Schedule.objects.get(func=STALE_RUN_SWEEP_FUNC)
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)


@pytest.mark.django_db
def test_starting_a_new_run_interrupts_a_dead_one_first(analyst):
    dead = _running(silent_for=datetime.timedelta(hours=2))
    with mock.patch("billing.services.billing_run.async_task"):
        billing_run_start(period_start=START, period_end=END, run_date=RUN_DATE, user=analyst)
    dead.refresh_from_db()
    assert dead.status == "interrupted"
    log = _transitions(dead)[-1]
    assert log.by == analyst and "start of a new run" in log.description


@pytest.mark.django_db
def test_a_worker_declared_dead_while_alive_stops_after_its_chunk_and_resume_finishes(analyst):
    """A chunk slower than the threshold (or a lock wait): the run is interrupted under the worker.

    The worker's next heartbeat finds the run no longer running and stops; what it committed
    stays billed and recorded; the resuming run bills the rest, each entry once.
    """
    _work()
    from billing.services import billing_run as service

    real_chunk, chunks = service._bill_chunk, []

    def chunk_then_time_passes(*args, **kwargs):
        real_chunk(*args, **kwargs)
        chunks.append(1)
        if len(chunks) == 2:  # the sweep sees a heartbeat six minutes old
            BillingRun.objects.filter(status="running").update(
                heartbeat_at=timezone.now() - datetime.timedelta(minutes=6)
            )
            assert len(billing_runs_interrupt_stale()) == 1

    with mock.patch.object(service, "_bill_chunk", chunk_then_time_passes):
        run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE, user=analyst, chunk_size=3)
    assert len(chunks) == 2  # it stopped instead of billing on under an interrupted run
    assert run.status == "interrupted"
    assert run.summary["invoices"] == 6 and run.contracts_done == 6  # its second chunk is recorded too
    assert Invoice.objects.filter(billing_run=run).count() == 6

    with mock.patch("billing.services.billing_run.async_task"):
        resuming = billing_run_resume(billing_run=run, user=analyst)
    run_billing_task(resuming.pk)
    resuming.refresh_from_db()
    assert resuming.status == "done" and resuming.summary["invoices"] == CONTRACTS - 6
    _assert_each_entry_billed_exactly_once()


# --- resume: who, from which state, how many times --------------------------------------------------------


@pytest.mark.django_db
def test_only_finance_resumes_and_only_an_interrupted_run_once(analyst, auditor):
    dead = _running(silent_for=datetime.timedelta(hours=1))
    with pytest.raises(ConflictError, match="only an interrupted run"):
        billing_run_resume(billing_run=dead, user=analyst)  # still running as far as the database knows
    billing_runs_interrupt_stale()
    dead.refresh_from_db()
    with pytest.raises(PermissionDeniedError):
        billing_run_resume(billing_run=dead, user=auditor)
    with pytest.raises(PermissionDeniedError):
        billing_run_resume(billing_run=dead, user=UserFactory(groups=["collections"]))
    with mock.patch("billing.services.billing_run.async_task") as enqueue:
        resuming = billing_run_resume(billing_run=dead, user=analyst)
        with pytest.raises(ConflictError, match="resumed"):
            billing_run_resume(billing_run=dead, user=analyst)  # a second click
    assert enqueue.call_count <= 1  # on commit (a test transaction never commits)
    assert BillingRun.objects.filter(resumes=dead).count() == 1
    assert (resuming.period_start, resuming.period_end, resuming.run_date) == (START, END, RUN_DATE)
    assert resuming.contract_codes == dead.contract_codes and resuming.status == "queued"
    with pytest.raises(ConflictError):
        billing_run_resume(billing_run=BillingRunFactory(), user=analyst)  # queued


# --- the run page ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_viewing_a_dead_run_shows_it_interrupted_with_resume_for_finance_only(client, analyst, auditor):
    dead = _running(silent_for=datetime.timedelta(minutes=30), contracts_total=5, contracts_done=2)
    client.force_login(auditor)
    html = client.get(reverse("billing:run_detail", args=[dead.pk])).content.decode()
    dead.refresh_from_db()
    assert dead.status == "interrupted"  # noticed lazily by the page, not on the auditor's behalf
    assert _transitions(dead)[-1].by is None and "run page" in _transitions(dead)[-1].description
    assert 'id="run-interrupted"' in html and "Interrupted" in html
    assert "resume-run" not in html  # auditors read, never act
    assert 'value="2"' in html and 'max="5"' in html and "hx-trigger" not in html  # the bar stops where it died
    assert client.post(reverse("billing:run_resume", args=[dead.pk])).status_code == 403
    assert not BillingRun.objects.filter(resumes=dead).exists()

    client.force_login(analyst)
    html = client.get(reverse("billing:run_progress", args=[dead.pk])).content.decode()
    assert 'id="resume-run"' in html and "hx-trigger" not in html


@pytest.mark.django_db
def test_a_live_run_keeps_polling_and_offers_no_resume(client, analyst):
    alive = _running(silent_for=datetime.timedelta(seconds=5), contracts_total=5, contracts_done=2)
    client.force_login(analyst)
    html = client.get(reverse("billing:run_detail", args=[alive.pk])).content.decode()
    assert "hx-trigger" in html and "resume-run" not in html and "last heartbeat" in html
    alive.refresh_from_db()
    assert alive.status == "running"


@pytest.mark.django_db
def test_resumed_and_resuming_runs_point_to_each_other(client, analyst):
    dead = _running(silent_for=datetime.timedelta(hours=1))
    billing_runs_interrupt_stale()
    with mock.patch("billing.services.billing_run.async_task"):
        resuming = billing_run_resume(billing_run=BillingRun.objects.get(pk=dead.pk), user=analyst)
    client.force_login(analyst)
    old = client.get(reverse("billing:run_detail", args=[dead.pk])).content.decode()
    assert 'id="run-resumed"' in old and reverse("billing:run_detail", args=[resuming.pk]) in old
    assert "resume-run" not in old and "hx-trigger" not in old
    new = client.get(reverse("billing:run_detail", args=[resuming.pk])).content.decode()
    assert 'id="run-resumes"' in new and reverse("billing:run_detail", args=[dead.pk]) in new
    listing = client.get(reverse("billing:run_list")).content.decode()
    assert "Resumed" in listing and "Queued" in listing
