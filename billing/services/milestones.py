"""Milestones: the PM marks one completed, someone else approves it for billing.

Segregation of duties (docs/rules/approvals.md): the person who marked a milestone completed
cannot approve it, so a PM's own milestone needs a finance controller (or a
co-managing PM) to approve.

Approvals go through the engine (see `billing.services.work` for the routing):
completing opens the milestone's approval request; `milestone_approve` records
the decision through the request when there is one. A milestone has no way
back from `completed`: an engine rejection leaves it completed with the reason
on the rejected request, and `milestone_resubmit` routes it again once the PM
has dealt with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from billing import rules as billing_rules
from billing import signatures
from billing.models import Milestone, Project
from billing.services.work import Route, open_approval, route_decision
from kernel.audit import save_audited
from kernel.errors import (
    ApplicationError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from kernel.workflow import apply_transition, lock_for_update, refresh_caller

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any


def _label(milestone: Milestone) -> str:
    return f"milestone '{milestone.name}' of {milestone.project.code}"


def milestone_complete(*, milestone: Milestone, user: User, evidence: str = "") -> Milestone:
    """The project's manager declares the milestone delivered, with what proves it."""
    with transaction.atomic():
        locked = lock_for_update(milestone, "project")
        if not billing_rules.can_complete_milestone.test(user, locked):
            raise PermissionDeniedError(
                f"Only the manager of project {locked.project.code} can mark its milestones completed."
            )
        if not locked.project.is_billable:
            raise ApplicationError(
                f"Project {locked.project.code} is {locked.project.get_status_display().lower()}; "
                "milestones can be completed on active or completed projects only.",
                code="project_not_active",
            )
        reason = evidence.strip() or "Completed"
        apply_transition(locked, "complete", user=user, reason=reason, label=_label(locked))
        locked.completed_by = user
        locked.completed_at = timezone.now()
        if evidence.strip():
            locked.evidence = evidence.strip()
        save_audited(locked, user=user, reason="Completed")
        open_approval(locked, user=user)
    refresh_caller(milestone, locked)
    return locked


def _check_signed_off(milestone: Milestone) -> None:
    """A contract that requires customer sign-off: the milestone is not billable before it (ADR 0096)."""
    if milestone.project.contract.requires_customer_signoff and not signatures.is_signed(
        signatures.MILESTONE, milestone
    ):
        raise ApplicationError(
            f"Contract {milestone.project.contract.code} requires the client's sign-off: {_label(milestone)} "
            "has not been signed off in the customer portal yet.",
            code="milestone_not_signed_off",
        )


def milestone_approve(*, milestone: Milestone, user: User) -> Milestone:
    """Approve a completed milestone for billing: PM or finance controller, not its completer.

    With a pending approval request the engine decides (and calls back here to apply it).
    """
    with transaction.atomic():
        locked = lock_for_update(milestone, "project")
        if locked.status == Milestone.Status.COMPLETED:
            _check_signed_off(locked)
        route, _request = route_decision(locked, user=user, decision="approve")
        if route == Route.ENGINE:
            locked.refresh_from_db()
        else:
            _approve_locked(locked, user)
    refresh_caller(milestone, locked)
    return locked


def _approve_locked(locked: Milestone, user: User) -> None:
    if billing_rules.completed_milestone.test(user, locked):
        raise SegregationOfDutiesError(f"You marked {_label(locked)} completed, so someone else must approve it.")
    if not (billing_rules.is_project_manager_of.test(user, locked) or billing_rules.is_finance_controller.test(user)):
        raise PermissionDeniedError(
            f"Only the manager of project {locked.project.code} or a finance controller can approve its milestones."
        )
    if locked.project.status == Project.Status.CLOSED:
        raise ApplicationError(f"Project {locked.project.code} is closed.", code="project_closed")
    _check_signed_off(locked)
    apply_transition(locked, "approve", user=user, label=_label(locked))
    locked.approved_by = user
    locked.approved_at = timezone.now()
    save_audited(locked, user=user, reason="Approved")


def milestone_resubmit(*, milestone: Milestone, user: User, evidence: str = "") -> Milestone:
    """Route a completed milestone whose approval was rejected for approval again, with updated evidence.

    Only the project's manager resubmits; the milestone stays completed (it has no
    way back), a new approval request is opened.
    """
    from django.contrib.contenttypes.models import ContentType

    from approvals.models import ApprovalRequest

    with transaction.atomic():
        locked = lock_for_update(milestone, "project")
        if not billing_rules.can_complete_milestone.test(user, locked):
            raise PermissionDeniedError(
                f"Only the manager of project {locked.project.code} can resubmit its milestones."
            )
        if locked.status != Milestone.Status.COMPLETED:
            raise InvalidTransitionError(
                f"Cannot resubmit {_label(locked)}: it is {locked.get_status_display().lower()}."
            )
        if ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(Milestone),
            object_id=locked.pk,
            status=ApprovalRequest.Status.PENDING,
        ).exists():
            raise InvalidTransitionError(f"{_label(locked).capitalize()} is already awaiting approval.")
        if evidence.strip():
            locked.evidence = evidence.strip()
            save_audited(locked, user=user, reason="Evidence updated for resubmission")
        open_approval(locked, user=user)
    refresh_caller(milestone, locked)
    return locked
