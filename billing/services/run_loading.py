"""Loading for billing runs: which contracts have work, and everything the engine needs to price them.

Reads only. The run locks a chunk's contracts first (`billing.services.billing_run`), then reads
here, so what is read cannot be billed by another run meanwhile. Each read is one query per chunk
(items by project, through its index), whatever the number of contracts (docs/rules/billing.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import (
    ChangeOrder,
    Contract,
    Expense,
    Invoice,
    InvoiceLine,
    Milestone,
    Project,
    Role,
    TimeEntry,
)
from billing.models.work import timesheet_cutoff
from billing.services.billing_engine import ContractContext, ExpenseItem, MilestoneItem, ProjectInfo, TimeItem
from billing.services.billing_frequency import quarter_of
from kernel.errors import ApplicationError
from kernel.money import ZERO
from kernel.periods import month_bounds

TM = Contract.BillingModel.TIME_AND_MATERIALS
FIXED_FEE = Contract.BillingModel.FIXED_FEE
RETAINER = Contract.BillingModel.RETAINER


def eligible_items() -> Q:
    """Approved, billable, not yet linked: what a run may bill (time entries and expenses alike)."""
    return Q(status=TimeEntry.Status.APPROVED, billable=True, invoice_line__isnull=True)


def candidate_contract_ids(
    period_start: date,
    period_end: date,
    contracts: Iterable[Contract | str | int] | None,
    *,
    bill_now: bool = False,
) -> list[int]:
    """Contracts with something to bill up to `period_end` (items, milestones, an active retainer), sorted.

    `contracts` narrows the scope (ids, instances or codes; an unknown code is an error). A "bill now"
    run over a quarterly contract before its quarter end also looks up to the quarter end (§13).
    """
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
            eligible_items(),
            date__lte=period_end,
            project__contract__in=scope_ids,
            project__contract__billing_model__in=[TM, RETAINER],
        )
        .values_list("project__contract_id", flat=True)
        .distinct()
    )
    ids.update(
        Expense.objects.filter(eligible_items(), date__lte=period_end, project__contract__in=scope_ids)
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
        ids.update(candidate_contract_ids(period_start, quarter_end, quarterly.values_list("id", flat=True)))
    return sorted(ids)


def load_contexts(
    contract_ids: Sequence[int], start: date, end: date, *, rebuilding: Invoice | None = None
) -> tuple[list[ContractContext], set[tuple]]:
    """Read everything the engine needs for locked contracts, in a bounded number of queries.

    `rebuilding`: the draft being revalidated, left out of "previously invoiced".
    """

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
    role_codes = dict(Role.objects.values_list("id", "code"))
    utc = timezone.get_fixed_timezone(0)

    eligible_time = TimeEntry.objects.filter(
        eligible_items(),
        date__lte=end,
        project_id__in=project_ids,
        project__contract__billing_model__in=[TM, RETAINER],
    )
    time_rows = eligible_time.order_by("date", "id").values_list(
        "id", "person_id", "person__role_id", "person__name", "project_id", "project__contract_id", "date", "hours"
    )
    months: set[tuple[int, int]] = set()
    for entry_id, person_id, role_id, person_name, project_id, contract_id, day, hours in time_rows:
        ctxs[contract_id].time_items.append(TimeItem(entry_id, person_id, role_id, project_id, day, hours, person_name))
        months.add((day.year, day.month))
    # Late entries (submitted after their month's cut-off) are few: the database picks them, one
    # condition per month present, instead of every entry's timestamp travelling here.
    late = Q()
    for year, month in sorted(months):
        first, last = month_bounds(year, month)
        limit = datetime.combine(timesheet_cutoff(last), datetime.min.time(), tzinfo=utc)
        late |= Q(date__gte=first, date__lte=last, submitted_at__gte=limit)
    if months:
        for entry_id, contract_id in eligible_time.filter(late).values_list("id", "project__contract_id"):
            ctxs[contract_id].late_time_entry_ids.add(entry_id)
    for ctx in ctxs.values():
        ctx.role_codes = role_codes

    expense_rows = (
        Expense.objects.filter(eligible_items(), date__lte=end, project_id__in=project_ids)
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
    prior = Invoice.objects.filter(contract_id__in=contract_ids, consolidated=False).exclude(
        status=Invoice.Status.CANCELLED
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
