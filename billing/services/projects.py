"""Project lifecycle: planned → active ⇄ on_hold, active → completed → closed.

Only active projects take new work; active and completed ones are billable.
Closing is final, so it is refused while work is still waiting to be approved
or billed (that would be revenue leakage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from billing import rules as billing_rules
from billing.models import Contract, Expense, Milestone, Project, TimeEntry
from billing.models.work import WorkStatus
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.workflow import apply_transition, lock_for_update, refresh_caller

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

UNFINISHED_WORK = (WorkStatus.SUBMITTED, WorkStatus.APPROVED)


def _transition(project: Project, transition: str, *, user: User, reason: str, audit_reason: str) -> Project:
    with transaction.atomic():
        locked = lock_for_update(project, "contract")
        if not billing_rules.can_manage_project.test(user, locked):
            raise PermissionDeniedError(
                f"Only the manager of project {locked.code}, a billing admin or a finance controller can "
                "change its status."
            )
        if transition == "activate" and locked.contract.status != Contract.Status.ACTIVE:
            raise ApplicationError(
                f"Contract {locked.contract.code} is {locked.contract.get_status_display().lower()}; "
                "activate it before its projects.",
                code="contract_not_active",
            )
        if transition == "close":
            _check_nothing_left_to_bill(locked)
        reason = (reason or "").strip()
        apply_transition(locked, transition, user=user, reason=reason, label=f"project {locked.code}")
        save_audited(locked, user=user, reason=reason or audit_reason)
    refresh_caller(project, locked)
    return locked


def _check_nothing_left_to_bill(project: Project) -> None:
    pending = {
        "time entries": TimeEntry.objects.filter(project=project, billable=True, status__in=UNFINISHED_WORK).count(),
        "expenses": Expense.objects.filter(project=project, billable=True, status__in=UNFINISHED_WORK).count(),
    }
    if project.contract.billing_model == Contract.BillingModel.FIXED_FEE:
        pending["milestones"] = Milestone.objects.filter(
            project=project, status__in=[Milestone.Status.COMPLETED, Milestone.Status.APPROVED]
        ).count()
    open_items = [f"{count} {what}" for what, count in pending.items() if count]
    if open_items:
        raise ApplicationError(
            f"Project {project.code} still has billable work awaiting approval or invoicing "
            f"({', '.join(open_items)}); bill or resolve it before closing.",
            code="unbilled_work",
        )


def project_activate(*, project: Project, user: User, reason: str = "") -> Project:
    """Start (or resume after a hold) a project so it takes time and expenses."""
    return _transition(project, "activate", user=user, reason=reason, audit_reason="Activated")


def project_hold(*, project: Project, user: User, reason: str = "") -> Project:
    """Pause a project: no new work is booked until it is activated again."""
    return _transition(project, "hold", user=user, reason=reason, audit_reason="Put on hold")


def project_complete(*, project: Project, user: User, reason: str = "") -> Project:
    """Delivery is done: no new work, but what was delivered is still billed."""
    return _transition(project, "complete", user=user, reason=reason, audit_reason="Completed")


def project_close(*, project: Project, user: User, reason: str = "") -> Project:
    """Close a completed project once nothing is left to approve or bill."""
    return _transition(project, "close", user=user, reason=reason, audit_reason="Closed")
