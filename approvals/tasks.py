"""django-q2 entry points for approvals (scheduled by migration 0003); they only call services.

All are idempotent: a second run the same day escalates nothing twice and sends
no reminder twice (see `approvals.services.reminders`). The missing-time reminder and
the exception digest are billing's (`billing.services.reminders`), registered with
`approvals.registry.register_reminder`; their schedules keep these task names.
"""

from __future__ import annotations

from typing import Any

from approvals.models import Reminder
from approvals.registry import reminder_job
from approvals.services.reminders import approvals_escalate_overdue


def escalate_overdue() -> dict[str, Any]:
    """Daily 06:00 UTC: escalate approvals past their SLA; remind their approvers."""
    return approvals_escalate_overdue()


def remind_missing_time() -> dict[str, Any]:
    """Daily 06:00 UTC: after last month's cut-off, remind people with missing or unsubmitted time."""
    return reminder_job(Reminder.Kind.MISSING_TIME)()


def weekly_exception_digest() -> dict[str, Any]:
    """Mondays 07:00 UTC: the exception backlog by code, to finance analysts."""
    return reminder_job(Reminder.Kind.EXCEPTION_DIGEST)()
