"""Billing's approvable subjects, as the approval engine sees them (registered in `BillingConfig.ready()`).

One `SubjectHandler` per model says what the engine needs: the status a subject
waits in, how it is named, who prepared it (segregation of duties), how its facts
(amount in the entity's currency, scope, warnings, cap growth, PMs) load in bulk,
and which billing service applies a settled approval or rejection.
Adding a kind of approvable subject = a handler here and one `register_subject` call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from approvals.models import Reminder
from approvals.registry import (
    ProjectManagers,
    SubjectFacts,
    SubjectHandler,
    handler_for,
    register_condition_choices,
    register_project_managers,
    register_reminder,
    register_subject,
)
from billing.models import (
    ChangeOrder,
    Contract,
    Expense,
    FxRate,
    Invoice,
    InvoiceException,
    Milestone,
    Project,
    TimeEntry,
)
from kernel.money import round_money

HUNDRED = Decimal("100")


class SubjectType(models.TextChoices):
    """Billing's approval subject types: the values approval policies and requests carry."""

    INVOICE = "invoice", "Invoice"
    CREDIT_NOTE = "credit_note", "Credit note"
    MILESTONE = "milestone", "Milestone"
    CHANGE_ORDER = "change_order", "Change order"
    TIME_ENTRY = "time_entry", "Time entry"
    EXPENSE = "expense", "Expense"


# --- facts, loaded in bulk for every billing subject at once ----------------------------------------


def _fx_lookup(needs: set[tuple[str, str, date]]) -> dict[tuple[str, str, date], Decimal | None]:
    """Latest direct rate ≤ date for each (from, to, date), in one query."""
    if not needs:
        return {}
    pairs = {(f, t) for f, t, _ in needs}
    latest = max(d for _, _, d in needs)
    condition = Q()
    for from_currency, to_currency in pairs:
        condition |= Q(from_currency=from_currency, to_currency=to_currency)
    rates: dict[tuple[str, str], list[tuple[date, Decimal]]] = defaultdict(list)
    for from_currency, to_currency, day, rate in (
        FxRate.objects.filter(condition, date__lte=latest)
        .order_by("-date")
        .values_list("from_currency", "to_currency", "date", "rate")
    ):
        rates[(from_currency, to_currency)].append((day, rate))
    found: dict[tuple[str, str, date], Decimal | None] = {}
    for from_currency, to_currency, day in needs:
        found[(from_currency, to_currency, day)] = next(
            (rate for rate_day, rate in rates[(from_currency, to_currency)] if rate_day <= day), None
        )
    return found


def collect_billing_facts(rows: Sequence[Any], today: date) -> list[SubjectFacts]:
    """Facts of billing subjects (reloaded with their handler's `related`), in order, in ≤ 4 queries."""

    invoice_ids = [r.pk for r in rows if isinstance(r, Invoice)]
    warnings: dict[int, set[str]] = defaultdict(set)
    if invoice_ids:
        for invoice_id, code in (
            InvoiceException.objects.filter(invoice_id__in=invoice_ids)
            .exclude(state=InvoiceException.State.RESOLVED)
            .values_list("invoice_id", "code")
        ):
            warnings[invoice_id].add(code)

    # PMs of whole contracts: for change orders and invoices that are not per project.
    contract_wide = {
        r.contract_id for r in rows if isinstance(r, ChangeOrder) or (isinstance(r, Invoice) and not r.project_id)
    }
    contract_pms: dict[int, set[int]] = defaultdict(set)
    if contract_wide:
        for contract_id, pm_id in Project.objects.filter(
            contract_id__in=contract_wide, project_manager__isnull=False
        ).values_list("contract_id", "project_manager_id"):
            contract_pms[contract_id].add(pm_id)

    change_order_contracts = {r.contract_id for r in rows if isinstance(r, ChangeOrder)}
    approved_deltas: dict[int, Decimal] = {}
    if change_order_contracts:
        approved_deltas = dict(
            ChangeOrder.objects.filter(contract_id__in=change_order_contracts, status=ChangeOrder.Status.APPROVED)
            .values("contract_id")
            .annotate(total=Sum("cap_delta"))
            .values_list("contract_id", "total")
        )

    facts = [_facts_of(row, warnings, contract_pms, approved_deltas, today) for row in rows]
    needs = {
        (f.currency, _entity_currency(f.subject), _amount_date(f.subject, today))
        for f in facts
        if f.amount is not None and f.currency and f.currency != _entity_currency(f.subject)
    }
    rates = _fx_lookup(needs)
    for f in facts:
        if f.amount is None:
            continue
        entity_currency = _entity_currency(f.subject)
        if not f.currency or f.currency == entity_currency:
            f.entity_amount = f.amount
            continue
        rate = rates.get((f.currency, entity_currency, _amount_date(f.subject, today)))
        if rate is None:
            f.amount_unconvertible = True
        else:
            f.entity_amount = round_money(f.amount * rate, entity_currency)
    return facts


def _contract_of(row: Any) -> Any:
    if isinstance(row, Invoice | ChangeOrder):
        return row.contract
    return row.project.contract


def _entity_currency(row: Any) -> str:
    if isinstance(row, Invoice):
        return row.entity.currency
    return _contract_of(row).entity.currency


def _amount_date(row: Any, today: date) -> date:
    """The date the amount is converted at: the issue date of an invoice, else when it was done."""
    if isinstance(row, Invoice):
        return row.issue_date
    if isinstance(row, Expense):
        return row.date
    if isinstance(row, Milestone):
        return timezone.localdate(row.completed_at) if row.completed_at else today
    if isinstance(row, ChangeOrder):
        return timezone.localdate(row.submitted_at) if row.submitted_at else today
    return today


def _facts_of(
    row: Any,
    warnings: dict[int, set[str]],
    contract_pms: dict[int, set[int]],
    approved_deltas: dict[int, Decimal],
    today: date,
) -> SubjectFacts:
    contract = _contract_of(row)
    facts = SubjectFacts(
        subject=row,
        subject_type=handler_for(row).type_of(row),
        awaiting=row.status == handler_for(row).awaiting_status,
        entity_id=row.entity_id if isinstance(row, Invoice) else contract.entity_id,
        client_id=row.client_id if isinstance(row, Invoice) else contract.client_id,
        contract_id=contract.pk,
        billing_model=contract.billing_model,
        prepared_by_id=handler_for(row).preparer_id(row),
    )
    if isinstance(row, Invoice):
        facts.amount, facts.currency = abs(row.total), row.currency
        facts.warnings = frozenset(warnings.get(row.pk, ()))
        facts.project_id = row.project_id
        if row.project_id:
            facts.pm_ids = frozenset({row.project.project_manager_id} - {None})
        else:
            facts.pm_ids = frozenset(contract_pms.get(row.contract_id, ()))
    elif isinstance(row, ChangeOrder):
        facts.amount, facts.currency = row.cap_delta, contract.currency
        facts.pm_ids = frozenset(contract_pms.get(row.contract_id, ()))
        if contract.cap is not None:
            current_cap = contract.cap + (approved_deltas.get(contract.pk) or Decimal("0"))
            if current_cap > 0:
                facts.cap_growth_pct = row.cap_delta / current_cap * HUNDRED
            elif row.cap_delta > 0:
                facts.cap_growth_pct = Decimal("Infinity")
            else:
                facts.cap_growth_pct = Decimal("0")
    else:
        facts.project_id = row.project_id
        facts.pm_ids = frozenset({row.project.project_manager_id} - {None})
        if isinstance(row, Expense):
            facts.amount, facts.currency = row.amount, row.currency
        elif isinstance(row, Milestone):
            facts.amount, facts.currency = row.amount, contract.currency
    return facts


# --- the handlers -----------------------------------------------------------------------------------


class InvoiceHandler(SubjectHandler):
    """Invoices and credit notes (one model, two policy subject types)."""

    subject_type = SubjectType.INVOICE
    subject_types = tuple((t.value, t.label) for t in (SubjectType.INVOICE, SubjectType.CREDIT_NOTE))
    awaiting_status = Invoice.Status.PENDING_APPROVAL
    related = ("entity", "contract", "project")
    display_related = ("client", "contract")
    display_fields = ("kind", "number", "client__legal_name")
    facts_loader = staticmethod(collect_billing_facts)

    def type_of(self, subject: Any) -> str:
        return SubjectType.CREDIT_NOTE if subject.kind == Invoice.Kind.CREDIT_NOTE else SubjectType.INVOICE

    def label(self, subject: Any) -> str:
        kind = "credit note" if subject.kind == Invoice.Kind.CREDIT_NOTE else "invoice"
        return f"{kind} {subject.display_number}"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.prepared_by_id

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        from billing.services.invoices import invoice_approve

        invoice_approve(invoice=subject, user=user, comment=comment)

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        from billing.services.invoices import invoice_reject

        invoice_reject(invoice=subject, user=user, reason=reason)
        return True


class WorkHandler(SubjectHandler):
    """Time entries and expenses: the person's own work, approved by the project's PM."""

    awaiting_status = TimeEntry.Status.SUBMITTED
    related = ("person", "project", "project__contract", "project__contract__entity")
    display_related = ("person", "project")
    facts_loader = staticmethod(collect_billing_facts)

    def __init__(self, subject_type: str, noun: str) -> None:
        self.subject_type = subject_type
        self.noun = noun
        shown = ("hours", "billable") if subject_type == SubjectType.TIME_ENTRY else ("category",)
        self.display_fields = ("date", "description", "person__name", *shown)

    def label(self, subject: Any) -> str:
        return f"{self.noun} {subject.pk}"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.person.user_id

    def preparer_phrase(self, subject: Any, *, name: str | None) -> str:
        whose = f"{name}'s" if name else "your"
        return f"{self.label(subject).capitalize()} is {whose} own work"

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        from billing.services.work import work_approve

        work_approve(item=subject, user=user)

    def loaded_project_manager(self, subject: Any) -> tuple[int, int | None] | None:
        if subject.project_id and type(subject).project.is_cached(subject):
            return subject.project_id, subject.project.project_manager_id
        return None

    def apply_approved_many(
        self, subjects: Sequence[Any], *, user: Any, comment: str, roles: frozenset[str] | None = None
    ) -> None:
        from billing.services.work import work_apply_approved_many

        work_apply_approved_many(items=subjects, user=user, roles=roles)

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        from billing.services.work import work_reject

        work_reject(item=subject, user=user, reason=reason)
        return True


class MilestoneHandler(SubjectHandler):
    subject_type = SubjectType.MILESTONE
    awaiting_status = Milestone.Status.COMPLETED
    related = ("project", "project__contract", "project__contract__entity")
    display_related = ("project",)
    display_fields = ("name", "evidence")
    facts_loader = staticmethod(collect_billing_facts)

    def label(self, subject: Any) -> str:
        return f"milestone '{subject.name}'"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.completed_by_id

    def preparer_phrase(self, subject: Any, *, name: str | None) -> str:
        return f"{name or 'You'} marked {self.label(subject)} completed"

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        from billing.services.milestones import milestone_approve

        milestone_approve(milestone=subject, user=user)

    # Milestone has no reject transition (completed → approved only): it stays completed, the
    # rejection and its reason live on the request; a new request can be opened later.


class ChangeOrderHandler(SubjectHandler):
    subject_type = SubjectType.CHANGE_ORDER
    awaiting_status = ChangeOrder.Status.SUBMITTED
    related = ("contract", "contract__entity")
    display_related = ("contract",)
    display_fields = ("code", "description", "contract__code")
    facts_loader = staticmethod(collect_billing_facts)

    def label(self, subject: Any) -> str:
        return f"change order {subject.code}"

    def preparer_id(self, subject: Any) -> int | None:
        return subject.submitted_by_id

    def preparer_phrase(self, subject: Any, *, name: str | None) -> str:
        return f"{name or 'You'} submitted {self.label(subject)}"

    def apply_approved(self, subject: Any, *, user: Any, comment: str) -> None:
        from billing.services.change_orders import change_order_approve

        change_order_approve(change_order=subject, user=user, reason=comment)

    def apply_rejected(self, subject: Any, *, user: Any, reason: str) -> bool:
        from billing.services.change_orders import change_order_reject

        change_order_reject(change_order=subject, user=user, reason=reason)
        return True


class BillingProjectManagers(ProjectManagers):
    """The engine's "project manager" steps: the manager of the request's project, else of its contract's."""

    def of_project(self, project_id: int) -> int | None:
        return Project.objects.filter(pk=project_id).values_list("project_manager_id", flat=True).first()

    def of_projects(self, project_ids: Sequence[int] | set[int]) -> dict[int, int | None]:
        return dict(Project.objects.filter(pk__in=project_ids).values_list("pk", "project_manager_id"))

    def of_contracts(self, contract_ids: Sequence[int] | set[int]) -> dict[int, set[int]]:
        found: dict[int, set[int]] = defaultdict(set)
        for contract_id, pm_id in Project.objects.filter(
            contract_id__in=contract_ids, project_manager__isnull=False
        ).values_list("contract_id", "project_manager_id"):
            found[contract_id].add(pm_id)
        return found

    def manages_contract(self, principal_id: int) -> Exists:
        return Exists(Project.objects.filter(contract_id=OuterRef("contract_id"), project_manager_id=principal_id))


def register_billing_subjects() -> None:
    """Register billing with the engine (from `BillingConfig.ready()`): its approvable models, who
    manages a project or contract, and its reminders (sent by the engine's scheduled tasks)."""
    from billing.services.reminders import exception_digest_send, timesheet_reminders_send

    register_project_managers(BillingProjectManagers())
    register_reminder(Reminder.Kind.MISSING_TIME, timesheet_reminders_send)
    register_reminder(Reminder.Kind.EXCEPTION_DIGEST, exception_digest_send)
    register_condition_choices("billing_model", Contract.BillingModel.choices)
    # In this order the subject types are offered (policies, the queue's filter).
    register_subject(Invoice, InvoiceHandler())
    register_subject(Milestone, MilestoneHandler())
    register_subject(ChangeOrder, ChangeOrderHandler())
    register_subject(TimeEntry, WorkHandler(SubjectType.TIME_ENTRY, "time entry"))
    register_subject(Expense, WorkHandler(SubjectType.EXPENSE, "expense"))
