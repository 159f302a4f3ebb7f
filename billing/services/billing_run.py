"""Billing runs, orchestrated: start checks, chunks, locks, progress, interruption, the run's summary.

A run is a `BillingRun` row (its period, issue date and scope are carried there, once): it is
opened through `billing_run_open` (the checks every starter shares: the finance page, the API,
the scheduled monthly run, the command) and executed by `run_billing`. Per chunk of contracts it
locks them, reads (`billing.services.run_loading`), prices (`billing_engine`), and writes
(`billing.services.run_persistence`).

Never billing twice rests on three things the database guarantees:
1. contracts are locked (`SELECT … FOR UPDATE`, id order) before their items are
   read, so a second run over the same contracts waits, then sees the links;
2. each item holds one nullable `invoice_line` and is linked by a
   compare-and-set UPDATE (`… WHERE invoice_line_id IS NULL`) whose row count
   must match, else the chunk rolls back;
3. a retainer fee is unique per (contract, period) among live invoices.

Work is committed per chunk of contracts, so a long run shows progress and a
failure never leaves a contract half-billed. After each chunk the run beats
(`heartbeat_at`, its own statement); a run silent for longer than
`BILLING_RUN_STALE_AFTER_SECONDS` lost its worker: the sweep moves it to
`interrupted`, and resuming it queues a new run over what is left (ADR 0037).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from billing.hooks import score_invoices
from billing.models import BillingRun, BillingRunChunk, Contract, Invoice, TimeEntry
from billing.services.billing_engine import InvoiceDraft, price_contract
from billing.services.billing_frequency import billing_period, split_not_due
from billing.services.consolidation import chunks_of, consolidate, contract_units
from billing.services.pricing import FxResolver, RateResolver
from billing.services.purchase_orders import apply_po_rules, lock_purchase_orders
from billing.services.run_loading import candidate_contract_ids, load_contexts
from billing.services.run_persistence import link_items, write_drafts
from billing.services.vat_checks import attach_vat_checks
from billing.tax_engine import get_tax_engine
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import ZERO
from kernel.roles import FINANCE_ROLES, has_any_role

logger = logging.getLogger(__name__)

CHUNK_SIZE = 250


def run_billing(
    billing_run: BillingRun, *, chunk_size: int = CHUNK_SIZE, bill_now: bool | None = None, fan_out: bool = False
) -> BillingRun:
    """Execute a queued run: bill every contract in its scope with work due in its period; returns it ended.

    Everything comes from the row: period, issue date (`run_date`), scope (`contract_codes`, empty:
    every contract) and who started it. `bill_now`: ignore the contracts' billing frequency (§13);
    by default a run over named contracts is a "bill now" run and a run over all contracts is not.

    `fan_out` (the django-q2 task): when `_fan_out_enabled`, the chunks become `BillingRunChunk`
    rows that any worker claims (`bill_run_chunks`, ADR 0115); this worker bills too, and the one
    that commits the last chunk ends the run. The run returned may then still be running.
    """
    period_start, period_end = billing_run.period_start, billing_run.period_end
    contracts = list(billing_run.contract_codes) or None
    user = billing_run.started_by
    if bill_now is None:
        bill_now = contracts is not None
    if not _take(billing_run):
        logger.warning("Billing run %s was already taken by another worker", billing_run.pk)
        billing_run.refresh_from_db()
        return billing_run

    summary = _Summary()
    fanned_out = False
    try:
        # Inside the try: an unknown contract code fails the run visibly instead of leaving it running.
        candidate_ids = candidate_contract_ids(period_start, period_end, contracts, bill_now=bill_now)
        candidate_ids, not_due = split_not_due(candidate_ids, period_end, bill_now=bill_now)
        summary.not_due = [n.as_dict() for n in not_due]
        billing_run.contracts_total = len(candidate_ids)
        _beat(billing_run, contracts_total=billing_run.contracts_total)
        # A consolidating client's contracts stay in one chunk: its invoice is never split (§13).
        chunks = chunks_of(contract_units(candidate_ids), chunk_size)
        if fan_out and _fan_out_enabled(len(chunks)):
            _plan_chunks(billing_run, chunks, summary.not_due)
            fanned_out = True
        elif _parallel_workers(len(chunks)) > 1:
            _bill_chunks_in_parallel(chunks, billing_run, summary, user=user, workers=_parallel_workers(len(chunks)))
        else:
            for chunk in chunks:
                with _gc_paused(), transaction.atomic():
                    _bill_chunk(chunk, billing_run, summary, user=user)
                billing_run.contracts_done += len(chunk)
                _beat(billing_run, contracts_done=billing_run.contracts_done, summary=summary.as_dict())
    except RunInterrupted:
        # Declared dead while it was working (a chunk longer than the threshold, a lock wait): what it
        # committed stays billed, once; it stops here and leaves the rest to the resuming run.
        logger.warning("Billing run %s was interrupted while its worker was alive; stopping", billing_run.pk)
        return _end_run(billing_run, "", summary)
    except Exception as exc:
        logger.exception("Billing run %s failed", billing_run.pk)
        _end_run(billing_run, "fail", summary, error=str(exc))
        raise
    if fanned_out:
        return bill_run_chunks(billing_run.pk)
    return _end_run(billing_run, "finish", summary)


def _take(billing_run: BillingRun) -> bool:
    """Queued → running, compare-and-set: of two workers handed the same run task, one runs it."""
    billing_run.start()  # the transition's own check (queued only)
    billing_run.started_at = billing_run.heartbeat_at = timezone.now()
    return bool(
        BillingRun.objects.filter(pk=billing_run.pk, status=BillingRun.Status.QUEUED).update(
            status=billing_run.status,
            started_at=billing_run.started_at,
            heartbeat_at=billing_run.heartbeat_at,
            updated_at=billing_run.started_at,
        )
    )


class RunInterrupted(Exception):
    """The run was moved to `interrupted` (its heartbeat went stale) while this worker still ran it."""


def _beat(billing_run: BillingRun, **progress: Any) -> None:
    """Heartbeat and progress, in its own statement (autocommit in a worker), never inside a chunk.

    Compare-and-set on `running`: when the sweep declared the run interrupted, nothing is
    written and the worker stops (`RunInterrupted`), so a run is never worked on by a worker
    the page says is dead. The sweep locks the row (`skip_locked`), so a beat in progress
    keeps its run alive.
    """
    updated = BillingRun.objects.filter(pk=billing_run.pk, status=BillingRun.Status.RUNNING).update(
        heartbeat_at=timezone.now(), **progress
    )
    if not updated:
        raise RunInterrupted(billing_run.pk)


def _end_run(billing_run: BillingRun, transition_name: str, summary: _Summary, *, error: str = "") -> BillingRun:
    """Finish or fail the run under its row lock; a run interrupted meanwhile keeps that state.

    Its summary (what this worker billed) is recorded either way.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = BillingRun.objects.select_for_update().get(pk=billing_run.pk)
        locked.summary = summary.as_dict()
        locked.contracts_total = billing_run.contracts_total
        locked.contracts_done = billing_run.contracts_done
        if transition_name and locked.status == BillingRun.Status.RUNNING:
            getattr(locked, transition_name)()
            locked.finished_at = locked.heartbeat_at = now
            locked.error = error
        locked.save()
    return locked


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused():
    """No automatic garbage collection while a chunk is billed; it resumes after.

    A chunk builds hundreds of thousands of small objects (items, lines, audit rows)
    that all live until it is written: the collector would traverse them again and
    again for nothing (a tenth of a large run). Collection resumes after the last
    chunk being billed (chunks billed side by side share the pause).
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


# --- chunks side by side: Python prices one while PostgreSQL writes the other -----------------------


def _parallel_workers(chunks: int) -> int:
    """How many chunks are billed at once (`BILLING_RUN_PARALLEL_CHUNKS`, default 2), on PostgreSQL only.

    Each chunk is its own transaction on its own connection, so a run inside an outer
    transaction (a test, a credit note's rebilling) cannot see its own uncommitted rows
    from another connection: it bills its chunks one after another.
    """
    from django.conf import settings

    if chunks < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return 1
    return max(1, min(chunks, int(getattr(settings, "BILLING_RUN_PARALLEL_CHUNKS", 2))))


class _ChunkStopped(Exception):
    """Another chunk of the run failed or the run was interrupted: this one rolls back."""


def _bill_chunks_in_parallel(
    chunks: list[list[int]], billing_run: BillingRun, summary: _Summary, *, user: Any, workers: int
) -> None:
    """Bill chunks on `workers` threads, each chunk in its own transaction on the thread's connection.

    The same guarantees as one after another: the chunks' contracts are disjoint and each
    chunk locks its own (id order) before reading; a chunk drawing on purchase orders waits
    until every earlier chunk is committed, so POs are drawn in the same order as in a
    sequential run (§13); progress is beaten after each commit, under one lock, with the
    summary of the chunks committed so far in chunk order. The first failure (or an
    interruption) stops the others: what is committed stays, the rest rolls back.
    """
    lock = threading.Lock()
    done = [threading.Event() for _ in chunks]
    parts: dict[int, _Summary] = {}
    state = {"next": 0, "stop": False}
    errors: list[BaseException] = []

    def committed_summary() -> _Summary:
        merged = _Summary()
        merged.not_due = summary.not_due
        for index in sorted(parts):
            merged.merge(parts[index])
        return merged

    def earlier_committed(index: int) -> None:
        for event in done[:index]:
            event.wait()
        if state["stop"]:
            raise _ChunkStopped

    def work() -> None:
        try:
            while True:
                with lock:
                    if state["stop"] or state["next"] >= len(chunks):
                        return
                    index = state["next"]
                    state["next"] += 1
                part = _Summary()
                try:
                    with _gc_paused(), transaction.atomic():
                        _bill_chunk(
                            chunks[index], billing_run, part, user=user, before_po=partial(earlier_committed, index)
                        )
                    with lock:
                        parts[index] = part
                        billing_run.contracts_done += len(chunks[index])
                        _beat(
                            billing_run,
                            contracts_done=billing_run.contracts_done,
                            summary=committed_summary().as_dict(),
                        )
                except BaseException:
                    state["stop"] = True  # before the chunk counts as done: no later chunk goes on to commit
                    raise
                finally:
                    done[index].set()
        except _ChunkStopped:
            pass
        except BaseException as exc:  # re-raised by the run's own thread below
            with lock:
                errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=work, name=f"billing-run-{billing_run.pk}-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = committed_summary()
    summary.__dict__.update(merged.__dict__)
    if errors:
        interrupted = [e for e in errors if isinstance(e, RunInterrupted)]
        raise interrupted[0] if interrupted else errors[0]


# --- chunks across django-q2 workers: claimed rows, the last one ends the run (ADR 0115) -------------


def _fan_out_enabled(chunks: int) -> bool:
    """Whether a run's chunks go to django-q2 workers (`BILLING_RUN_FAN_OUT`, default on).

    Not for one chunk, not outside PostgreSQL (`SKIP LOCKED`), not inside an outer transaction
    (the workers could not see the chunk rows), not with a synchronous django-q2 (`sync`: tests).
    """
    from django.conf import settings

    if chunks < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if getattr(settings, "Q_CLUSTER", {}).get("sync"):
        return False
    return bool(getattr(settings, "BILLING_RUN_FAN_OUT", True))


def _plan_chunks(billing_run: BillingRun, chunks: list[list[int]], not_due: list[dict]) -> None:
    """One `BillingRunChunk` row per chunk, then one django-q2 task per chunk but the first (this worker's).

    A chunk whose contracts draw on a purchase order waits for the previous chunk drawing on the same
    PO (`waits_for`): POs are drawn in chunk order, as on one worker (§13). The rows and the progress
    are committed before any task is handed out.
    """
    everyone = [contract_id for chunk in chunks for contract_id in chunk]
    po_of = dict(
        Contract.objects.filter(id__in=everyone, purchase_order__isnull=False).values_list("id", "purchase_order_id")
    )
    last_chunk_of_po: dict[int, int] = {}
    rows = []
    for position, ids in enumerate(chunks):
        pos = {po_of[contract_id] for contract_id in ids if contract_id in po_of}
        waits_for = sorted({last_chunk_of_po[po] for po in pos if po in last_chunk_of_po})
        last_chunk_of_po.update(dict.fromkeys(pos, position))
        rows.append(BillingRunChunk(run=billing_run, position=position, contract_ids=list(ids), waits_for=waits_for))
    with transaction.atomic():
        BillingRunChunk.objects.bulk_create(rows)
        _beat(billing_run, summary={"not_due": not_due})
        for position in range(1, len(chunks)):
            transaction.on_commit(
                partial(
                    async_task,
                    "billing.tasks.bill_run_chunks_task",
                    billing_run.pk,
                    task_name=f"billing-run-{billing_run.pk}-chunk-{position}",
                    group="billing_runs",
                )
            )
    logger.info("Billing run %s fanned out in %s chunks", billing_run.pk, len(chunks))


def bill_run_chunks(run_id: int) -> BillingRun:
    """Bill the run's chunks this worker can claim, one transaction each, until none is left; returns the run.

    A chunk is claimed under its row lock inside the transaction that bills it and marks it done:
    a worker killed mid-chunk rolls back claim and billing together (the chunk is pending again),
    and a task delivered twice finds the chunk done or locked and bills nothing. After each commit
    the run beats (compare-and-set on `running`: an interrupted run stops its workers). The worker
    that finds every chunk done ends the run, under the run's row lock, once.
    """
    run = BillingRun.objects.select_related("started_by").get(pk=run_id)
    user = run.started_by
    while True:
        try:
            with _gc_paused(), transaction.atomic():
                chunk = _claim_chunk(run)
                if chunk is None:
                    break
                part = _Summary()
                _bill_chunk(chunk.contract_ids, run, part, user=user)
                chunk.status = BillingRunChunk.Status.DONE
                chunk.summary = part.as_dict()
                chunk.done_at = timezone.now()
                chunk.save(update_fields=["status", "summary", "done_at"])
            _beat_chunk_done(run, len(chunk.contract_ids))
        except RunInterrupted:
            logger.warning("Billing run %s was interrupted while a worker billed its chunks; stopping", run.pk)
            return _end_fanned_out(run, "")
        except Exception as exc:
            logger.exception("Billing run %s failed in a chunk", run.pk)
            _end_fanned_out(run, "fail", error=str(exc))
            raise
    return _end_fanned_out(run, "finish")


def _beat_chunk_done(run: BillingRun, contracts: int) -> None:
    """Heartbeat, progress and the summary of the chunks done so far, after a chunk's commit.

    One conditional UPDATE, no row lock taken first: another worker's chunk in flight holds a lock
    on the run row (its invoices reference it), and waiting for it would line the workers up. Two
    beats crossing may leave the summary one chunk behind until the next beat; the run's end
    writes it exactly. A run no longer running stops the worker (`RunInterrupted`), as `_beat` does.
    """
    summary = _chunks_summary(run).as_dict()
    _beat(run, contracts_done=F("contracts_done") + contracts, summary=summary)


def _chunks_summary(run: BillingRun) -> _Summary:
    """The run's summary: the chunks done, in chunk order, and the contracts found not due at the start."""
    summary = _Summary()
    summary.not_due = (run.summary or {}).get("not_due", [])
    done = BillingRunChunk.objects.filter(run=run, status=BillingRunChunk.Status.DONE).order_by("position")
    for part in done.values_list("summary", flat=True):
        summary.merge(_Summary.from_dict(part))
    return summary


def _claim_chunk(run: BillingRun) -> Any:
    """The first pending chunk nobody holds whose PO predecessors are done, locked; None when there is none.

    Nothing is claimed for a run that is no longer running (interrupted, failed).
    """
    if not BillingRun.objects.filter(pk=run.pk, status=BillingRun.Status.RUNNING).exists():
        return None
    chunks = list(BillingRunChunk.objects.filter(run=run).values_list("position", "status", "waits_for"))
    done = {position for position, status, _ in chunks if status == BillingRunChunk.Status.DONE}
    for position, status, waits_for in sorted(chunks):
        if status == BillingRunChunk.Status.DONE or not done.issuperset(waits_for):
            continue
        # The chunk row only (`of`, no ordering through the run): locking the run row here would make
        # every other worker's heartbeat wait for this chunk, and the chunks would run one at a time.
        claimed = (
            BillingRunChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(run=run, position=position, status=BillingRunChunk.Status.PENDING)
            .order_by()
            .first()
        )
        if claimed is not None:
            return claimed
    return None


def _end_fanned_out(run: BillingRun, transition_name: str, *, error: str = "") -> BillingRun:
    """Record the summary of the chunks done (in chunk order); `finish` only once every chunk is done.

    Under the run's row lock, so the two workers committing the last chunks end the run once.
    """
    with transaction.atomic():
        locked = BillingRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        if transition_name:
            if locked.status != BillingRun.Status.RUNNING:
                return locked
            pending = BillingRunChunk.objects.filter(run=locked).exclude(status=BillingRunChunk.Status.DONE)
            if transition_name == "finish" and pending.exists():
                return locked  # others still at work: the last of them ends the run
        locked.summary = _chunks_summary(locked).as_dict()
        if transition_name:
            getattr(locked, transition_name)()
            locked.finished_at = locked.heartbeat_at = timezone.now()
            locked.error = error
        locked.save()
    return locked


class _Summary:
    def __init__(self) -> None:
        self.invoices = 0
        self.by_status: dict[str, int] = defaultdict(int)
        self.totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.by_entity_currency: dict[str, int] = defaultdict(int)
        self.exceptions: dict[str, int] = defaultdict(int)
        self.items = {"time_entries": 0, "expenses": 0, "milestones": 0}
        self.skipped: list[str] = []
        self.not_due: list[dict] = []  # contracts not due in this run, with why (billing frequency, §13)

    def add(self, invoice: Invoice, draft: InvoiceDraft) -> None:
        self.invoices += 1
        self.by_status[invoice.status] += 1
        self.totals[invoice.currency] += invoice.total
        self.by_entity_currency[f"{draft.contract.entity.code} {invoice.currency}"] += 1
        for e in draft.exceptions:
            self.exceptions[e.code] += 1
        for line in draft.lines:
            self.items["time_entries"] += len(line.time_entry_ids)
            self.items["expenses"] += len(line.expense_ids)
            self.items["milestones"] += len(line.milestone_ids)

    @classmethod
    def from_dict(cls, data: dict) -> _Summary:
        """The figures `as_dict` wrote (a chunk's summary, kept on its row)."""
        summary = cls()
        summary.invoices = data.get("invoices", 0)
        summary.by_status.update(data.get("by_status", {}))
        summary.totals.update({k: Decimal(v) for k, v in data.get("totals_by_currency", {}).items()})
        summary.by_entity_currency.update(data.get("invoices_by_entity_currency", {}))
        summary.exceptions.update(data.get("exceptions_by_code", {}))
        summary.items.update(data.get("items_billed", {}))
        summary.skipped = list(data.get("skipped", []))
        summary.not_due = list(data.get("not_due", []))
        return summary

    def merge(self, other: _Summary) -> None:
        """Add another chunk's figures (chunks billed side by side)."""
        self.invoices += other.invoices
        for mine, theirs in (
            (self.by_status, other.by_status),
            (self.totals, other.totals),
            (self.by_entity_currency, other.by_entity_currency),
            (self.exceptions, other.exceptions),
            (self.items, other.items),
        ):
            for key, value in theirs.items():
                mine[key] += value
        self.skipped.extend(other.skipped)

    def as_dict(self) -> dict:
        return {
            "invoices": self.invoices,
            "by_status": dict(self.by_status),
            "totals_by_currency": {k: str(v) for k, v in sorted(self.totals.items())},
            "invoices_by_entity_currency": dict(sorted(self.by_entity_currency.items())),
            "exceptions_by_code": dict(sorted(self.exceptions.items())),
            "items_billed": self.items,
            "skipped": self.skipped,
            "not_due": self.not_due,
        }


def _bill_chunk(
    contract_ids: Sequence[int],
    run: BillingRun,
    summary: _Summary,
    *,
    user: Any,
    before_po: Callable[[], None] | None = None,
) -> None:
    # One chunk at a time reads and prices (pure Python, under the GIL): chunks billed side by side
    # then take turns, one pricing while the other's writes run in PostgreSQL, instead of both
    # pricing at once and then both waiting on the database.
    with _PRICING_TURN:
        drafts, extra_links, project_codes = _price_chunk(contract_ids, run, summary)
    # POs are locked after the contracts (same order everywhere): drafts of one PO draw in turn (§13).
    if before_po is not None and any(d.purchase_order is not None for d in drafts):
        before_po()
    lock_purchase_orders(d.purchase_order.pk for d in drafts if d.purchase_order is not None)
    apply_po_rules(drafts, project_codes=project_codes)
    invoices = write_drafts(drafts, run=run, user=user)
    _score_drafts(invoices, drafts)
    actor = user if getattr(user, "pk", None) else None
    _route_for_approval([i for i in invoices if i.status == Invoice.Status.PENDING_APPROVAL], actor)
    for invoice, draft in zip(invoices, drafts, strict=True):
        summary.add(invoice, draft)
    if extra_links:
        link_items(TimeEntry, [(i, line) for line, ids in extra_links.items() for i in ids], user, run)


def _price_chunk(
    contract_ids: Sequence[int], run: BillingRun, summary: _Summary
) -> tuple[list[InvoiceDraft], dict[int, list[int]], dict[int, str]]:
    """Lock the chunk's contracts, read their work and price it: the drafts (consolidated), the time
    entries a retainer fee already billed covers (by fee line) and the project codes."""
    # Lock first, read after: a concurrent run over these contracts waits here,
    # then reads the items this run linked and finds nothing left to bill.
    frequencies = (
        Contract.objects.select_for_update()
        .filter(id__in=contract_ids)
        .order_by("id")
        .values_list("id", "billing_frequency")
    )
    # Contracts are priced over their billing period (§13): the run's period, or a quarterly contract's quarter.
    by_period: dict[tuple[date, date], list[int]] = defaultdict(list)
    for contract_id, frequency in frequencies:
        by_period[billing_period(frequency, run.period_start, run.period_end)].append(contract_id)
    taxes = get_tax_engine()

    drafts: list[InvoiceDraft] = []
    extra_links: dict[int, list[int]] = {}
    project_codes: dict[int, str] = {}
    for (start, end), ids in sorted(by_period.items()):
        contexts, open_keys = load_contexts(ids, start, end)
        project_codes.update({pid: p.code for ctx in contexts for pid, p in ctx.projects.items()})
        rates = RateResolver(ctx.contract for ctx in contexts)
        fx_pairs = {(e.currency, ctx.contract.currency) for ctx in contexts for e in ctx.expense_items}
        fx = FxResolver(fx_pairs, up_to=end)
        attach_vat_checks(ctx.contract for ctx in contexts)
        for ctx in contexts:
            priced = price_contract(
                ctx,
                period_start=start,
                period_end=end,
                run_date=run.run_date,
                rates=rates,
                fx=fx,
                taxes=taxes,
            )
            for draft in priced:
                if (ctx.contract.id, draft.project_id) in open_keys:
                    summary.skipped.append(
                        f"{ctx.contract.code}: an open draft invoice exists; revalidate or cancel it first."
                    )
                    continue
                drafts.append(draft)
            for line_id, entry_ids in ctx.covered_by_existing_fee.items():
                extra_links.setdefault(line_id, []).extend(entry_ids)
    drafts.sort(key=lambda d: d.contract.id)  # the order contracts were locked and billed in before
    drafts = consolidate(drafts, taxes=taxes, project_codes=project_codes)
    return drafts, extra_links, project_codes


_PRICING_TURN = threading.Lock()


def _score_drafts(invoices: list[Invoice], drafts: Sequence[InvoiceDraft]) -> None:
    """Anomaly and dispute-risk scores (docs/rules/assistive.md) before routing: ANOMALY adds a controller step."""
    score_invoices(invoices, drafts=drafts)


def _route_for_approval(invoices: list[Invoice], actor: Any) -> None:
    """Open the approval requests of the invoices now awaiting approval (docs/rules/approvals.md), in bulk."""
    if invoices:
        from approvals.services import approval_requests_open_bulk

        approval_requests_open_bulk(subjects=invoices, user=actor)


# --- starting a run (finance page, API) ------------------------------------------------------------

RUN_STARTER_ROLES = FINANCE_ROLES


def billing_run_check(
    *, period_start: date, period_end: date, run_date: date, contract_codes: Iterable[str] = (), user: Any
) -> list[str]:
    """The start checks every starter goes through (page, API, scheduled run, command); returns the codes.

    Finance analysts and controllers only (`user=None` is the system: the schedule, the command);
    the period in order; the issue date not before the period start; every named contract known.
    All findings at once, per field, in one `ApplicationError`.
    """
    if user is not None and not (has_any_role(user, RUN_STARTER_ROLES) or getattr(user, "is_superuser", False)):
        raise PermissionDeniedError("Only finance analysts and controllers start billing runs.")
    codes = list(dict.fromkeys(code.strip() for code in contract_codes if code and code.strip()))
    field_errors: dict[str, list[str]] = {}
    if period_end < period_start:
        field_errors["period_end"] = ["The period ends before it starts."]
    if run_date < period_start:
        field_errors["run_date"] = ["The run date (issue date) cannot be before the period start."]
    if codes:
        known = set(Contract.objects.filter(code__in=codes).values_list("code", flat=True))
        unknown = [code for code in codes if code not in known]
        if unknown:
            field_errors["contract_codes"] = [f"Unknown contract(s): {', '.join(unknown)}."]
    if field_errors:
        raise ApplicationError("The billing run cannot start; see the fields.", field_errors=field_errors)
    return codes


@transaction.atomic
def billing_run_open(
    *,
    period_start: date,
    period_end: date,
    run_date: date,
    contract_codes: Iterable[str] = (),
    user: Any,
    noticed: str = "start of a new run",
) -> BillingRun:
    """A queued run row, after the start checks (`billing_run_check`) and the sweep of dead runs."""
    codes = billing_run_check(
        period_start=period_start, period_end=period_end, run_date=run_date, contract_codes=contract_codes, user=user
    )
    billing_runs_interrupt_stale(user=user, noticed=noticed)
    return BillingRun.objects.create(
        period_start=period_start,
        period_end=period_end,
        run_date=run_date,
        contract_codes=codes,
        started_by=user if getattr(user, "pk", None) else None,
    )


@transaction.atomic
def billing_run_start(
    *,
    period_start: date,
    period_end: date,
    run_date: date,
    contract_codes: Iterable[str] = (),
    user: Any,
) -> BillingRun:
    """Queue a billing run and hand it to a worker once the row is committed (never before).

    Used by the finance page and the API alike; the worker runs `billing.tasks.run_billing_task`.
    Unknown contract codes or dates out of order are refused here (`billing_run_check`), so nothing
    is queued that could only fail.
    """
    billing_run = billing_run_open(
        period_start=period_start, period_end=period_end, run_date=run_date, contract_codes=contract_codes, user=user
    )
    _enqueue(billing_run)
    logger.info("Billing run %s queued for %s..%s by %s", billing_run.pk, period_start, period_end, user)
    return billing_run


def bill_period(
    *,
    period_start: date,
    period_end: date,
    run_date: date,
    user: Any = None,
    contracts: Iterable[Contract | str | int] | None = None,
    chunk_size: int = CHUNK_SIZE,
    bill_now: bool | None = None,
) -> BillingRun:
    """Open a run (the same checks as the page) and execute it here, now: the command, the scheduled run, tests.

    `contracts`: instances, ids or codes (none: every contract); `user=None` is the system.
    """
    codes: list[str] | None = None
    if contracts is not None:
        wanted = list(contracts)
        ids = [c.pk if isinstance(c, Contract) else c for c in wanted if not isinstance(c, str)]
        by_id = dict(Contract.objects.filter(pk__in=ids).values_list("pk", "code")) if ids else {}
        codes = [c if isinstance(c, str) else by_id.get(c.pk if isinstance(c, Contract) else c, str(c)) for c in wanted]
    billing_run = billing_run_open(
        period_start=period_start,
        period_end=period_end,
        run_date=run_date,
        contract_codes=codes or (),
        user=user,
        noticed="start of a run",
    )
    if codes == []:  # an empty scope named on purpose (a scenario without contracts): nothing to bill
        billing_run.start()
        billing_run.started_at = billing_run.heartbeat_at = timezone.now()
        billing_run.save()
        return _end_run(billing_run, "finish", _Summary())
    return run_billing(billing_run, chunk_size=chunk_size, bill_now=bill_now)


def _enqueue(billing_run: BillingRun) -> None:
    transaction.on_commit(
        partial(
            async_task,
            "billing.tasks.run_billing_task",
            billing_run.pk,
            task_name=f"billing-run-{billing_run.pk}",
            group="billing_runs",
        )
    )


# --- runs whose worker died: heartbeat, interruption, resume (ADR 0037) -----------------------------


def stale_after() -> timedelta:
    """How long a running run may stay silent before it counts as dead (`BILLING_RUN_STALE_AFTER_SECONDS`)."""
    from django.conf import settings

    return timedelta(seconds=int(getattr(settings, "BILLING_RUN_STALE_AFTER_SECONDS", 300)))


def _stale(cutoff: datetime) -> Q:
    return Q(status=BillingRun.Status.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )


def billing_runs_interrupt_stale(
    *, user: Any = None, run_ids: Iterable[int] | None = None, noticed: str = "stale-run sweep"
) -> list[BillingRun]:
    """Move every running run silent for longer than `stale_after()` to `interrupted`; returns them.

    Called every minute by the django-q2 schedule, and lazily when a run page is viewed or a new
    run is started (`noticed` says which, `user` who was there). Each run is its own transaction,
    taken under its row lock with `skip_locked`: a run whose worker is writing its heartbeat at
    this moment is alive and skipped. Nothing is billed or unbilled here: what the dead worker
    committed stays billed; its uncommitted chunk was rolled back by the database.
    """
    now = timezone.now()
    cutoff = now - stale_after()
    candidates = BillingRun.objects.filter(_stale(cutoff))
    if run_ids is not None:
        candidates = candidates.filter(pk__in=list(run_ids))
    actor = user if getattr(user, "pk", None) else None
    interrupted = []
    for pk in candidates.values_list("pk", flat=True):
        with transaction.atomic():
            # FOR NO KEY UPDATE: skips a run whose heartbeat is being written, not one whose chunk is
            # committing invoices (their foreign-key check takes a key-share lock on the run).
            stale = BillingRun.objects.filter(_stale(cutoff), pk=pk)
            run = stale.select_for_update(skip_locked=True, no_key=True).first()
            if run is None:  # it beat in the meantime, or another sweep took it
                continue
            last = run.heartbeat_at or run.started_at
            reason = (
                f"No heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC (more than {int(stale_after().total_seconds())} s; "
                f"noticed by the {noticed}): its worker stopped. {run.contracts_done} of {run.contracts_total} "
                "contracts were billed and are kept; resume to bill the rest."
            )
            run.interrupt(by=actor, description=reason)
            run.finished_at = now
            run.error = reason
            run.save()
            logger.warning("Billing run %s interrupted: %s", run.pk, reason)
            interrupted.append(run)
    return interrupted


@transaction.atomic
def billing_run_resume(*, billing_run: BillingRun, user: Any, note: str = "") -> BillingRun:
    """Queue a new run over what an interrupted run left; the interrupted run ends as `resumed`.

    The new run has the same period, issue date and scope and bills only what is still unbilled:
    items billed by the dead run are linked and skipped, its uncommitted chunk was rolled back,
    a retainer fee already on an invoice is not billed again (ADR 0003). Resumed once (a row lock
    here, a unique constraint on `resumes` in the database).
    """
    if not (has_any_role(user, RUN_STARTER_ROLES) or getattr(user, "is_superuser", False)):
        raise PermissionDeniedError("Only finance analysts and controllers resume billing runs.")
    run = BillingRun.objects.select_for_update().get(pk=billing_run.pk)
    if run.status != BillingRun.Status.INTERRUPTED:
        raise ConflictError(
            f"Billing run {run.pk} is {run.get_status_display().lower()}; only an interrupted run can be resumed.",
            code="invalid_transition",
        )
    resuming = BillingRun.objects.create(
        period_start=run.period_start,
        period_end=run.period_end,
        run_date=run.run_date,
        contract_codes=run.contract_codes,
        started_by=user if getattr(user, "pk", None) else None,
        resumes=run,
    )
    why = f"Resumed by run {resuming.pk}, which bills what this run left"
    run.resume(by=user if getattr(user, "pk", None) else None, description=f"{why}: {note}" if note else why)
    run.save()
    _enqueue(resuming)
    logger.info("Billing run %s resumes interrupted run %s (by %s)", resuming.pk, run.pk, user)
    return resuming
