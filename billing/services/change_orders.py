"""Change orders: submit, approve (which applies the amendment), reject.

Approval writes the amendment in the same transaction: each ChangeOrderRate
becomes an effective-dated ContractRate pointing at the change order, each
ChangeOrderMilestone a planned Milestone. The cap delta is not written into
`contract.cap`: the billing engine sums approved deltas, so the contract's own
cap stays what was signed and every increase keeps its provenance.

Approvals go through the engine (see `billing.services.work` for the routing):
submitting opens the change order's approval request; approving or rejecting
records the decision through it when there is one (a cap growth over 20 %
needs a PM and then a controller under the default policies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from billing import rules as billing_rules
from billing.models import ChangeOrder, Contract, ContractRate, Milestone
from billing.services.audit import save_audited
from billing.services.work import (
    Route,
    apply_transition,
    lock_for_update,
    open_approval,
    refresh_caller,
    require_reason,
    route_decision,
)
from portal.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError

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
    foreign = [
        m.project.code
        for m in change_order.milestones.select_related("project")
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
        route, _request = route_decision(locked, user=user, decision="approve", comment=reason)
        if route == Route.ENGINE:
            locked.refresh_from_db()
        else:
            _approve_locked(locked, user, reason)
    refresh_caller(change_order, locked)
    return locked


def _approve_locked(locked: ChangeOrder, user: User, reason: str) -> None:
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
