"""Approval use cases (docs/rules/approvals.md): one engine for every approvable subject.

- `policies`: which policy routes a subject (`approval_policy_for`).
- `requests`: open one or many requests, decide a step (SoD, delegation, races),
  cancel, escalate.
- `delegations`: out-of-office delegation (eligible delegates only: `eligibility`).
- `overrides`: four-eyes override of a pending route (request, confirm, withdraw).
- `reminders`: SLA escalation e-mails and the reminder mail other apps' reminders use
  (billing's missing-time reminder and exception digest: `billing.services.reminders`).
"""

from approvals.services.delegations import delegation_create, delegation_end
from approvals.services.overrides import (
    approval_override_confirm,
    approval_override_request,
    approval_override_withdraw,
)
from approvals.services.policies import approval_policy_for
from approvals.services.reminders import approvals_escalate_overdue, reminder_send
from approvals.services.requests import (
    approval_approve,
    approval_decide,
    approval_decide_bulk,
    approval_reject,
    approval_request_cancel,
    approval_request_escalate,
    approval_request_open,
    approval_requests_cancel_for,
    approval_requests_decide_selected,
    approval_requests_open_bulk,
    check_decider,
)

__all__ = [
    "approval_approve",
    "approval_decide",
    "approval_decide_bulk",
    "approval_override_confirm",
    "approval_override_request",
    "approval_override_withdraw",
    "approval_policy_for",
    "approval_reject",
    "approval_request_cancel",
    "approval_request_escalate",
    "approval_request_open",
    "approval_requests_cancel_for",
    "approval_requests_decide_selected",
    "approval_requests_open_bulk",
    "approvals_escalate_overdue",
    "check_decider",
    "delegation_create",
    "delegation_end",
    "reminder_send",
]
