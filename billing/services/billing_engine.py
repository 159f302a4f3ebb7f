"""The billing engine: prices approved work into draft invoices (docs/rules/billing.md).

`price_contract` is pure computation over items already read from the database;
`billing.services.billing_run` reads, locks and writes around it. Keeping the
rules here, free of I/O, makes every rule testable and lets revalidation reuse
exactly the same pricing as a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from billing.models import Contract, InvoiceException, InvoiceLine
from billing.services.pricing import FxResolver, RateResolver, TaxRuleResolver
from billing.tax_engine import TaxEngine
from kernel.money import HUNDRED, ZERO, round_money, round_quantity

BLOCKING = InvoiceException.Severity.BLOCKING
WARNING = InvoiceException.Severity.WARNING

# Lines the contract discount applies to (§3.7: expenses excluded).
DISCOUNTED_KINDS = {
    InvoiceLine.Kind.TIME,
    InvoiceLine.Kind.MILESTONE,
    InvoiceLine.Kind.RETAINER,
    InvoiceLine.Kind.OVERAGE,
}


class Code:
    """Exception codes: part of the API (docs/rules/billing.md §11)."""

    CLIENT_MASTER_DATA_INVALID = "CLIENT_MASTER_DATA_INVALID"
    PO_REQUIRED_MISSING = "PO_REQUIRED_MISSING"
    CHANGE_ORDER_PENDING = "CHANGE_ORDER_PENDING"
    PROJECT_NOT_BILLABLE = "PROJECT_NOT_BILLABLE"
    MISSING_RATE = "MISSING_RATE"
    MISSING_FX_RATE = "MISSING_FX_RATE"
    CAP_EXCEEDED = "CAP_EXCEEDED"
    TAX_RULE_MISSING = "TAX_RULE_MISSING"
    NON_POSITIVE_TOTAL = "NON_POSITIVE_TOTAL"
    CLIENT_ON_CREDIT_HOLD = "CLIENT_ON_CREDIT_HOLD"
    UNAPPROVED_TIME_IN_PERIOD = "UNAPPROVED_TIME_IN_PERIOD"
    LATE_TIME = "LATE_TIME"
    ANOMALY = "ANOMALY"
    PO_EXCEEDED = "PO_EXCEEDED"
    PO_EXPIRED = "PO_EXPIRED"
    PO_CURRENCY_MISMATCH = "PO_CURRENCY_MISMATCH"
    TAX_ENGINE_UNAVAILABLE = "TAX_ENGINE_UNAVAILABLE"
    VAT_CHECK_UNAVAILABLE = "VAT_CHECK_UNAVAILABLE"


FIX_HINTS = {
    Code.CLIENT_MASTER_DATA_INVALID: "Correct the client's master data, then revalidate.",
    Code.PO_REQUIRED_MISSING: "Enter the client's PO number on the contract, then revalidate.",
    Code.CHANGE_ORDER_PENDING: "Approve or reject the submitted change order, then revalidate.",
    Code.PROJECT_NOT_BILLABLE: "Reactivate the project (or complete it), then revalidate.",
    Code.MISSING_RATE: "Add a rate for the role on the rate card or the contract, then revalidate.",
    Code.MISSING_FX_RATE: "Load the FX rate for the expense date, then revalidate.",
    Code.CAP_EXCEEDED: "Approve a change order raising the cap, or write the invoice down to the cap.",
    Code.TAX_RULE_MISSING: "Add a tax rule for this entity and client, then revalidate.",
    Code.NON_POSITIVE_TOTAL: "Check the lines: an invoice must have a positive total.",
    Code.CLIENT_ON_CREDIT_HOLD: "Work done may be invoiced; a controller reviews the hold.",
    Code.UNAPPROVED_TIME_IN_PERIOD: "Ask the PM to approve or reject the submitted time.",
    Code.LATE_TIME: "Time was submitted after the cut-off; check it with the PM.",
    Code.PO_EXCEEDED: "Ask the client to raise the PO, update it in Billable, then revalidate.",
    Code.PO_EXPIRED: "Ask the client to extend the PO's validity, update it in Billable, then revalidate.",
    Code.PO_CURRENCY_MISMATCH: "Link the contract to a PO in the invoice's currency, then revalidate.",
    Code.TAX_ENGINE_UNAVAILABLE: "The tax engine did not answer: revalidate once it is back (never invoiced untaxed).",
    Code.VAT_CHECK_UNAVAILABLE: "VIES did not answer; the last stored check stands. Re-check the VAT id later.",
}


@dataclass
class TimeItem:
    id: int
    person_id: int
    role_id: int
    project_id: int
    date: date
    hours: Decimal
    person_name: str = ""


@dataclass
class ExpenseItem:
    id: int
    project_id: int
    date: date
    amount: Decimal
    currency: str
    category: str
    description: str = ""


@dataclass
class MilestoneItem:
    id: int
    project_id: int
    name: str
    amount: Decimal
    completed_on: date | None = None  # the line's service period (§13)


@dataclass
class LineDraft:
    kind: str
    amount: Decimal
    quantity: Decimal = Decimal("1.00")
    unit_price: Decimal = ZERO
    project_id: int | None = None
    role_id: int | None = None
    description: str = ""
    rate_source: str = ""
    rate_source_id: int | None = None
    rate_source_label: str = ""
    contract_id: int | None = None  # set on every line of a consolidated invoice
    time_entry_ids: list[int] = field(default_factory=list)
    expense_ids: list[int] = field(default_factory=list)
    milestone_ids: list[int] = field(default_factory=list)
    # First and last date of what the line bills (§13): items' dates, or the billing period.
    service_start: date | None = None
    service_end: date | None = None

    def cover(self, day: date) -> None:
        """Widen the line's service period to include `day`."""
        if self.service_start is None or day < self.service_start:
            self.service_start = day
        if self.service_end is None or day > self.service_end:
            self.service_end = day


@dataclass
class ExceptionDraft:
    code: str
    severity: str
    message: str
    amount: Decimal | None = None
    hint: str = ""  # a hint naming this case's figures (e.g. what is left on the PO); else the code's

    @property
    def fix_hint(self) -> str:
        return self.hint or FIX_HINTS.get(self.code, "")


@dataclass
class TaxDraft:
    category: str
    rate: Decimal
    base: Decimal
    amount: Decimal
    legal_note: str = ""


@dataclass
class InvoiceDraft:
    contract: Contract
    project_id: int | None
    currency: str
    issue_date: date
    due_date: date
    period_start: date
    period_end: date
    lines: list[LineDraft] = field(default_factory=list)
    taxes: list[TaxDraft] = field(default_factory=list)
    exceptions: list[ExceptionDraft] = field(default_factory=list)
    retainer_period: date | None = None
    purchase_order: Any = None  # the PurchaseOrder the invoice draws on (docs/rules/billing.md §13)
    consolidated: bool = False  # several contracts of a consolidating client; `contract` is the first
    subtotal: Decimal = ZERO
    tax_total: Decimal = ZERO
    total: Decimal = ZERO
    # Projects of items the draft bills but could not price (MISSING_RATE / MISSING_FX_RATE): still billed items.
    unpriced_project_ids: set[int] = field(default_factory=set)

    @property
    def service_start(self) -> date | None:
        """The invoice's service period starts at its earliest line's (§13); None without lines."""
        return min((line.service_start for line in self.lines if line.service_start), default=None)

    @property
    def service_end(self) -> date | None:
        return max((line.service_end for line in self.lines if line.service_end), default=None)

    @property
    def blocking_codes(self) -> set[str]:
        return {e.code for e in self.exceptions if e.severity == BLOCKING}

    @property
    def is_blocked(self) -> bool:
        return bool(self.blocking_codes)

    def add(
        self, code: str, severity: str, message: str, amount: Decimal | None = None, *, hint: str = ""
    ) -> None:
        """Record a finding once per code (messages of repeats are merged)."""
        for existing in self.exceptions:
            if existing.code == code:
                if message not in existing.message:
                    existing.message = f"{existing.message} {message}"
                return
        self.exceptions.append(ExceptionDraft(code, severity, message, amount, hint))

    @property
    def has_billable_content(self) -> bool:
        return bool(self.lines) or bool(self.blocking_codes & {Code.MISSING_RATE, Code.MISSING_FX_RATE})


@dataclass
class ProjectInfo:
    id: int
    code: str
    status: str


@dataclass
class ContractContext:
    """Everything the rules need to know about one contract, read beforehand."""

    contract: Contract
    projects: dict[int, ProjectInfo]
    time_items: list[TimeItem]
    expense_items: list[ExpenseItem]
    milestone_items: list[MilestoneItem]
    role_codes: dict[int, str]
    approved_cap_delta: Decimal = ZERO
    has_pending_change_order: bool = False
    prior_net_invoiced: Decimal = ZERO
    # project ids (None = any) with submitted, unapproved billable time in the period
    projects_with_unapproved_time: set[int] = field(default_factory=set)
    late_time_entry_ids: set[int] = field(default_factory=set)
    retainer_fee_due: bool = False
    existing_fee_line_id: int | None = None
    retainer_hours_already_covered: Decimal = ZERO
    # Output: in-period entries covered by a fee billed earlier in the period {fee line id: [entry ids]}.
    covered_by_existing_fee: dict[int, list[int]] = field(default_factory=dict)


def _invoice_key(contract: Contract, project_id: int) -> int | None:
    # A consolidating client gets one invoice for all its contracts: per-project invoices do not apply (§13).
    if contract.client.consolidate_invoices:
        return None
    if contract.invoice_per_project and contract.billing_model != Contract.BillingModel.RETAINER:
        return project_id
    return None


def price_contract(
    ctx: ContractContext,
    *,
    period_start: date,
    period_end: date,
    run_date: date,
    rates: RateResolver,
    fx: FxResolver,
    taxes: TaxEngine | TaxRuleResolver,
) -> list[InvoiceDraft]:
    """Build the contract's draft invoices for the period, priced and validated (§3)."""
    from datetime import timedelta

    contract = ctx.contract
    currency = contract.currency
    due_date = run_date + timedelta(days=contract.effective_payment_terms_days)
    drafts: dict[int | None, InvoiceDraft] = {}

    def draft_for(project_id: int | None) -> InvoiceDraft:
        key = None if project_id is None else _invoice_key(contract, project_id)
        if key not in drafts:
            drafts[key] = InvoiceDraft(
                contract=contract,
                project_id=key,
                currency=currency,
                issue_date=run_date,
                due_date=due_date,
                period_start=period_start,
                period_end=period_end,
                purchase_order=contract.purchase_order if contract.purchase_order_id else None,
            )
        return drafts[key]

    _price_items(ctx, draft_for, rates, fx, period_start=period_start, period_end=period_end)

    result = [d for d in drafts.values() if d.has_billable_content]
    for draft in result:
        _add_discount(draft, contract, period_start, period_end)
        draft.subtotal = sum((line.amount for line in draft.lines), ZERO)
        _apply_tax(draft, contract, taxes)
        _validate(draft, ctx)
    _check_cap(result, ctx)
    for draft in result:
        _check_total(draft)
    return result


def price_work(
    ctx: ContractContext,
    *,
    period_start: date,
    period_end: date,
    rates: RateResolver,
    fx: FxResolver,
    retainer_fee: Decimal | None = None,
) -> InvoiceDraft:
    """The context's items priced by the rules of §3.2–§3.7 as one draft, discount included.

    No tax, validation, cap or due date: revenue recognition (the `revenue` app) values
    delivered work with exactly the rates, FX, markup, retainer coverage and discount a
    billing run would use. `retainer_fee` replaces a retainer's fee (a share of it).
    """
    contract = ctx.contract
    draft = InvoiceDraft(
        contract=contract,
        project_id=None,
        currency=contract.currency,
        issue_date=period_end,
        due_date=period_end,
        period_start=period_start,
        period_end=period_end,
    )
    _price_items(
        ctx,
        lambda _project_id: draft,
        rates,
        fx,
        period_start=period_start,
        period_end=period_end,
        retainer_fee=retainer_fee,
    )
    _add_discount(draft, contract, period_start, period_end)
    draft.subtotal = sum((line.amount for line in draft.lines), ZERO)
    return draft


def _price_items(
    ctx,
    draft_for,
    rates: RateResolver,
    fx: FxResolver,
    *,
    period_start: date,
    period_end: date,
    retainer_fee: Decimal | None = None,
) -> None:
    """Lines for the context's time, retainer, milestones and expenses, per the billing model."""
    contract = ctx.contract
    currency = contract.currency
    model = contract.billing_model
    if model == Contract.BillingModel.TIME_AND_MATERIALS:
        _price_time(ctx, ctx.time_items, draft_for, rates, kind=InvoiceLine.Kind.TIME)
    elif model == Contract.BillingModel.RETAINER:
        _price_retainer(
            ctx, draft_for, rates, period_start=period_start, period_end=period_end, fee_amount=retainer_fee
        )
    elif model == Contract.BillingModel.FIXED_FEE:
        for milestone in ctx.milestone_items:
            draft_for(milestone.project_id).lines.append(
                LineDraft(
                    kind=InvoiceLine.Kind.MILESTONE,
                    amount=round_money(milestone.amount, currency),
                    unit_price=round_money(milestone.amount, currency),
                    project_id=milestone.project_id,
                    description=milestone.name,
                    milestone_ids=[milestone.id],
                    service_start=milestone.completed_on or period_end,
                    service_end=milestone.completed_on or period_end,
                )
            )
    _price_expenses(ctx, draft_for, fx)


def _price_time(
    ctx, items, draft_for, rates: RateResolver, *, kind: str, service: tuple[date, date] | None = None
) -> None:
    """Group entries per project by (role, resolved rate): one line each (§3.2)."""
    contract = ctx.contract
    groups: dict[tuple[int, int, Decimal], LineDraft] = {}
    # Unpriced entries per (invoice draft, role): one MISSING_RATE sentence per role, not per entry.
    unpriced: dict[tuple[int, int], tuple[InvoiceDraft, list[TimeItem]]] = {}
    for item in items:
        resolved = rates.resolve(contract_id=contract.id, person_id=item.person_id, role_id=item.role_id, day=item.date)
        if resolved is None:
            draft = draft_for(item.project_id)
            draft.unpriced_project_ids.add(item.project_id)
            unpriced.setdefault((id(draft), item.role_id), (draft, []))[1].append(item)
            continue
        key = (item.project_id, item.role_id, resolved.rate)
        line = groups.get(key)
        if line is None:
            line = groups[key] = LineDraft(
                kind=kind,
                amount=ZERO,
                quantity=ZERO,
                unit_price=resolved.rate,
                project_id=item.project_id,
                role_id=item.role_id,
                description=f"{ctx.role_codes.get(item.role_id, '')} time",
                rate_source=resolved.source,
                rate_source_id=resolved.source_id,
                rate_source_label=resolved.label,
            )
            draft_for(item.project_id).lines.append(line)
        elif line.rate_source_id != resolved.source_id and "several sources" not in line.rate_source_label:
            line.rate_source_label += " (and other sources at the same rate)"
        line.quantity += item.hours
        line.time_entry_ids.append(item.id)
        if kind == InvoiceLine.Kind.TIME:
            line.cover(item.date)
    for line in groups.values():
        if service is not None:  # overage: the billing period (§13)
            line.service_start, line.service_end = service
        line.quantity = round_quantity(line.quantity)
        line.amount = round_money(line.quantity * line.unit_price, contract.currency)
    for (_draft_id, role_id), (draft, missing) in unpriced.items():
        draft.add(Code.MISSING_RATE, BLOCKING, missing_rate_message(ctx.role_codes.get(role_id, "?"), missing))


#: People named in a MISSING_RATE message before "and N more".
MISSING_RATE_NAMES = 3


def missing_rate_message(role_code: str, items: list[TimeItem]) -> str:
    """One sentence for all the entries of one role without a rate: which role, how much, when, who.

    A rate resolves person override → role override → rate card, so what is missing is the
    role's rate (a person rate would have priced the entry): the analyst adds one rate, not 27.
    """
    days = sorted({i.date for i in items})
    hours = round_quantity(sum((i.hours for i in items), ZERO))
    names = sorted({i.person_name or f"person {i.person_id}" for i in items})
    people = ", ".join(names[:MISSING_RATE_NAMES])
    if len(names) > MISSING_RATE_NAMES:
        people += f" and {len(names) - MISSING_RATE_NAMES} more"
    entries = f"{len(items)} time entr{'y' if len(items) == 1 else 'ies'}"
    when = (
        f"on {days[0]:%Y-%m-%d}"
        if len(days) == 1
        else f"on {len(days)} days between {days[0]:%Y-%m-%d} and {days[-1]:%Y-%m-%d}"
    )
    return f"No rate for role {role_code}: {entries} ({hours} h) {when}, by {people}."


def _price_retainer(
    ctx, draft_for, rates: RateResolver, *, period_start: date, period_end: date, fee_amount: Decimal | None = None
) -> None:
    """Fee once per period; the first included hours of in-period time are covered (§3.6)."""
    contract = ctx.contract
    currency = contract.currency
    draft = draft_for(None)
    fee_line = None
    if ctx.retainer_fee_due:
        fee = round_money((contract.retainer_amount or ZERO) if fee_amount is None else fee_amount, currency)
        fee_line = LineDraft(
            kind=InvoiceLine.Kind.RETAINER,
            amount=fee,
            unit_price=fee,
            description=f"Retainer {period_start:%Y-%m-%d} – {period_end:%Y-%m-%d}",
            service_start=period_start,
            service_end=period_end,
        )
        draft.lines.append(fee_line)
        draft.retainer_period = period_start
    has_fee = fee_line is not None or ctx.existing_fee_line_id is not None
    remaining = max((contract.included_hours or ZERO) - ctx.retainer_hours_already_covered, ZERO) if has_fee else ZERO

    in_period = sorted(
        (i for i in ctx.time_items if period_start <= i.date <= period_end), key=lambda i: (i.date, i.id)
    )
    overage: list[TimeItem] = []
    covered_ids: list[int] = []
    for item in in_period:
        if remaining >= item.hours:
            remaining -= item.hours
            covered_ids.append(item.id)
            continue
        uncovered = item.hours - remaining
        remaining = ZERO
        overage.append(
            TimeItem(item.id, item.person_id, item.role_id, item.project_id, item.date, uncovered, item.person_name)
        )
    if covered_ids:
        if fee_line is not None:
            fee_line.time_entry_ids.extend(covered_ids)
        else:
            ctx.covered_by_existing_fee.setdefault(ctx.existing_fee_line_id, []).extend(covered_ids)
    _price_time(
        ctx,
        overage,
        lambda _project_id: draft,
        rates,
        kind=InvoiceLine.Kind.OVERAGE,
        service=(period_start, period_end),
    )


def _price_expenses(ctx, draft_for, fx: FxResolver) -> None:
    """One line per expense: round(round(amount × FX) × (1 + markup %)) (§3.4)."""
    contract = ctx.contract
    currency = contract.currency
    markup = Decimal(1) + (contract.expense_markup_pct or ZERO) / HUNDRED
    for expense in ctx.expense_items:
        draft = draft_for(expense.project_id)
        rate = fx.rate(expense.currency, currency, expense.date)
        if rate is None:
            draft.unpriced_project_ids.add(expense.project_id)
            draft.add(
                Code.MISSING_FX_RATE,
                BLOCKING,
                f"No {expense.currency}→{currency} rate on or before {expense.date:%Y-%m-%d}.",
            )
            continue
        converted = round_money(expense.amount * rate, currency)
        amount = round_money(converted * markup, currency)
        draft.lines.append(
            LineDraft(
                kind=InvoiceLine.Kind.EXPENSE,
                amount=amount,
                unit_price=amount,
                project_id=expense.project_id,
                description=expense.description or f"{expense.category.title()} expense {expense.date:%Y-%m-%d}",
                expense_ids=[expense.id],
                service_start=expense.date,
                service_end=expense.date,
            )
        )


def _add_discount(draft: InvoiceDraft, contract: Contract, period_start: date, period_end: date) -> None:
    pct = contract.discount_pct or ZERO
    if pct <= 0:
        return
    base = sum((line.amount for line in draft.lines if line.kind in DISCOUNTED_KINDS), ZERO)
    discount = round_money(base * pct / HUNDRED, draft.currency)
    if discount == 0:
        return
    draft.lines.append(
        LineDraft(
            kind=InvoiceLine.Kind.DISCOUNT,
            amount=-discount,
            unit_price=-discount,
            description=f"Discount {pct.normalize():f} %",
            service_start=period_start,
            service_end=period_end,
        )
    )


def _apply_tax(draft: InvoiceDraft, contract: Contract, taxes: TaxEngine | TaxRuleResolver) -> None:
    """Delegate to the tax engine (billing.tax_engine); a bare rule resolver is the built-in engine."""
    if isinstance(taxes, TaxRuleResolver):
        from billing.tax_engine.rule_table import RuleTableEngine

        taxes = RuleTableEngine(taxes)
    taxes.determine(draft, contract)


def _validate(draft: InvoiceDraft, ctx: ContractContext) -> None:
    contract = ctx.contract
    client = contract.client
    problems = client.master_data_problems()
    if problems:
        draft.add(Code.CLIENT_MASTER_DATA_INVALID, BLOCKING, f"Client {client.code}: " + " ".join(problems))
    vies_check = getattr(client, "vies_check", None)  # set by billing.services.vat_checks.attach_vat_checks
    if vies_check is not None and vies_check.result == "invalid":
        draft.add(Code.CLIENT_MASTER_DATA_INVALID, BLOCKING, f"Client {client.code}: {vies_check.answer}")
    elif vies_check is not None and vies_check.result == "unavailable":
        draft.add(Code.VAT_CHECK_UNAVAILABLE, WARNING, f"Client {client.code}: {vies_check.answer}")
    if client.po_required and not (contract.po_number or "").strip():
        draft.add(
            Code.PO_REQUIRED_MISSING,
            BLOCKING,
            f"Client {client.code} requires a PO; contract {contract.code} has none.",
        )
    if ctx.has_pending_change_order:
        draft.add(
            Code.CHANGE_ORDER_PENDING,
            BLOCKING,
            f"Contract {contract.code} has a submitted change order awaiting a decision.",
        )
    # Every project whose items the invoice bills, priced or not (§12).
    billed_projects = {line.project_id for line in draft.lines if line.project_id} | draft.unpriced_project_ids
    for line in draft.lines:
        if line.time_entry_ids and line.project_id is None:
            billed_projects.update(_projects_of_entries(ctx, line.time_entry_ids))
    for project_id in sorted(billed_projects):
        project = ctx.projects[project_id]
        if project.status not in ("active", "completed"):
            draft.add(
                Code.PROJECT_NOT_BILLABLE,
                BLOCKING,
                f"Project {project.code} is {project.status.replace('_', ' ')}.",
            )
    if client.credit_hold:
        draft.add(Code.CLIENT_ON_CREDIT_HOLD, WARNING, f"Client {client.code} is on credit hold.")
    if contract.billing_model == Contract.BillingModel.FIXED_FEE:
        unapproved = False  # a fixed fee never bills time, approved or not (§12)
    elif draft.project_id is None:
        unapproved = bool(ctx.projects_with_unapproved_time)
    else:
        unapproved = draft.project_id in ctx.projects_with_unapproved_time
    if unapproved:
        draft.add(
            Code.UNAPPROVED_TIME_IN_PERIOD,
            WARNING,
            "Submitted billable time in the period is still waiting for approval.",
        )
    late = [i for line in draft.lines for i in line.time_entry_ids if i in ctx.late_time_entry_ids]
    if late:
        draft.add(Code.LATE_TIME, WARNING, f"{len(late)} time entries were submitted after the cut-off.")


def _projects_of_entries(ctx: ContractContext, entry_ids: list[int]) -> set[int]:
    wanted = set(entry_ids)
    return {i.project_id for i in ctx.time_items if i.id in wanted}


def _check_cap(drafts: list[InvoiceDraft], ctx: ContractContext) -> None:
    """Prior net invoiced + this run's subtotals must not exceed cap + approved deltas (§3.8)."""
    contract = ctx.contract
    if contract.cap is None:
        return
    cap = contract.cap + ctx.approved_cap_delta
    this_run = sum((d.subtotal for d in drafts if d.has_billable_content), ZERO)
    excess = ctx.prior_net_invoiced + this_run - cap
    if excess > 0:
        for draft in drafts:
            draft.add(
                Code.CAP_EXCEEDED,
                BLOCKING,
                f"Contract {contract.code} cap {cap} {contract.currency} would be exceeded by "
                f"{excess} {contract.currency} (already invoiced {ctx.prior_net_invoiced}).",
                amount=excess,
            )


def _check_total(draft: InvoiceDraft) -> None:
    unpriced = draft.blocking_codes & {Code.MISSING_RATE, Code.MISSING_FX_RATE}
    if draft.total <= 0 and not unpriced:
        draft.add(Code.NON_POSITIVE_TOTAL, BLOCKING, f"Total is {draft.total} {draft.currency}.")
