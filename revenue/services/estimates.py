"""Estimates at completion (EAC) of fixed-fee contracts: PMs propose, finance approves (docs/rules/revenue.md).

An estimate is dated (`as_of`) and kept with its history; the latest approved estimate dated on or
before a month end is the one that month's percent complete uses. Approval goes through the
approval engine (policy "Estimate at completion"); whoever proposed an estimate never approves it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import Contract
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.roles import is_finance
from kernel.workflow import apply_transition, full_clean_or_raise, lock_for_update, require_reason
from revenue.models import Estimate


def _may_propose(user: Any, contract: Contract) -> bool:
    return is_finance(user) or contract.projects.filter(project_manager=user).exists()


@transaction.atomic
def estimate_propose(*, contract: Contract, hours: Decimal, as_of: date, user: Any, note: str = "") -> Estimate:
    """A PM of the contract (or finance) proposes an estimate in hours; it is routed for approval."""
    from approvals.services import approval_request_open

    if contract.billing_model != Contract.BillingModel.FIXED_FEE:
        raise ApplicationError("Only fixed-fee contracts have an estimate at completion.", code="not_fixed_fee")
    if not _may_propose(user, contract):
        raise PermissionDeniedError("Only a PM of the contract's projects or finance proposes an estimate.")
    estimate = Estimate(contract=contract, hours=hours, as_of=as_of, note=note, proposed_by=user)
    full_clean_or_raise(estimate, exclude=["proposed_by", "decided_by"])
    save_audited(estimate, user=user, reason=f"Estimate proposed: {hours} h from {as_of}")
    approval_request_open(subject=estimate, user=user)
    return estimate


def estimate_approve(*, estimate: Estimate, user: Any, comment: str = "") -> Estimate:
    """Applied by the approval engine when the route is approved (inside its transaction)."""
    locked = lock_for_update(estimate)
    if locked.proposed_by_id and getattr(user, "pk", None) == locked.proposed_by_id:
        raise PermissionDeniedError("Whoever proposed an estimate does not approve it.")
    apply_transition(locked, "approve", user=user, reason=comment or "Estimate approved", label=str(locked))
    locked.decided_by, locked.decided_at, locked.decision_reason = user, timezone.now(), comment
    save_audited(locked, user=user, reason="Estimate approved")
    return locked


def estimate_reject(*, estimate: Estimate, user: Any, reason: str) -> Estimate:
    """Applied by the approval engine when the route is rejected (a reason is required)."""
    reason = require_reason(reason, "reject an estimate")
    locked = lock_for_update(estimate)
    apply_transition(locked, "reject", user=user, reason=reason, label=str(locked))
    locked.decided_by, locked.decided_at, locked.decision_reason = user, timezone.now(), reason
    save_audited(locked, user=user, reason=f"Estimate rejected: {reason}")
    return locked
