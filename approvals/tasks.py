"""django-q2 entry points for approvals (scheduled by migration 0003); they only call services.

All are idempotent: a second run the same day escalates nothing twice and sends
no reminder twice (see `approvals.services.reminders`).
"""

from __future__ import annotations

from typing import Any

from approvals.services.reminders import approvals_escalate_overdue, exception_digest_send, timesheet_reminders_send


def escalate_overdue() -> dict[str, Any]:
    """Daily 06:00 UTC: escalate approvals past their SLA; remind their approvers."""
    return approvals_escalate_overdue()


def remind_missing_time() -> dict[str, Any]:
    """Daily 06:00 UTC: after last month's cut-off, remind people with missing or unsubmitted time."""
    return timesheet_reminders_send()


def weekly_exception_digest() -> dict[str, Any]:
    """Mondays 07:00 UTC: the exception backlog by code, to finance analysts."""
    return exception_digest_send()
