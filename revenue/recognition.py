"""What each contract has earned up to a date (docs/rules/revenue.md): reads, then pure computation.

`recognise(contracts, period_end, previous_end)` returns per contract the cumulative revenue
recognised up to the period end and, with today's data, up to the previous period end (the
difference between the latter and what the previous close stored is the catch-up), the
cumulative amount billed, and what the cap made unrecoverable. Work is valued by the billing
engine's own pricing (`billing.services.billing_engine.price_work`): same rates, FX, markup,
retainer coverage and discount as an invoice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Min, Sum
from django.db.models.functions import Coalesce

from billing.models import ChangeOrder, Contract, Expense, Invoice, InvoiceLine, Milestone, TimeEntry
from billing.services.billing_engine import ContractContext, ExpenseItem, TimeItem, price_work
from billing.services.billing_frequency import quarter_of
from billing.services.pricing import FxResolver, RateResolver
from kernel.money import HUNDRED, ZERO, round_money
from kernel.periods import month_bounds, month_of
from revenue.models import Estimate, RecognitionPolicy

Method = RecognitionPolicy.Method
DONE = (TimeEntry.Status.APPROVED, TimeEntry.Status.INVOICED)
#: Invoices and credit notes count as billed once numbered (approved onwards), by issue date.
NOT_ISSUED = (
    Invoice.Status.DRAFT,
    Invoice.Status.EXCEPTION,
    Invoice.Status.PENDING_APPROVAL,
    Invoice.Status.CANCELLED,
)


def default_method(contract: Contract) -> str:
    return {
        Contract.BillingModel.TIME_AND_MATERIALS: Method.DELIVERED,
        Contract.BillingModel.FIXED_FEE: Method.PERCENT_COMPLETE,
        Contract.BillingModel.RETAINER: Method.STRAIGHT_LINE,
    }[contract.billing_model]


@dataclass
class Recognition:
    contract: Contract
    method: str
    cumulative: Decimal = ZERO  # recognised to the period end (capped)
    previous: Decimal = ZERO  # recognised to the previous period end, with today's data (capped)
    unrecoverable: Decimal = ZERO
    billed: Decimal = ZERO
    hours: Decimal | None = None
    estimate: Decimal | None = None
    missing_estimate: bool = False
    notes: list[str] = field(default_factory=list)


def _months(first: date, last: date) -> list[date]:
    months, day = [], first.replace(day=1)
    while day <= last:
        months.append(day)
        day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return months


def _ctx(contract: Contract, time_items: list[TimeItem], expense_items: list[ExpenseItem]) -> ContractContext:
    return ContractContext(
        contract=contract,
        projects={},
        time_items=time_items,
        expense_items=expense_items,
        milestone_items=[],
        role_codes={},
    )


def _estimate_at(estimates: list[Estimate], day: date) -> Decimal | None:
    """The latest approved estimate dated on or before `day` (estimates come newest first)."""
    for estimate in estimates:
        if estimate.as_of <= day:
            return estimate.hours
    return None


def _discounted(amount: Decimal, contract: Contract) -> Decimal:
    pct = contract.discount_pct or ZERO
    return amount - round_money(amount * pct / HUNDRED, contract.currency) if pct > 0 else amount


def billed_to(contract_ids: Iterable[int], day: date) -> dict[int, Decimal]:
    """Σ invoice subtotals − Σ credit-note subtotals (before tax) issued on or before `day`, per contract."""
    ids = list(contract_ids)
    billed: dict[int, Decimal] = defaultdict(lambda: ZERO)
    issued = Invoice.objects.exclude(status__in=NOT_ISSUED).filter(issue_date__lte=day)
    for contract_id, kind, total in (
        issued.filter(contract_id__in=ids, consolidated=False)
        .values("contract_id", "kind")
        .annotate(total=Sum("subtotal"))
        .values_list("contract_id", "kind", "total")
    ):
        billed[contract_id] += total if kind == Invoice.Kind.INVOICE else -abs(total)
    for contract_id, kind, total in (
        InvoiceLine.objects.filter(invoice__in=issued.filter(consolidated=True))
        .annotate(billed_contract=Coalesce("contract_id", "invoice__contract_id"))
        .filter(billed_contract__in=ids)
        .values("billed_contract", "invoice__kind")
        .annotate(total=Sum("amount"))
        .values_list("billed_contract", "invoice__kind", "total")
    ):
        billed[contract_id] += total if kind == Invoice.Kind.INVOICE else -abs(total)
    return billed


def recognise(contracts: list[Contract], *, period_end: date, previous_end: date) -> dict[int, Recognition]:
    """Cumulative recognition of each contract to `period_end` and (with today's data) to `previous_end`."""
    ids = [c.id for c in contracts]
    by_id = {c.id: c for c in contracts}
    policies = {p.contract_id: p for p in RecognitionPolicy.objects.filter(contract_id__in=ids)}
    estimates: dict[int, list[Estimate]] = defaultdict(list)
    for estimate in Estimate.objects.filter(contract_id__in=ids, status=Estimate.Status.APPROVED).order_by(
        "-as_of", "-id"
    ):
        estimates[estimate.contract_id].append(estimate)
    cap_deltas = dict(
        ChangeOrder.objects.filter(contract_id__in=ids, status=ChangeOrder.Status.APPROVED)
        .values("contract_id")
        .annotate(total=Sum("cap_delta"))
        .values_list("contract_id", "total")
    )

    # Approved work dated up to the period end. Billable time is valued; all approved time counts as progress.
    billable_time: dict[int, list[TimeItem]] = defaultdict(list)
    progress: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for entry_id, person_id, role_id, project_id, contract_id, day, hours, billable in (
        TimeEntry.objects.filter(status__in=DONE, date__lte=period_end, project__contract_id__in=ids)
        .order_by("date", "id")
        .values_list(
            "id", "person_id", "person__role_id", "project_id", "project__contract_id", "date", "hours", "billable"
        )
    ):
        progress[contract_id].append((day, hours))
        if billable:
            billable_time[contract_id].append(TimeItem(entry_id, person_id, role_id, project_id, day, hours))
    expenses: dict[int, list[ExpenseItem]] = defaultdict(list)
    for expense_id, project_id, contract_id, day, amount, currency, category, description in (
        Expense.objects.filter(status__in=DONE, billable=True, date__lte=period_end, project__contract_id__in=ids)
        .order_by("date", "id")
        .values_list(
            "id", "project_id", "project__contract_id", "date", "amount", "currency", "category", "description"
        )
    ):
        expenses[contract_id].append(ExpenseItem(expense_id, project_id, day, amount, currency, category, description))
    fees: dict[int, Decimal] = defaultdict(lambda: ZERO)
    approved_milestones: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for contract_id, amount, status, approved_at in Milestone.objects.filter(project__contract_id__in=ids).values_list(
        "project__contract_id", "amount", "status", "approved_at"
    ):
        fees[contract_id] += amount
        if status in (Milestone.Status.APPROVED, Milestone.Status.INVOICED) and approved_at is not None:
            approved_milestones[contract_id].append((approved_at.date(), amount))
    first_retainer = _first_retainer_periods(ids)

    rates = RateResolver(contracts)
    fx = FxResolver({(e.currency, by_id[cid].currency) for cid, items in expenses.items() for e in items}, period_end)
    billed = billed_to(ids, period_end)

    result: dict[int, Recognition] = {}
    for contract in contracts:
        policy = policies.get(contract.id)
        method = policy.method if policy else default_method(contract)
        rec = Recognition(contract=contract, method=method, billed=billed.get(contract.id, ZERO))
        times, costs = billable_time.get(contract.id, []), expenses.get(contract.id, [])
        ends = (period_end, previous_end)
        raw = dict.fromkeys(ends, ZERO)
        if method == Method.STRAIGHT_LINE:
            for end in ends:
                raw[end] = _retainer_to(contract, policy, first_retainer.get(contract.id), times, costs, end, rates, fx)
        else:
            monthly = _monthly_values(contract, [] if method != Method.DELIVERED else times, costs, rates, fx)
            for end in ends:
                raw[end] = sum((v for m, v in monthly.items() if m <= end), ZERO)
            if method == Method.PERCENT_COMPLETE:
                fee = fees.get(contract.id, ZERO)
                for end in ends:
                    hours = sum((h for d, h in progress.get(contract.id, []) if d <= end), ZERO)
                    eac = _estimate_at(estimates.get(contract.id, []), end)
                    if end == period_end:
                        rec.hours, rec.estimate, rec.missing_estimate = hours, eac, eac is None
                    if eac:
                        share = min(Decimal(1), hours / eac)
                        raw[end] += _discounted(round_money(fee * share, contract.currency), contract)
            elif method == Method.MILESTONE:
                for end in ends:
                    done = sum((a for d, a in approved_milestones.get(contract.id, []) if d <= end), ZERO)
                    raw[end] += _discounted(round_money(done, contract.currency), contract)
        cap = None if contract.cap is None else contract.cap + (cap_deltas.get(contract.id) or ZERO)
        capped = {end: raw[end] if cap is None else min(raw[end], cap) for end in ends}
        rec.cumulative, rec.previous = capped[period_end], capped[previous_end]
        rec.unrecoverable = raw[period_end] - capped[period_end]
        result[contract.id] = rec
    return result


def _first_retainer_periods(ids: list[int]) -> dict[int, date]:
    return dict(
        Invoice.objects.filter(contract_id__in=ids, retainer_period__isnull=False)
        .exclude(status=Invoice.Status.CANCELLED)
        .values("contract_id")
        .annotate(first=Min("retainer_period"))
        .values_list("contract_id", "first")
    )


def _monthly_values(
    contract: Contract, times: list[TimeItem], costs: list[ExpenseItem], rates: RateResolver, fx: FxResolver
) -> dict[date, Decimal]:
    """Work valued month by month, as a monthly invoice of that month's items would price it."""
    by_month: dict[date, tuple[list[TimeItem], list[ExpenseItem]]] = defaultdict(lambda: ([], []))
    for item in times:
        by_month[item.date.replace(day=1)][0].append(item)
    for item in costs:
        by_month[item.date.replace(day=1)][1].append(item)
    values = {}
    for month, (month_times, month_costs) in by_month.items():
        start, end = month_of(month)
        draft = price_work(
            _ctx(contract, month_times, month_costs), period_start=start, period_end=end, rates=rates, fx=fx
        )
        values[month] = draft.subtotal
    return values


def _retainer_to(
    contract: Contract,
    policy: RecognitionPolicy | None,
    first_billed: date | None,
    times: list[TimeItem],
    costs: list[ExpenseItem],
    end: date,
    rates: RateResolver,
    fx: FxResolver,
) -> Decimal:
    """Fee straight-line over each billing period (a quarter in thirds), overage and expenses as delivered."""
    fee_from = policy.retainer_start if policy and policy.retainer_start else first_billed
    fee_to = policy.retainer_end if policy else None
    starts = [d for d in (fee_from, *(i.date for i in times), *(i.date for i in costs)) if d is not None]
    if not starts:
        return ZERO
    quarterly = contract.billing_frequency == Contract.Frequency.QUARTERLY
    total = ZERO
    seen: set[date] = set()
    for month in _months(min(starts), end):
        bp_start, bp_end = quarter_of(month) if quarterly else month_of(month)
        if bp_start in seen:
            continue
        seen.add(bp_start)
        upto = min(bp_end, end)
        in_window = [i for i in times if bp_start <= i.date <= upto]
        window_costs = [i for i in costs if bp_start <= i.date <= upto]
        fee_due = (
            fee_from is not None
            and fee_from.replace(day=1) <= bp_start
            and (fee_to is None or bp_start <= fee_to)
            and contract.status != Contract.Status.DRAFT
        )
        if not (fee_due or in_window or window_costs):
            continue
        share = None
        if fee_due:
            months_in = len(_months(bp_start, bp_end))
            elapsed = len(_months(bp_start, upto.replace(day=1)))
            fee = contract.retainer_amount or ZERO
            share = round_money(fee * elapsed / months_in, contract.currency)
        ctx = _ctx(contract, in_window, window_costs)
        ctx.retainer_fee_due = fee_due
        draft = price_work(ctx, period_start=bp_start, period_end=upto, rates=rates, fx=fx, retainer_fee=share)
        total += draft.subtotal
    return total


def month_start(value: str | date) -> tuple[date, date]:
    """`2026-10` (or any date in it) → the month's first and last day."""
    if isinstance(value, date):
        return month_of(value)
    year, month = str(value).split("-")[:2]
    return month_bounds(int(year), int(month))
