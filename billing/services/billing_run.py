"""Billing runs: read and lock, price with the engine, write invoices and link items.

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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from operator import attrgetter
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django_fsm_log.models import StateLog
from django_q.tasks import async_task
from simple_history.utils import bulk_create_with_history

from billing.models import (
    BillingRun,
    ChangeOrder,
    Contract,
    Expense,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceTax,
    Milestone,
    Project,
    TimeEntry,
)
from billing.services.billing_engine import (
    Code,
    ContractContext,
    ExpenseItem,
    InvoiceDraft,
    MilestoneItem,
    ProjectInfo,
    TimeItem,
    price_contract,
)
from billing.services.billing_frequency import billing_period, quarter_of, split_not_due
from billing.services.consolidation import chunks_of, consolidate, contract_units
from billing.services.pricing import FxResolver, RateResolver
from billing.services.purchase_orders import apply_po_rules, lock_purchase_orders
from billing.services.vat_checks import attach_vat_checks
from billing.tax_engine import get_tax_engine
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import ZERO
from kernel.roles import FINANCE_ANALYST, FINANCE_CONTROLLER, has_any_role

logger = logging.getLogger(__name__)

CHUNK_SIZE = 250
LINK_BATCH = 50_000
TM = Contract.BillingModel.TIME_AND_MATERIALS
FIXED_FEE = Contract.BillingModel.FIXED_FEE
RETAINER = Contract.BillingModel.RETAINER
APPROVED = "approved"
INVOICED = "invoiced"


def run_billing(
    *,
    period_start: date,
    period_end: date,
    run_date: date,
    user: Any = None,
    contracts: Iterable[Contract | str | int] | None = None,
    billing_run: BillingRun | None = None,
    chunk_size: int = CHUNK_SIZE,
    bill_now: bool | None = None,
) -> BillingRun:
    """Bill every contract with work due in the period; returns the run with its summary.

    `bill_now`: ignore the contracts' billing frequency (§13); by default a run restricted to
    named `contracts` is a "bill now" run and a run over all contracts is not.
    """
    if bill_now is None:
        bill_now = contracts is not None
    if period_end < period_start:
        raise ApplicationError("The period ends before it starts.", field_errors={"period_end": ["Before start."]})
    if run_date < period_start:
        raise ApplicationError("The run date (issue date) cannot be before the period start.")
    if billing_run is None:
        billing_run = BillingRun.objects.create(
            period_start=period_start,
            period_end=period_end,
            run_date=run_date,
            started_by=user if getattr(user, "pk", None) else None,
            contract_codes=[str(c) for c in contracts] if contracts is not None else [],
        )
    billing_run.start()
    billing_run.started_at = billing_run.heartbeat_at = timezone.now()
    billing_run.save()

    summary = _Summary()
    try:
        # Inside the try: an unknown contract code fails the run visibly instead of leaving it running.
        candidate_ids = _candidate_contract_ids(period_start, period_end, contracts, bill_now=bill_now)
        candidate_ids, not_due = split_not_due(candidate_ids, period_end, bill_now=bill_now)
        summary.not_due = [n.as_dict() for n in not_due]
        billing_run.contracts_total = len(candidate_ids)
        _beat(billing_run, contracts_total=billing_run.contracts_total)
        # A consolidating client's contracts stay in one chunk: its invoice is never split (§13).
        for chunk in chunks_of(contract_units(candidate_ids), chunk_size):
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
    return _end_run(billing_run, "finish", summary)


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


@contextmanager
def _gc_paused():
    """No automatic garbage collection while a chunk is billed; it resumes after.

    A chunk builds hundreds of thousands of small objects (items, lines, audit rows)
    that all live until it is written: the collector would traverse them again and
    again for nothing (a tenth of a large run). Collection resumes after the chunk.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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


def _eligible_time() -> Q:
    return Q(status=APPROVED, billable=True, invoice_line__isnull=True)


def _candidate_contract_ids(
    period_start: date,
    period_end: date,
    contracts: Iterable[Contract | str | int] | None,
    *,
    bill_now: bool = False,
) -> list[int]:
    scope = Contract.objects.all()
    if contracts is not None:
        wanted = list(contracts)
        ids = [c.pk if isinstance(c, Contract) else c for c in wanted if not isinstance(c, str)]
        codes = [c for c in wanted if isinstance(c, str)]
        scope = scope.filter(Q(pk__in=ids) | Q(code__in=codes))
        found = set(scope.values_list("code", flat=True))
        unknown = sorted(set(codes) - found)
        if unknown:
            raise ApplicationError(f"Unknown contract(s): {', '.join(unknown)}.")
    scope_ids = scope.values("id")
    ids: set[int] = set()
    ids.update(
        TimeEntry.objects.filter(
            _eligible_time(),
            date__lte=period_end,
            project__contract__in=scope_ids,
            project__contract__billing_model__in=[TM, RETAINER],
        )
        .values_list("project__contract_id", flat=True)
        .distinct()
    )
    ids.update(
        Expense.objects.filter(_eligible_time(), date__lte=period_end, project__contract__in=scope_ids)
        .values_list("project__contract_id", flat=True)
        .distinct()
    )
    ids.update(
        Milestone.objects.filter(
            status=Milestone.Status.APPROVED,
            invoice_line__isnull=True,
            project__contract__in=scope_ids,
            project__contract__billing_model=FIXED_FEE,
        )
        .values_list("project__contract_id", flat=True)
        .distinct()
    )
    ids.update(scope.filter(billing_model=RETAINER, status=Contract.Status.ACTIVE).values_list("id", flat=True))
    quarter_end = quarter_of(period_end)[1]
    if bill_now and quarter_end != period_end:
        # A quarterly contract billed now is billed for its quarter: items up to the quarter end count.
        quarterly = scope.filter(billing_frequency=Contract.Frequency.QUARTERLY)
        ids.update(_candidate_contract_ids(period_start, quarter_end, quarterly.values_list("id", flat=True)))
    return sorted(ids)


def load_contexts(
    contract_ids: Sequence[int], start: date, end: date, *, rebuilding: Invoice | None = None
) -> tuple[list[ContractContext], set[tuple]]:
    """Read everything the engine needs for locked contracts, in a bounded number of queries.

    `rebuilding`: the draft being revalidated, left out of "previously invoiced".
    """
    from django.conf import settings

    contracts = list(
        Contract.objects.filter(id__in=contract_ids)
        .select_related("client", "entity", "rate_card", "purchase_order", "purchase_order__client")
        .order_by("id")
    )
    ctxs = {
        c.id: ContractContext(
            contract=c, projects={}, time_items=[], expense_items=[], milestone_items=[], role_codes={}
        )
        for c in contracts
    }
    for pid, code, status, contract_id in Project.objects.filter(contract_id__in=contract_ids).values_list(
        "id", "code", "status", "contract_id"
    ):
        ctxs[contract_id].projects[pid] = ProjectInfo(pid, code, status)
    # Items are read by project (its index): a scan of a chunk's entries, not of the whole table.
    project_ids = [pid for ctx in ctxs.values() for pid in ctx.projects]
    from billing.models import Role

    role_codes = dict(Role.objects.values_list("id", "code"))
    cutoff_days = getattr(settings, "BILLING_TIMESHEET_CUTOFF_DAYS", 2)
    utc = timezone.get_fixed_timezone(0)

    time_rows = (
        TimeEntry.objects.filter(
            _eligible_time(),
            date__lte=end,
            project_id__in=project_ids,
            project__contract__billing_model__in=[TM, RETAINER],
        )
        .order_by("date", "id")
        .values_list(
            "id",
            "person_id",
            "person__role_id",
            "person__name",
            "project_id",
            "project__contract_id",
            "date",
            "hours",
            "submitted_at",
        )
    )
    limits: dict[tuple[int, int], datetime] = {}  # the cut-off of each month, computed once
    for entry_id, person_id, role_id, person_name, project_id, contract_id, day, hours, submitted_at in time_rows:
        ctx = ctxs[contract_id]
        ctx.time_items.append(TimeItem(entry_id, person_id, role_id, project_id, day, hours, person_name))
        if submitted_at is not None:
            limit = limits.get((day.year, day.month))
            if limit is None:
                next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
                limit = datetime.combine(next_month + timedelta(days=cutoff_days), datetime.min.time(), tzinfo=utc)
                limits[(day.year, day.month)] = limit
            if submitted_at >= limit:
                ctx.late_time_entry_ids.add(entry_id)
    for ctx in ctxs.values():
        ctx.role_codes = role_codes

    expense_rows = (
        Expense.objects.filter(_eligible_time(), date__lte=end, project_id__in=project_ids)
        .order_by("date", "id")
        .values_list(
            "id", "project_id", "project__contract_id", "date", "amount", "currency", "category", "description"
        )
    )
    for expense_id, project_id, contract_id, day, amount, currency, category, description in expense_rows:
        ctxs[contract_id].expense_items.append(
            ExpenseItem(expense_id, project_id, day, amount, currency, category, description)
        )

    milestone_rows = (
        Milestone.objects.filter(
            status=Milestone.Status.APPROVED,
            invoice_line__isnull=True,
            project_id__in=project_ids,
            project__contract__billing_model=FIXED_FEE,
        )
        .order_by("due_date", "id")
        .values_list("id", "project_id", "project__contract_id", "name", "amount", "completed_at", "due_date")
    )
    for milestone_id, project_id, contract_id, name, amount, completed_at, due_date in milestone_rows:
        completed_on = timezone.localdate(completed_at) if completed_at else due_date
        ctxs[contract_id].milestone_items.append(
            MilestoneItem(milestone_id, project_id, name, amount, completed_on=completed_on)
        )

    for contract_id, delta in (
        ChangeOrder.objects.filter(contract_id__in=contract_ids, status=ChangeOrder.Status.APPROVED)
        .values("contract_id")
        .annotate(total=Sum("cap_delta"))
        .values_list("contract_id", "total")
    ):
        ctxs[contract_id].approved_cap_delta = delta or ZERO
    for contract_id in (
        ChangeOrder.objects.filter(contract_id__in=contract_ids, status=ChangeOrder.Status.SUBMITTED)
        .values_list("contract_id", flat=True)
        .distinct()
    ):
        ctxs[contract_id].has_pending_change_order = True
    prior = (
        Invoice.objects.filter(contract_id__in=contract_ids, consolidated=False)
        .exclude(status=Invoice.Status.CANCELLED)
    )
    if rebuilding is not None:
        prior = prior.exclude(pk=rebuilding.pk)
    for contract_id, kind, total in (
        prior.values("contract_id", "kind").annotate(total=Sum("subtotal")).values_list("contract_id", "kind", "total")
    ):
        signed = total if kind == Invoice.Kind.INVOICE else -abs(total)
        ctxs[contract_id].prior_net_invoiced += signed
    # Consolidated invoices bill several contracts: each contract's part is the sum of its lines (§13).
    for contract_id, kind, total in consolidated_parts(contract_ids, rebuilding=rebuilding):
        signed = total if kind == Invoice.Kind.INVOICE else -abs(total)
        ctxs[contract_id].prior_net_invoiced += signed
    for contract_id, project_id in (
        TimeEntry.objects.filter(
            status=TimeEntry.Status.SUBMITTED,
            billable=True,
            date__gte=start,
            date__lte=end,
            project_id__in=project_ids,
        )
        .values_list("project__contract_id", "project_id")
        .distinct()
    ):
        ctxs[contract_id].projects_with_unapproved_time.add(project_id)

    retainer_ids = [c.id for c in contracts if c.billing_model == RETAINER]
    if retainer_ids:
        fee_lines = dict(
            InvoiceLine.objects.filter(
                Q(contract_id__in=retainer_ids) | Q(contract__isnull=True, invoice__contract_id__in=retainer_ids),
                invoice__retainer_period=start,
                invoice__kind=Invoice.Kind.INVOICE,
                kind=InvoiceLine.Kind.RETAINER,
            )
            .exclude(invoice__status__in=[Invoice.Status.CANCELLED, Invoice.Status.CREDITED])
            .annotate(billed_contract=Coalesce("contract_id", "invoice__contract_id"))
            .values_list("billed_contract", "id")
        )
        covered = dict(
            TimeEntry.objects.filter(
                status=TimeEntry.Status.INVOICED,
                billable=True,
                date__gte=start,
                date__lte=end,
                project_id__in=[pid for contract_id in retainer_ids for pid in ctxs[contract_id].projects],
            )
            .values("project__contract_id")
            .annotate(hours=Sum("hours"))
            .values_list("project__contract_id", "hours")
        )
        for contract_id in retainer_ids:
            ctx = ctxs[contract_id]
            ctx.existing_fee_line_id = fee_lines.get(contract_id)
            ctx.retainer_fee_due = ctx.existing_fee_line_id is None and ctx.contract.status == Contract.Status.ACTIVE
            ctx.retainer_hours_already_covered = min(
                covered.get(contract_id) or ZERO, ctx.contract.included_hours or ZERO
            )

    open_keys = set(
        Invoice.objects.filter(
            contract_id__in=contract_ids,
            kind=Invoice.Kind.INVOICE,
            status__in=[Invoice.Status.DRAFT, Invoice.Status.EXCEPTION],
        ).values_list("contract_id", "project_id")
    )
    # Every contract an open consolidated draft bills has an open draft (§13).
    open_keys.update(
        (contract_id, None)
        for contract_id in InvoiceLine.objects.filter(
            contract_id__in=contract_ids,
            invoice__consolidated=True,
            invoice__kind=Invoice.Kind.INVOICE,
            invoice__status__in=[Invoice.Status.DRAFT, Invoice.Status.EXCEPTION],
        )
        .values_list("contract_id", flat=True)
        .distinct()
    )
    return [ctxs[c.id] for c in contracts], open_keys


def consolidated_parts(contract_ids: Sequence[int], *, rebuilding: Invoice | None = None) -> list[tuple]:
    """(contract id, kind, Σ line amounts) of live consolidated invoices and credit notes, per contract."""
    lines = InvoiceLine.objects.filter(invoice__consolidated=True).exclude(invoice__status=Invoice.Status.CANCELLED)
    if rebuilding is not None:
        lines = lines.exclude(invoice_id=rebuilding.pk)
    return list(
        lines.annotate(billed_contract=Coalesce("contract_id", "invoice__contract_id"))
        .filter(billed_contract__in=list(contract_ids))
        .values("billed_contract", "invoice__kind")
        .annotate(total=Sum("amount"))
        .values_list("billed_contract", "invoice__kind", "total")
    )


def _bill_chunk(contract_ids: Sequence[int], run: BillingRun, summary: _Summary, *, user: Any) -> None:
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
    # POs are locked after the contracts (same order everywhere): drafts of one PO draw in turn (§13).
    lock_purchase_orders(d.purchase_order.pk for d in drafts if d.purchase_order is not None)
    apply_po_rules(drafts, project_codes=project_codes)
    write_drafts(drafts, run=run, user=user, summary=summary)
    if extra_links:
        _link_items(TimeEntry, [(i, line) for line, ids in extra_links.items() for i in ids], user, run)


def write_drafts(
    drafts: Sequence[InvoiceDraft],
    *,
    run: BillingRun | None,
    user: Any,
    summary: _Summary | None = None,
) -> list[Invoice]:
    """Persist priced drafts: invoices, lines, taxes, exceptions, item links, audit rows."""
    if not drafts:
        return []
    actor = user if getattr(user, "pk", None) else None
    reason = f"Billing run {run.pk}" if run else "Billing"
    invoices = [
        Invoice(
            kind=Invoice.Kind.INVOICE,
            entity=d.contract.entity,
            client=d.contract.client,
            contract=d.contract,
            project_id=d.project_id,
            billing_run=run,
            period_start=d.period_start,
            period_end=d.period_end,
            retainer_period=d.retainer_period,
            service_start=d.service_start,
            service_end=d.service_end,
            issue_date=d.issue_date,
            due_date=d.due_date,
            currency=d.currency,
            po_number=d.contract.po_number,
            purchase_order=d.purchase_order,
            consolidated=d.consolidated,
            subtotal=d.subtotal,
            tax_total=d.tax_total,
            total=d.total,
            status=Invoice.Status.EXCEPTION if d.is_blocked else Invoice.Status.PENDING_APPROVAL,
            prepared_by=actor,
        )
        for d in drafts
    ]
    invoices = _create_with_history(invoices, Invoice, actor=actor, reason=reason, batch_size=1000)
    write_invoice_contents(list(zip(invoices, drafts, strict=True)), actor=actor, reason=reason, run=run)
    _score_drafts(invoices, drafts)
    _log_invoice_transitions(invoices, drafts, actor, reason)
    _route_for_approval([i for i in invoices if i.status == Invoice.Status.PENDING_APPROVAL], actor)
    if summary is not None:
        for invoice, draft in zip(invoices, drafts, strict=True):
            summary.add(invoice, draft)
    return invoices


def _score_drafts(invoices: list[Invoice], drafts: Sequence[InvoiceDraft]) -> None:
    """Anomaly and dispute-risk scores (docs/rules/assistive.md) before routing: ANOMALY adds a controller step."""
    from insights.services.scoring import score_invoices

    score_invoices(invoices, drafts=drafts)


def _route_for_approval(invoices: list[Invoice], actor: Any) -> None:
    """Open the approval requests of the invoices now awaiting approval (docs/rules/approvals.md), in bulk."""
    if invoices:
        from approvals.services import approval_requests_open_bulk

        approval_requests_open_bulk(subjects=invoices, user=actor)


def write_invoice_contents(
    pairs: Sequence[tuple[Invoice, InvoiceDraft]], *, actor: Any, reason: str, run: BillingRun | None
) -> None:
    """Lines, taxes and exceptions of saved invoices, and the links of the items they bill."""
    lines: list[InvoiceLine] = []
    links: dict[type, list[tuple[int, InvoiceLine]]] = {TimeEntry: [], Expense: [], Milestone: []}
    taxes: list[InvoiceTax] = []
    exceptions: list[InvoiceException] = []
    for invoice, draft in pairs:
        for position, ld in enumerate(draft.lines, start=1):
            line = InvoiceLine(
                invoice=invoice,
                position=position,
                kind=ld.kind,
                contract_id=ld.contract_id or draft.contract.id,
                project_id=ld.project_id,
                role_id=ld.role_id,
                description=ld.description[:500],
                quantity=ld.quantity,
                unit_price=ld.unit_price,
                amount=ld.amount,
                rate_source=ld.rate_source,
                rate_source_id=ld.rate_source_id,
                rate_source_label=ld.rate_source_label[:200],
                service_start=ld.service_start,
                service_end=ld.service_end,
            )
            lines.append(line)
            links[TimeEntry].extend((i, line) for i in ld.time_entry_ids)
            links[Expense].extend((i, line) for i in ld.expense_ids)
            links[Milestone].extend((i, line) for i in ld.milestone_ids)
        taxes.extend(
            InvoiceTax(
                invoice=invoice, category=t.category, rate=t.rate, base=t.base, amount=t.amount, legal_note=t.legal_note
            )
            for t in draft.taxes
        )
        exceptions.extend(
            InvoiceException(
                invoice=invoice,
                code=e.code,
                severity=e.severity,
                message=e.message,
                fix_hint=e.fix_hint,
                fix_url=fix_url(e.code, draft),
                amount=e.amount,
            )
            for e in draft.exceptions
        )
    _create_with_history(lines, InvoiceLine, actor=actor, reason=reason, batch_size=2000)
    _create_with_history(taxes, InvoiceTax, actor=actor, reason=reason, batch_size=2000)
    InvoiceException.objects.bulk_create(exceptions, batch_size=2000)
    for model, model_links in links.items():
        _link_items(model, [(item_id, line.pk) for item_id, line in model_links], actor, run)


def _log_invoice_transitions(invoices: list[Invoice], drafts: Sequence[InvoiceDraft], actor: Any, reason: str) -> None:
    content_type = ContentType.objects.get_for_model(Invoice)
    now = timezone.now()
    actor_id = getattr(actor, "pk", None)
    rows = []
    for invoice, draft in zip(invoices, drafts, strict=True):
        codes = ", ".join(sorted(draft.blocking_codes))
        rows.append(
            (
                now,
                actor_id,
                Invoice.Status.DRAFT,
                invoice.status,
                "flag_exception" if draft.is_blocked else "submit_for_approval",
                content_type.pk,
                invoice.pk,
                f"{reason}: blocked by {codes}" if codes else f"{reason}: validated",
            )
        )
    _create_state_logs(rows)


def _link_items(model, pairs: list[tuple[int, int]], actor: Any, run: BillingRun | None) -> None:
    """Compare-and-set link of approved items to their lines; any miss aborts the chunk."""
    if not pairs:
        return
    linked = _link_postgresql(model, pairs) if connection.vendor == "postgresql" else _link_portable(model, pairs)
    if linked != len(pairs):
        raise ConflictError(
            f"{len(pairs) - linked} {model._meta.verbose_name_plural} were billed by another run at the same "
            "moment; nothing of this chunk was saved. Run again."
        )
    content_type_id = ContentType.objects.get_for_model(model).pk
    now = timezone.now()
    actor_id = getattr(actor, "pk", None)
    description = f"Billed by run {run.pk}" if run else "Billed on revalidation"
    _create_state_logs(
        [
            (
                now,
                actor_id,
                APPROVED,
                INVOICED,
                "mark_invoiced",
                content_type_id,
                item_id,
                f"{description} (invoice line {line_id})",
            )
            for item_id, line_id in pairs
        ]
    )


_STATE_LOG_FIELDS = (
    "timestamp",
    "by_id",
    "source_state",
    "state",
    "transition",
    "content_type_id",
    "object_id",
    "description",
)


def _create_state_logs(rows: list[tuple]) -> None:
    """StateLog rows (values in `_STATE_LOG_FIELDS` order): COPY on PostgreSQL, else bulk_create.

    A run writes one per billed item (250k for a large month); COPY skips building a
    model instance and an INSERT parameter per value, and writes exactly the same rows.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        StateLog.objects.bulk_create(
            [StateLog(**dict(zip(_STATE_LOG_FIELDS, row, strict=True))) for row in rows], batch_size=5000
        )
        return
    column = {field.attname: field.column for field in StateLog._meta.concrete_fields}
    columns = [column[name] for name in _STATE_LOG_FIELDS]
    with connection.cursor() as cursor:
        _copy(cursor, StateLog._meta.db_table, columns, rows)


def _copy(cursor, table: str, columns: list[str], rows: Iterable[Sequence]) -> None:
    """COPY rows into a table through Django's connection (PostgreSQL, psycopg 3), in its transaction."""
    qn = connection.ops.quote_name
    statement = f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    with cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _create_with_history(objs: list, model, *, actor: Any, reason: str, batch_size: int) -> list:
    """`bulk_create_with_history`; on PostgreSQL the same rows and "+" history rows by COPY.

    Ids are drawn from the table's own sequence first (as the INSERT would draw them)
    and set on the objects; values are those bulk_create sends (`pre_save` +
    `get_db_prep_save`, read straight from the attribute for plain types, where both
    return it unchanged); history rows get, like `bulk_history_create`, the tracked
    fields, `history_date` = now, the change reason and the default history user.
    """
    if connection.vendor != "postgresql":
        return bulk_create_with_history(
            objs, model, batch_size=batch_size, default_user=actor, default_change_reason=reason
        )
    if not objs:
        return objs
    meta = model._meta
    pk_field = meta.pk
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    getters = [attrgetter(f.attname) if isinstance(f, _PLAIN_FIELDS) else partial(_prepared_value, f) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, pk_field.column, len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        rows = []
        for obj, pk in zip(objs, ids, strict=True):
            rows.append([pk, *[get(obj) for get in getters]])
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias
        _copy(cursor, meta.db_table, [pk_field.column, *[f.column for f in fields]], rows)

        history = model.history.model
        tracked = history.tracked_fields
        columns = [history._meta.get_field(f.name).column for f in tracked]
        columns += ["history_date", "history_change_reason", "history_type", "history_user_id"]
        names = [f.attname for f in tracked]
        tracked_values = attrgetter(*names) if len(names) > 1 else lambda obj: (getattr(obj, names[0]),)
        _copy(
            cursor,
            history._meta.db_table,
            columns,
            (
                [
                    *tracked_values(obj),
                    timezone.now(),
                    reason,
                    "+",
                    getattr(actor or history.get_default_history_user(obj), "pk", None),
                ]
                for obj in objs
            ),
        )
    return objs


# Fields whose `pre_save` + `get_db_prep_save` return the attribute unchanged on PostgreSQL.
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.DecimalField,
    models.BooleanField,
    models.ForeignKey,
)


def _prepared_value(field, obj):
    return field.get_db_prep_save(field.pre_save(obj, True), connection)


def _link_postgresql(model, pairs: list[tuple[int, int]]) -> int:
    """One UPDATE … FROM unnest(ids, line ids) per batch: set-based, as fast as the database allows.

    The ids travel as two array literals (two parameters, not two per item), so a
    batch can be large: one statement, one plan, one pass per chunk. The items are
    fetched by primary key (nested loop): a chunk's items are few next to the table,
    which the planner's default hash join would scan whole, once per chunk, a cost
    that grows with the table's history; the setting is local to the statements.
    """
    table = model._meta.db_table
    linked = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'), "
            "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
        )
        hashjoin, mergejoin = cursor.fetchone()[:2]
        for offset in range(0, len(pairs), LINK_BATCH):
            batch = pairs[offset : offset + LINK_BATCH]
            cursor.execute(
                f"UPDATE {table} AS item SET invoice_line_id = links.line_id, status = %s "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS links(item_id, line_id) "
                "WHERE item.id = links.item_id AND item.invoice_line_id IS NULL AND item.status = %s",
                [
                    INVOICED,
                    "{" + ",".join(str(item_id) for item_id, _ in batch) + "}",
                    "{" + ",".join(str(line_id) for _, line_id in batch) + "}",
                    APPROVED,
                ],
            )
            linked += cursor.rowcount
        cursor.execute(
            "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
            [hashjoin, mergejoin],
        )
    return linked


def _link_portable(model, pairs: list[tuple[int, int]]) -> int:
    """The same compare-and-set, one UPDATE per line (SQLite demo databases)."""
    by_line: dict[int, list[int]] = defaultdict(list)
    for item_id, line_id in pairs:
        by_line[line_id].append(item_id)
    return sum(
        model.objects.filter(id__in=item_ids, invoice_line__isnull=True, status=APPROVED).update(
            invoice_line_id=line_id, status=INVOICED
        )
        for line_id, item_ids in by_line.items()
    )


def fix_url(code: str, draft: InvoiceDraft) -> str:
    """Where to fix what blocks: the record a user must change (docs/rules/screens.md: explain every block)."""
    contract = draft.contract
    targets = {
        Code.CLIENT_MASTER_DATA_INVALID: ("admin:billing_client_change", contract.client_id),
        Code.CLIENT_ON_CREDIT_HOLD: ("admin:billing_client_change", contract.client_id),
        Code.PO_REQUIRED_MISSING: ("admin:billing_contract_change", contract.id),
        Code.CHANGE_ORDER_PENDING: ("admin:billing_contract_change", contract.id),
        Code.MISSING_RATE: ("admin:billing_contract_change", contract.id),
        Code.CAP_EXCEEDED: ("admin:billing_contract_change", contract.id),
        Code.PROJECT_NOT_BILLABLE: ("admin:billing_contract_change", contract.id),
        Code.MISSING_FX_RATE: ("admin:billing_fxrate_changelist", None),
        Code.TAX_RULE_MISSING: ("admin:billing_taxrule_changelist", None),
    }
    po = draft.purchase_order
    if po is not None:  # the PO to raise, extend or correct (docs/rules/billing.md §13)
        for po_code in (Code.PO_EXCEEDED, Code.PO_EXPIRED, Code.PO_CURRENCY_MISMATCH):
            targets[po_code] = ("admin:billing_purchaseorder_change", po.pk)
    target = targets.get(code)
    if target is None:
        return ""
    name, pk = target
    try:
        return reverse(name, args=[pk] if pk else [])
    except Exception:  # admin not mounted (e.g. a stripped-down worker)
        return ""


# --- starting a run (finance page, API) ------------------------------------------------------------

RUN_STARTER_ROLES = (FINANCE_ANALYST, FINANCE_CONTROLLER)


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
    Unknown contract codes or dates out of order are refused here, so nothing is queued that
    could only fail.
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
    billing_runs_interrupt_stale(user=user, noticed="start of a new run")
    billing_run = BillingRun.objects.create(
        period_start=period_start,
        period_end=period_end,
        run_date=run_date,
        contract_codes=codes,
        started_by=user if getattr(user, "pk", None) else None,
    )
    _enqueue(billing_run)
    logger.info("Billing run %s queued for %s..%s by %s", billing_run.pk, period_start, period_end, user)
    return billing_run


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
            run = BillingRun.objects.select_for_update(skip_locked=True).filter(_stale(cutoff), pk=pk).first()
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
