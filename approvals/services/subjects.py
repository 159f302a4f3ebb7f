"""What the engine needs to know about an approvable subject, loaded in bulk.

Every approvable subject (invoice, credit note, milestone, change order, time
entry, expense) is reduced to `SubjectFacts`: its type, whether it is waiting for
approval, its amount in the entity's currency, its entity/client/contract/project,
open warnings, cap growth, who is barred by segregation of duties, and its PMs.
`collect_facts` loads them for any number of subjects in a bounded number of
queries, so a billing run can open thousands of requests at once.

The subject's own billing service applies the outcome (`apply_approval`,
`apply_rejection`); billing services are imported lazily so billing may import
this app without a cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q, Sum
from django.utils import timezone

from approvals.models import SubjectType
from billing.models import ChangeOrder, Expense, FxRate, Invoice, InvoiceException, Milestone, Project, TimeEntry
from kernel.errors import ApplicationError
from kernel.money import round_money

HUNDRED = Decimal("100")

#: The state each kind of subject is in while it waits for approval.
AWAITING_STATUS: dict[type[models.Model], str] = {
    Invoice: Invoice.Status.PENDING_APPROVAL,
    TimeEntry: TimeEntry.Status.SUBMITTED,
    Expense: Expense.Status.SUBMITTED,
    Milestone: Milestone.Status.COMPLETED,
    ChangeOrder: ChangeOrder.Status.SUBMITTED,
}

_RELATED: dict[type[models.Model], tuple[str, ...]] = {
    Invoice: ("entity", "contract", "project"),
    TimeEntry: ("person", "project", "project__contract", "project__contract__entity"),
    Expense: ("person", "project", "project__contract", "project__contract__entity"),
    Milestone: ("project", "project__contract", "project__contract__entity"),
    ChangeOrder: ("contract", "contract__entity"),
}

#: Querysets that make a subject's `__str__` free of extra queries (for queues and e-mails).
DISPLAY_QUERYSETS: dict[type[models.Model], tuple[str, ...]] = {
    Invoice: ("client", "contract"),
    TimeEntry: ("person", "project"),
    Expense: ("person", "project"),
    Milestone: ("project",),
    ChangeOrder: ("contract",),
}


@dataclass
class SubjectFacts:
    """A subject as the policy matcher and the router see it."""

    subject: Any
    subject_type: str
    awaiting: bool
    amount: Decimal | None = None
    currency: str = ""
    #: In the entity's currency; None with `amount_unconvertible` = no FX rate (highest band).
    entity_amount: Decimal | None = None
    amount_unconvertible: bool = False
    entity_id: int | None = None
    client_id: int | None = None
    contract_id: int | None = None
    project_id: int | None = None
    billing_model: str = ""
    warnings: frozenset[str] = frozenset()
    cap_growth_pct: Decimal | None = None
    prepared_by_id: int | None = None
    pm_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return subject_label(self.subject)


def is_awaiting(subject: Any) -> bool:
    """Whether the subject is in the state in which it waits for approval."""
    return AWAITING_STATUS.get(type(subject)) == subject.status


def subject_type_of(subject: Any) -> str:
    if isinstance(subject, Invoice):
        return SubjectType.CREDIT_NOTE if subject.kind == Invoice.Kind.CREDIT_NOTE else SubjectType.INVOICE
    for model, kind in (
        (TimeEntry, SubjectType.TIME_ENTRY),
        (Expense, SubjectType.EXPENSE),
        (Milestone, SubjectType.MILESTONE),
        (ChangeOrder, SubjectType.CHANGE_ORDER),
    ):
        if isinstance(subject, model):
            return kind
    raise ApplicationError(f"{type(subject).__name__} is not an approvable subject.", code="not_approvable")


def subject_label(subject: Any) -> str:
    """How messages name the subject: 'invoice DRAFT-12', 'time entry 5', 'change order C-1/CO-2'."""
    if isinstance(subject, Invoice):
        kind = "credit note" if subject.kind == Invoice.Kind.CREDIT_NOTE else "invoice"
        return f"{kind} {subject.display_number}"
    if isinstance(subject, TimeEntry):
        return f"time entry {subject.pk}"
    if isinstance(subject, Expense):
        return f"expense {subject.pk}"
    if isinstance(subject, Milestone):
        return f"milestone '{subject.name}'"
    if isinstance(subject, ChangeOrder):
        return f"change order {subject.code}"
    return str(subject)


def preparer_id(subject: Any) -> int | None:
    """Who may never approve the subject: preparer, owner, completer or submitter."""
    if isinstance(subject, Invoice):
        return subject.prepared_by_id
    if isinstance(subject, TimeEntry | Expense):
        return subject.person.user_id
    if isinstance(subject, Milestone):
        return subject.completed_by_id
    if isinstance(subject, ChangeOrder):
        return subject.submitted_by_id
    return None


def preparer_phrase(subject: Any, *, name: str | None = None) -> str:
    """The segregation-of-duties reason: 'You prepared invoice DRAFT-3' (no name) or 'Ann prepared …'."""
    who = name or "You"
    label = subject_label(subject)
    if isinstance(subject, TimeEntry | Expense):
        whose = f"{name}'s" if name else "your"
        return f"{label.capitalize()} is {whose} own work"
    if isinstance(subject, Milestone):
        return f"{who} marked {label} completed"
    if isinstance(subject, ChangeOrder):
        return f"{who} submitted {label}"
    return f"{who} prepared {label}"


def subject_model(content_type_id: int) -> type[models.Model]:
    from django.contrib.contenttypes.models import ContentType

    model = ContentType.objects.get_for_id(content_type_id).model_class()
    if model not in AWAITING_STATUS:
        raise ApplicationError(f"{model} is not an approvable subject.", code="not_approvable")
    return model


def lock_subject(model: type[models.Model], pk: int) -> Any:
    """Re-read a subject under a row lock (the same row its billing service locks)."""
    try:
        return model._default_manager.select_for_update(of=("self",)).select_related(*_RELATED[model]).get(pk=pk)
    except model.DoesNotExist as exc:
        raise ApplicationError(
            f"The {model._meta.verbose_name} {pk} of this approval no longer exists.", code="not_found"
        ) from exc


# --- bulk loading -------------------------------------------------------------------------------


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


def _reload(subjects: Sequence[Any]) -> list[Any]:
    """The subjects fresh from the database with what the facts need, one query per model."""
    by_model: dict[type[models.Model], list[int]] = defaultdict(list)
    for subject in subjects:
        model = type(subject)
        if model not in AWAITING_STATUS:
            subject_type_of(subject)  # raises the not-approvable error
        by_model[model].append(subject.pk)
    fresh: dict[tuple[type[models.Model], int], Any] = {}
    for model, pks in by_model.items():
        for row in model._default_manager.select_related(*_RELATED[model]).filter(pk__in=pks):
            fresh[(model, row.pk)] = row
    missing = [s for s in subjects if (type(s), s.pk) not in fresh]
    if missing:
        raise ApplicationError(f"Not found: {', '.join(subject_label(s) for s in missing[:10])}.", code="not_found")
    return [fresh[(type(s), s.pk)] for s in subjects]


def collect_facts(subjects: Sequence[Any], *, today: date | None = None) -> list[SubjectFacts]:
    """Facts of every subject, in order, in a bounded number of queries (≈ models + 4)."""
    if not subjects:
        return []
    today = today or timezone.localdate()
    rows = _reload(subjects)

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
        subject_type=subject_type_of(row),
        awaiting=row.status == AWAITING_STATUS[type(row)],
        entity_id=row.entity_id if isinstance(row, Invoice) else contract.entity_id,
        client_id=row.client_id if isinstance(row, Invoice) else contract.client_id,
        contract_id=contract.pk,
        billing_model=contract.billing_model,
        prepared_by_id=preparer_id(row),
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


# --- outcomes, through the subject's own service ----------------------------------------------------


_applying: ContextVar[tuple[type, int] | None] = ContextVar("approvals_applying", default=None)


@contextmanager
def _engine_applying(subject: Any) -> Iterator[None]:
    token = _applying.set((type(subject), subject.pk))
    try:
        yield
    finally:
        _applying.reset(token)


def engine_is_applying(subject: Any) -> bool:
    """True while the engine applies a settled request's outcome to `subject` (its service's callback)."""
    return _applying.get() == (type(subject), subject.pk)


def apply_approval(subject: Any, *, user: Any, comment: str = "") -> None:
    """Run the subject's approval effect (numbering, billing eligibility, amendment)."""
    with _engine_applying(subject):
        _apply_approval(subject, user=user, comment=comment)


def _apply_approval(subject: Any, *, user: Any, comment: str = "") -> None:
    if isinstance(subject, Invoice):
        from billing.services.invoices import invoice_approve

        invoice_approve(invoice=subject, user=user, comment=comment)
    elif isinstance(subject, TimeEntry | Expense):
        from billing.services.work import work_approve

        work_approve(item=subject, user=user)
    elif isinstance(subject, Milestone):
        from billing.services.milestones import milestone_approve

        milestone_approve(milestone=subject, user=user)
    elif isinstance(subject, ChangeOrder):
        from billing.services.change_orders import change_order_approve

        change_order_approve(change_order=subject, user=user, reason=comment)


def apply_rejection(subject: Any, *, user: Any, reason: str) -> bool:
    """Send the subject back with the reason; False when it has no way back (milestones)."""
    with _engine_applying(subject):
        return _apply_rejection(subject, user=user, reason=reason)


def _apply_rejection(subject: Any, *, user: Any, reason: str) -> bool:
    if isinstance(subject, Invoice):
        from billing.services.invoices import invoice_reject

        invoice_reject(invoice=subject, user=user, reason=reason)
    elif isinstance(subject, TimeEntry | Expense):
        from billing.services.work import work_reject

        work_reject(item=subject, user=user, reason=reason)
    elif isinstance(subject, ChangeOrder):
        from billing.services.change_orders import change_order_reject

        change_order_reject(change_order=subject, user=user, reason=reason)
    else:
        # Milestone has no reject transition (completed → approved only): it stays completed,
        # the rejection and its reason live on the request; a new request can be opened later.
        return False
    return True


def subject_prefetch(to_attr: str | None = None) -> Any:
    """Prefetch requests' subjects, one query per subject model, each ready for `str()`."""
    from django.contrib.contenttypes.prefetch import GenericPrefetch

    querysets = [model._default_manager.select_related(*related) for model, related in DISPLAY_QUERYSETS.items()]
    return GenericPrefetch("subject", querysets, to_attr=to_attr)
