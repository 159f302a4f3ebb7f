"""Reminders and escalation e-mails (run daily/weekly by `approvals.tasks`).

Each e-mail is recorded as `Reminder` rows — one per (kind, recipient, item,
day) under a unique constraint — before it is sent, after commit. A second run
the same day, or two runs at once, find the rows and send nothing again: at most
one reminder per item and day (a crash between commit and send loses one
reminder rather than sending two).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStep, Reminder
from approvals.registry import project_managers, subject_label
from approvals.services.eligibility import accepted_delegate_roles, delegate_refusal, service_account_ids
from approvals.services.requests import approval_request_escalate
from approvals.services.routing import delegates_of, user_roles_by_id
from approvals.services.subjects import subject_prefetch

logger = logging.getLogger(__name__)

Kind = Reminder.Kind


def reminder_send(
    *,
    kind: str,
    recipient: Any,
    items: Sequence[tuple[str, str]],
    subject: str,
    intro: str,
    today: date,
    email: str = "",
) -> bool:
    """E-mail `recipient` the `items` (key, line) not yet sent to them today; record each one.

    Returns False when there was nothing new to send (or no address to send to).
    """
    address = email or recipient.email
    if not address or not items:
        return False
    keys = [key for key, _ in items]
    with transaction.atomic():
        already = set(
            Reminder.objects.filter(kind=kind, recipient=recipient, sent_on=today, subject_key__in=keys).values_list(
                "subject_key", flat=True
            )
        )
        new_items = [(key, line) for key, line in items if key not in already]
        if not new_items:
            return False
        try:
            with transaction.atomic():
                Reminder.objects.bulk_create(
                    [Reminder(kind=kind, recipient=recipient, subject_key=key, sent_on=today) for key, _ in new_items]
                )
        except IntegrityError:
            return False  # a concurrent run recorded (and sends) them
        body = "\n".join([intro, "", *(line for _, line in new_items), "", "— Billable"])

        def send() -> None:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address])

        transaction.on_commit(send, robust=True)
    return True


# --- SLA: escalate and remind ----------------------------------------------------------------------


def _role_members(role_names: set[str]) -> dict[str, set[int]]:
    members: dict[str, set[int]] = defaultdict(set)
    if role_names:
        through = get_user_model().groups.through.objects
        for user_id, role in through.filter(group__name__in=role_names, user__is_active=True).values_list(
            "user_id", "group__name"
        ):
            members[role].add(user_id)
    return members


def approvals_escalate_overdue(*, now: datetime | None = None) -> dict[str, int]:
    """Escalate requests past their SLA, and remind approvers and the escalation role daily.

    Members of the step's escalation role get an escalation e-mail; the step's own
    approvers (and their delegates) an overdue reminder; each at most once a day per item.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    escalated = 0
    for request in ApprovalRequest.objects.filter(
        status=ApprovalRequest.Status.PENDING, sla_due_at__lt=now, escalated=False
    ).order_by("sla_due_at", "pk"):
        escalated += approval_request_escalate(request=request, now=now)

    overdue = list(
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING, sla_due_at__lt=now)
        .select_related("project")
        .prefetch_related(subject_prefetch(), "decisions")
        .order_by("sla_due_at", "pk")
    )
    if not overdue:
        return {"escalated": escalated, "overdue": 0, "emails": 0}
    steps = {
        (s.policy_id, s.order): s for s in ApprovalStep.objects.filter(policy_id__in={r.policy_id for r in overdue})
    }
    role_names = {s.role for s in steps.values() if s.approver_kind == ApprovalStep.ApproverKind.ROLE}
    role_names |= {s.escalation_role for s in steps.values() if s.escalation_role}
    members = _role_members(role_names)
    designated_by_request = _designated_approvers(overdue, steps, members)
    delegates = delegates_of(set().union(*designated_by_request.values()), today=today)
    outbox = _overdue_items(overdue, steps, members, designated_by_request, _DelegateCheck(delegates))
    emails = _send_overdue(outbox, today=today)
    return {"escalated": escalated, "overdue": len(overdue), "emails": emails}


Steps = dict[tuple[int, int], ApprovalStep]


def _designated_approvers(
    overdue: list[ApprovalRequest], steps: Steps, members: dict[str, set[int]]
) -> dict[int, set[int]]:
    """Request id → the users its open step names (role members, the user, or the PMs)."""
    contract_pms = project_managers().of_contracts(
        {r.contract_id for r in overdue if not r.project_id and r.contract_id}
    )
    designated_by_request: dict[int, set[int]] = {}
    for request in overdue:
        step = steps.get((request.policy_id, request.current_step))
        if step is None:
            continue
        if step.approver_kind == ApprovalStep.ApproverKind.ROLE:
            designated = set(members.get(step.role, ()))
        elif step.approver_kind == ApprovalStep.ApproverKind.USER:
            designated = {step.user_id}
        elif request.project_id:
            designated = {request.project.project_manager_id} - {None}
        else:
            designated = set(contract_pms.get(request.contract_id, ()))
        designated_by_request[request.pk] = designated
    return designated_by_request


class _DelegateCheck:
    """The delegates who could really decide a step for an approver, as `approval_decide` would check them.

    A delegate whose roles changed since the delegation (now an auditor, no approving role, a service
    user) or who lacks a role the step accepts would be refused at the decision: no reminder for them.
    """

    def __init__(self, delegates: dict[int, set[int]]):
        self.delegates = delegates
        delegate_ids = set().union(*delegates.values()) if delegates else set()
        self.roles = user_roles_by_id(delegate_ids | set(delegates))
        services = service_account_ids(delegate_ids)
        users = get_user_model().objects.in_bulk(delegate_ids)
        self.never = {
            uid
            for uid, user in users.items()
            if delegate_refusal(user, self.roles.get(uid, ()), is_service_account=uid in services)
        }

    def of(self, approver_id: int, step: ApprovalStep) -> set[int]:
        accepted = accepted_delegate_roles(step, principal_roles=self.roles.get(approver_id, ()))
        candidates = self.delegates.get(approver_id, set()) - self.never
        return {d for d in candidates if self.roles.get(d, set()) & accepted}


def _overdue_items(
    overdue: list[ApprovalRequest],
    steps: Steps,
    members: dict[str, set[int]],
    designated_by_request: dict[int, set[int]],
    delegates: _DelegateCheck,
) -> dict[tuple[int, str], list[tuple[str, str]]]:
    """(user id, reminder kind) → the (key, line) items to send: escalation role first, never to the barred."""
    outbox: dict[tuple[int, str], list[tuple[str, str]]] = defaultdict(list)
    for request in overdue:
        step = steps.get((request.policy_id, request.current_step))
        if step is None:
            continue
        barred = {request.prepared_by_id} | {
            uid for d in request.decisions.all() for uid in (d.approver_id, d.on_behalf_of_id)
        }
        escalation = set(members.get(step.escalation_role, ())) if step.escalation_role else set()
        approvers = set(designated_by_request[request.pk])
        approvers |= {d for a in approvers for d in delegates.of(a, step)}
        key = f"approval-request:{request.pk}:step:{step.order}"
        subject = request.subject
        line = (
            f"- {subject_label(subject) if subject else request}: step {step.order} ({step.approver_label}), "
            f"due {timezone.localtime(request.sla_due_at):%Y-%m-%d %H:%M}"
        )
        for user_id in escalation - barred:
            outbox[(user_id, Kind.SLA_ESCALATION)].append((key, line))
        for user_id in approvers - escalation - barred:
            outbox[(user_id, Kind.APPROVAL_OVERDUE)].append((key, line))
    return outbox


def _send_overdue(outbox: dict[tuple[int, str], list[tuple[str, str]]], *, today: date) -> int:
    users = get_user_model().objects.in_bulk({user_id for user_id, _ in outbox})
    emails = 0
    for (user_id, kind), items in sorted(outbox.items()):
        recipient = users.get(user_id)
        if recipient is None or not recipient.is_active:
            continue
        if kind == Kind.SLA_ESCALATION:
            subject_line = f"Escalated: {len(items)} approval(s) past their SLA"
            intro = "These approvals are past their SLA and escalated to you. You may decide them now:"
        else:
            subject_line = f"Reminder: {len(items)} approval(s) waiting for you are overdue"
            intro = "These approvals are waiting for your decision and are past their SLA:"
        emails += reminder_send(
            kind=kind, recipient=recipient, items=items, subject=subject_line, intro=intro, today=today
        )
    return emails
