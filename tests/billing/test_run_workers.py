"""A billing run fanned out to a real django-q2 cluster (two workers, Redis or the ORM broker), ADR 0115.

The run task plans its chunks as `BillingRunChunk` rows and queues one task per chunk; each worker
claims chunks under their row lock inside the transaction that bills them. Proven here against the
one-worker path on twin data (purchase orders drawn in the same order), with every chunk task
delivered twice more, and with the run interrupted while chunks are in flight.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django_q.tasks import async_task

from billing.models import BillingRun, BillingRunChunk, Invoice, TimeEntry
from billing.services.billing_run import (
    bill_period,
    billing_run_resume,
    billing_run_start,
    billing_runs_interrupt_stale,
)
from billing.tasks import bill_run_chunks_task, run_billing_task
from tests.billing.po_helpers import END, RUN_DATE, START, bill_hours, client, po_contract, purchase_order
from tests.factories import UserFactory
from tests.integrations.outbox.worker import ROOT, Cluster, wait_for, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LAYOUT = "PNNPNNPNNP"  # per twin, in id order: P draws on the one PO, N draws on none; chunks of two
CONTRACTS, CHUNKS = len(LAYOUT), len(LAYOUT) // 2


class SlowChunkCluster(Cluster):
    """The stock cluster, its workers pausing inside each chunk (`qcluster_slow_chunks.py`)."""

    def start(self) -> SlowChunkCluster:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(Path(__file__).with_name("qcluster_slow_chunks.py"))],
            cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True,
        )
        return self


@pytest.fixture
def cluster(tmp_path):
    started: list[Cluster] = []

    def start(pause: float = 0.0, workers: int = 2) -> Cluster:
        env = worker_env("http://127.0.0.1:9", Q_WORKERS=str(workers), Q_TIMEOUT="120", Q_RETRY="150",
                         BILLING_RUN_CHUNK_SIZE="2", BILLING_TEST_CHUNK_PAUSE_S=str(pause))
        c = SlowChunkCluster(env, tmp_path / "qcluster.log").start()
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def _twin(prefix: str) -> list[str]:
    """Ten contracts of 400.00 each (`LAYOUT`): four draw on one PO of 1,000.00, six on none."""
    po = purchase_order(client(code=f"{prefix}-POC"), amount="1000.00", number=f"PO-{prefix}")
    codes = []
    for n, kind in enumerate(LAYOUT):
        code = f"{prefix}-{kind}{n}"
        contract = po_contract(code, po) if kind == "P" else po_contract(code, None, client=client(code=f"{code}-CL"))
        bill_hours(contract, "4.00")
        codes.append(code)
    return codes


def _outcome(codes: list[str]) -> list[tuple]:
    """Per contract (by position in its twin): status, subtotal, exception codes; suffixes only."""
    result = []
    for code in codes:
        invoices = Invoice.objects.filter(contract__code=code).exclude(status=Invoice.Status.CANCELLED)
        assert invoices.count() == 1, code
        invoice = invoices.get()
        exceptions = sorted(invoice.exceptions.values_list("code", flat=True))
        result.append((code.split("-", 1)[1], invoice.status, invoice.subtotal, exceptions))
    return result


def _assert_billed_once() -> None:
    assert not TimeEntry.objects.filter(invoice_line__isnull=True).exists()
    live = Invoice.objects.exclude(status=Invoice.Status.CANCELLED)
    assert not live.values("contract").annotate(n=Count("pk")).filter(n__gt=1).exists()


def _ended(run: BillingRun) -> bool:
    run.refresh_from_db()
    return run.is_ended


def test_two_workers_bill_what_one_worker_bills_and_duplicate_deliveries_bill_nothing_twice(cluster):
    analyst = UserFactory(username="ana", groups=["finance_analyst"])
    fanned, single = _twin("FAN"), _twin("ONE")
    # One worker, in this process: the reference.
    reference = bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=single, user=analyst)
    assert reference.status == BillingRun.Status.DONE

    run = billing_run_start(period_start=START, period_end=END, run_date=RUN_DATE, contract_codes=fanned, user=analyst)
    for _ in range(3):  # the run task delivered three more times: only one worker ever runs it
        async_task("billing.tasks.run_billing_task", run.pk)
    c = cluster()
    wait_for(lambda: _ended(run), timeout=120, what=lambda: f"the run to end ({run.status})\n{c.log()}")
    assert run.status == BillingRun.Status.DONE, run.error
    chunks = BillingRunChunk.objects.filter(run=run)
    assert chunks.count() == CHUNKS and not chunks.exclude(status=BillingRunChunk.Status.DONE).exists()
    # A chunk drawing on the PO waits for the previous one that does: the PO is drawn in contract order.
    assert [c.waits_for for c in chunks.order_by("position")] == [[], [0], [], [1], [3]]
    for _ in range(3):  # every chunk task delivered again after the end
        async_task("billing.tasks.bill_run_chunks_task", run.pk)
    assert bill_run_chunks_task(run.pk) == BillingRun.Status.DONE  # and once more here
    assert run_billing_task(run.pk) == run.summary

    # Same invoices, same PO exceptions on the same contracts, as on one worker.
    outcome = _outcome(fanned)
    assert outcome == _outcome(single)
    exceeded = [suffix for suffix, _, _, codes in outcome if "PO_EXCEEDED" in codes]
    assert exceeded == ["P6", "P9"]  # 400 + 400 drawn, the third and fourth exceed the 1,000.00
    assert (run.contracts_done, run.contracts_total) == (CONTRACTS, CONTRACTS)
    assert run.summary["invoices"] == reference.summary["invoices"] == CONTRACTS
    assert run.summary["exceptions_by_code"] == reference.summary["exceptions_by_code"]
    assert run.summary["totals_by_currency"] == reference.summary["totals_by_currency"]
    assert Invoice.objects.filter(billing_run=run).aggregate(net=Sum("subtotal"))["net"] == Decimal("4000.00")
    c.stop()  # let the duplicates drain before counting
    _assert_billed_once()
    assert Invoice.objects.filter(billing_run=run).count() == CONTRACTS


def test_an_interrupted_fanned_out_run_stops_its_workers_and_resume_bills_the_rest_once(cluster, settings):
    analyst = UserFactory(username="ana", groups=["finance_analyst"])
    codes = _twin("INT")
    run = billing_run_start(period_start=START, period_end=END, run_date=RUN_DATE, contract_codes=codes, user=analyst)
    c = cluster(pause=3)

    def progressed() -> bool:
        run.refresh_from_db()
        return run.contracts_done >= 2

    wait_for(progressed, timeout=120, what=lambda: f"a first chunk ({run.status})\n{c.log()}")
    # The sweep, six minutes on, finds the run silent and interrupts it while chunks are in flight.
    def interrupted() -> bool:
        with time_machine.travel(timezone.now() + datetime.timedelta(minutes=6)):
            billing_runs_interrupt_stale(run_ids=[run.pk])  # skips the run while a heartbeat is being written
        run.refresh_from_db()
        return run.status != BillingRun.Status.RUNNING

    wait_for(interrupted, timeout=30, interval=0.05, what=lambda: f"the sweep to interrupt the run ({run.status})")
    assert run.status == BillingRun.Status.INTERRUPTED, "the run ended before the sweep came"
    # Workers in the middle of a chunk commit it (it stays billed, once) and stop; none claims another.
    wait_for(lambda: not _chunk_in_flight(run), timeout=60, what=lambda: f"the workers to stop\n{c.log()}")
    c.stop()
    run.refresh_from_db()
    assert run.status == BillingRun.Status.INTERRUPTED
    done = BillingRunChunk.objects.filter(run=run, status=BillingRunChunk.Status.DONE)
    assert 1 <= done.count() < CHUNKS
    billed = sum(len(ids) for ids in done.values_list("contract_ids", flat=True))
    assert Invoice.objects.filter(billing_run=run).count() == billed

    resuming = billing_run_resume(billing_run=run, user=analyst)
    settings.BILLING_RUN_CHUNK_SIZE = 2
    run_billing_task(resuming.pk)  # in this process, no cluster left: it fans out and bills every chunk itself
    assert BillingRunChunk.objects.filter(run=resuming, status=BillingRunChunk.Status.DONE).count() > 1
    resuming.refresh_from_db()
    assert resuming.status == BillingRun.Status.DONE, resuming.error
    assert resuming.summary["invoices"] == CONTRACTS - billed
    _assert_billed_once()
    assert Invoice.objects.exclude(status=Invoice.Status.CANCELLED).count() == CONTRACTS
    assert Invoice.objects.aggregate(total=Sum("subtotal"))["total"] == Decimal("4000.00")


def _chunk_in_flight(run: BillingRun) -> bool:
    """A chunk still being billed (its row locked by a worker): the workers have not stopped yet."""
    with transaction.atomic():
        pending = BillingRunChunk.objects.filter(run=run, status=BillingRunChunk.Status.PENDING)
        free = list(pending.select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True))
        return len(free) != pending.count()
