"""Change orders: submit, approve (which applies the amendment), reject.

Approval writes the amendment in the same transaction: each ChangeOrderRate
becomes an effective-dated ContractRate pointing at the change order, each
ChangeOrderMilestone a planned Milestone. The cap delta is not written into
`contract.cap`: the billing engine sums approved deltas, so the contract's own
cap stays what was signed and every increase keeps its provenance.

The other terms a change order may carry (a cap on a contract without one, payment
terms, PO number, billing frequency) are written on the contract on approval, under
`contract_terms_unlocked`: it is the one way the terms of a live contract change
(docs/rules/approvals.md; the models and PostgreSQL triggers refuse any other write).

Approvals go through the engine (see `billing.services.work` for the routing):
submitting opens the change order's approval request; approving or rejecting
records the decision through it when there is one (a cap growth over 20 %
needs a PM and then a controller under the default policies).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from billing import rules as billing_rules
from billing import signatures
from billing.models import (
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Contract,
    ContractRate,
    Milestone,
    Role,
)
from billing.models.contracts import contract_terms_unlocked
from billing.services.work import Route, open_approval, route_decision
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError
from kernel.workflow import apply_transition, lock_for_update, refresh_caller, require_reason

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any


def _label(change_order: ChangeOrder) -> str:
    return f"change order {change_order.contract.code}/{change_order.code}"


def _check_amendable(change_order: ChangeOrder) -> None:
    """A closed contract takes no amendments; added milestones must be on the contract's own projects."""
    contract = change_order.contract
    if contract.status == Contract.Status.CLOSED:
        raise ApplicationError(f"Contract {contract.code} is closed and cannot be amended.", code="contract_closed")
    terms = change_order.term_changes()
    if terms.get("billing_frequency") == Contract.Frequency.ON_MILESTONE and (
        contract.billing_model != Contract.BillingModel.FIXED_FEE
    ):
        raise ApplicationError(
            f"{_label(change_order).capitalize()} bills on milestones, but contract {contract.code} is not fixed fee.",
            code="invalid_change_order",
            field_errors={"new_billing_frequency": ["On milestone is for fixed-fee contracts only."]},
        )
    if "purchase_order" in terms and terms["purchase_order"].client_id != contract.client_id:
        raise ApplicationError(
            f"PO {terms['purchase_order'].number} belongs to another client than contract {contract.code}.",
            code="invalid_change_order",
            field_errors={"new_purchase_order": ["A contract's PO must belong to its client."]},
        )
    if "cap" in terms and contract.cap is not None:
        raise ApplicationError(
            f"Contract {contract.code} already has a cap of {contract.cap}; {_label(change_order)} must change it "
            "with a cap delta, not set a new cap.",
            code="invalid_change_order",
            field_errors={"new_cap": ["The contract has a cap: use the cap delta."]},
        )
    foreign = [
        m.project.code
        for m in (change_order.milestones.select_related("project") if change_order.pk else [])
        if m.project.contract_id != contract.pk
    ]
    if foreign:
        raise ApplicationError(
            f"{_label(change_order).capitalize()} adds milestones to projects of another contract: "
            f"{', '.join(sorted(set(foreign)))}.",
            code="invalid_change_order",
        )


def change_order_submit(*, change_order: ChangeOrder, user: User) -> ChangeOrder:
    """Put a draft change order up for approval; until decided it blocks invoicing of the contract."""
    with transaction.atomic():
        locked = lock_for_update(change_order, "contract")
        if not billing_rules.can_submit_change_order.test(user, locked):
            raise PermissionDeniedError(
                f"Only a manager of one of contract {locked.contract.code}'s projects, a billing admin "
                "or finance can submit its change orders."
            )
        _check_amendable(locked)
        apply_transition(locked, "submit", user=user, label=_label(locked))
        locked.submitted_by = user
        locked.submitted_at = timezone.now()
        save_audited(locked, user=user, reason="Submitted for approval")
        open_approval(locked, user=user)
    refresh_caller(change_order, locked)
    return locked


def _check_decider(change_order: ChangeOrder, user: User) -> None:
    if not billing_rules.can_reject_change_order.test(user, change_order):
        raise PermissionDeniedError(
            f"Only a manager of one of contract {change_order.contract.code}'s projects or a finance "
            "controller can decide its change orders."
        )


def change_order_approve(*, change_order: ChangeOrder, user: User, reason: str = "") -> ChangeOrder:
    """Approve and apply the amendment (rates, milestones) atomically; the submitter cannot approve.

    With a pending approval request the engine decides; the amendment is applied
    when its last step is approved.
    """
    reason = (reason or "").strip()
    with transaction.atomic():
        locked = lock_for_update(change_order, "contract")
        if locked.status == ChangeOrder.Status.SUBMITTED:
            _check_signed(locked)
        route, _request = route_decision(locked, user=user, decision="approve", comment=reason)
        if route == Route.ENGINE:
            locked.refresh_from_db()
        else:
            _approve_locked(locked, user, reason)
    refresh_caller(change_order, locked)
    return locked


def _check_signed(change_order: ChangeOrder) -> None:
    """A contract that requires signed change orders: no approval before the client's signature (ADR 0096)."""
    if change_order.contract.requires_signed_change_orders and not signatures.is_signed(
        signatures.CHANGE_ORDER, change_order
    ):
        raise ApplicationError(
            f"Contract {change_order.contract.code} requires signed change orders: {_label(change_order)} is not "
            "signed by the client yet. Send it for signature (customer portal or e-signature) first.",
            code="change_order_unsigned",
        )


def _approve_locked(locked: ChangeOrder, user: User, reason: str) -> None:
    _check_signed(locked)
    if billing_rules.submitted_change_order.test(user, locked):
        raise SegregationOfDutiesError(f"You submitted {_label(locked)}, so someone else must approve it.")
    _check_decider(locked, user)
    _check_amendable(locked)
    apply_transition(locked, "approve", user=user, reason=reason, label=_label(locked))
    locked.decided_by = user
    locked.decided_at = timezone.now()
    locked.decision_reason = reason
    save_audited(locked, user=user, reason=reason or "Approved")

    applied = f"Applied by approved change order {locked.code}"
    with contract_terms_unlocked(applied):
        _apply_amendment(locked, user, applied)


def _apply_amendment(locked: ChangeOrder, user: User, applied: str) -> None:
    terms = locked.term_changes()
    if terms:
        contract = locked.contract
        for name, value in terms.items():
            setattr(contract, name, value)
        save_audited(contract, user=user, reason=f"{applied}: {', '.join(sorted(terms))}")
    for co_rate in locked.rates.order_by("pk"):
        contract_rate = ContractRate(
            contract=locked.contract,
            role_id=co_rate.role_id,
            person_id=co_rate.person_id,
            rate=co_rate.rate,
            effective_from=co_rate.effective_from,
            effective_to=co_rate.effective_to,
            change_order=locked,
        )
        save_audited(contract_rate, user=user, reason=applied)
    for co_milestone in locked.milestones.order_by("pk"):
        milestone = Milestone(
            project_id=co_milestone.project_id,
            name=co_milestone.name,
            amount=co_milestone.amount,
            due_date=co_milestone.due_date,
            change_order=locked,
        )
        save_audited(milestone, user=user, reason=applied)


def change_order_reject(*, change_order: ChangeOrder, user: User, reason: str) -> ChangeOrder:
    """Reject a submitted change order with the reason; nothing of it is applied (through its route)."""
    reason = require_reason(reason, "reject a change order")
    with transaction.atomic():
        locked = lock_for_update(change_order, "contract")
        route, _request = route_decision(locked, user=user, decision="reject", comment=reason)
        if route == Route.ENGINE:
            locked.refresh_from_db()
        else:
            _check_decider(locked, user)
            apply_transition(locked, "reject", user=user, reason=reason, label=_label(locked))
            locked.decided_by = user
            locked.decided_at = timezone.now()
            locked.decision_reason = reason
            save_audited(locked, user=user, reason=reason)
    refresh_caller(change_order, locked)
    return locked


@dataclass(frozen=True)
class RateChange:
    """A rate a drafted change order introduces for a role from a date."""

    role: Role
    rate: Decimal
    effective_from: date


def change_order_draft(
    *,
    contract: Contract,
    user: User,
    reason: str,
    description: str = "",
    code: str = "",
    cap_delta: Decimal = Decimal("0"),
    new_cap: Decimal | None = None,
    new_payment_terms_days: int | None = None,
    new_po_number: str = "",
    new_billing_frequency: str = "",
    new_purchase_order: Any = None,
    rates: list[RateChange] | tuple[RateChange, ...] = (),
) -> ChangeOrder:
    """Draft a change order of the contract's terms; it changes nothing until submitted and approved by another.

    Used where a term change is proposed for a live contract (an accepted SOW suggestion);
    the drafter may submit it, someone else decides it (segregation of duties).
    """
    reason = require_reason(reason, "draft a change order")
    with transaction.atomic():
        locked = Contract.objects.select_for_update().get(pk=contract.pk)
        probe = ChangeOrder(contract=locked)
        if not billing_rules.can_submit_change_order.test(user, probe):
            raise PermissionDeniedError(
                f"Only a manager of one of contract {locked.code}'s projects, a billing admin or finance can "
                "draft its change orders."
            )
        change_order = ChangeOrder(
            contract=locked,
            code=(code or _next_code(locked)).strip()[:40],
            description=(description or reason)[:2000],
            cap_delta=cap_delta,
            new_cap=new_cap,
            new_payment_terms_days=new_payment_terms_days,
            new_po_number=(new_po_number or "")[:60],
            new_billing_frequency=new_billing_frequency or "",
            new_purchase_order=new_purchase_order,
        )
        if not change_order.term_changes() and not rates and not cap_delta:
            raise ApplicationError("The change order changes nothing.", code="invalid_change_order")
        _check_amendable(change_order)
        save_audited(change_order, user=user, reason=f"Drafted: {reason}")
        for line in rates:
            ChangeOrderRate.objects.create(change_order=change_order, role=line.role, rate=line.rate,
                                           effective_from=line.effective_from)
    return change_order


@dataclass(frozen=True)
class RateTerm:
    """A role's new rate from a date, as the change order proposes it."""

    role_id: int
    rate: Decimal
    effective_from: date
    effective_to: date | None = None


@dataclass(frozen=True)
class MilestoneTerm:
    """A milestone the change order adds to one of the contract's projects."""

    project_id: int
    name: str
    amount: Decimal
    due_date: date | None = None


def _next_code(contract: Contract) -> str:
    """CO-01, CO-02 … per contract (the contract row is locked by the caller, the unique constraint backs it)."""
    taken = set(ChangeOrder.objects.filter(contract=contract).values_list("code", flat=True))
    n = len(taken) + 1
    while f"CO-{n:02d}" in taken:
        n += 1
    return f"CO-{n:02d}"


def change_order_draft_save(
    *,
    user: User,
    description: str,
    cap_delta: Decimal,
    rates: list[RateTerm],
    milestones: list[MilestoneTerm],
    contract: Contract | None = None,
    change_order: ChangeOrder | None = None,
    signed_on: date | None = None,
) -> ChangeOrder:
    """Raise a change order as a draft (`contract`), or rewrite a draft's terms (`change_order`).

    Who may raise one is who may submit it: a manager of one of the contract's projects,
    finance or a billing admin. A draft changes nothing yet; submitting puts it up for
    approval (and blocks invoicing of the contract until decided). Its terms (rates,
    milestones) are replaced as a whole, in one transaction, with the saved version in history.
    """
    description = (description or "").strip()
    if not description:
        raise ApplicationError("Say what the change order changes (a description).", code="reason_required")
    with transaction.atomic():
        if change_order is not None:
            locked = lock_for_update(change_order, "contract")
            if locked.status != ChangeOrder.Status.DRAFT:
                raise ApplicationError(
                    f"{_label(locked).capitalize()} is {locked.get_status_display().lower()}; only a draft can "
                    "be edited.",
                    code="invalid_state",
                )
            target = locked.contract
        else:
            if contract is None:
                raise ApplicationError("Choose the contract to amend.", code="invalid_change_order")
            target = Contract.objects.select_for_update().get(pk=contract.pk)
            locked = ChangeOrder(contract=target, code=_next_code(target))
        if not billing_rules.can_submit_change_order.test(user, target):
            raise PermissionDeniedError(
                f"Only a manager of one of contract {target.code}'s projects, a billing admin or finance can "
                "raise its change orders."
            )
        if target.status == Contract.Status.CLOSED:
            raise ApplicationError(f"Contract {target.code} is closed and cannot be amended.", code="contract_closed")
        own_projects = set(target.projects.values_list("pk", flat=True))
        if any(m.project_id not in own_projects for m in milestones):
            raise ApplicationError(
                f"Milestones must be on contract {target.code}'s own projects.", code="invalid_change_order"
            )
        locked.description = description
        locked.cap_delta = cap_delta
        locked.signed_on = signed_on
        created = locked.pk is None
        save_audited(locked, user=user, reason="Raised as a draft" if created else "Draft edited")
        locked.rates.all().delete()
        locked.milestones.all().delete()
        ChangeOrderRate.objects.bulk_create(
            ChangeOrderRate(
                change_order=locked, role_id=r.role_id, rate=r.rate, effective_from=r.effective_from,
                effective_to=r.effective_to,
            )
            for r in rates
        )
        ChangeOrderMilestone.objects.bulk_create(
            ChangeOrderMilestone(
                change_order=locked, project_id=m.project_id, name=m.name, amount=m.amount, due_date=m.due_date
            )
            for m in milestones
        )
    if change_order is not None:
        refresh_caller(change_order, locked)
    return locked
