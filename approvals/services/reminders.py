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
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStep, Reminder
from approvals.registry import subject_label
from approvals.services.requests import approval_request_escalate
from approvals.services.routing import delegates_of
from approvals.services.subjects import subject_prefetch
from billing.models import Invoice, InvoiceException, Person, Project, TimeEntry
from kernel.periods import previous_month
from kernel.roles import FINANCE_ANALYST

logger = logging.getLogger(__name__)

Kind = Reminder.Kind
HOURS_PER_DAY = Decimal("8")
EXPECTED_SHARE = Decimal("0.8")


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
    """Escalate requests past their step's SLA, and remind approvers and the escalation role daily.

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
    contract_pms: dict[int, set[int]] = defaultdict(set)
    for contract_id, pm_id in Project.objects.filter(
        contract_id__in={r.contract_id for r in overdue if not r.project_id and r.contract_id},
        project_manager__isnull=False,
    ).values_list("contract_id", "project_manager_id"):
        contract_pms[contract_id].add(pm_id)
    role_names = {s.role for s in steps.values() if s.approver_kind == ApprovalStep.ApproverKind.ROLE}
    role_names |= {s.escalation_role for s in steps.values() if s.escalation_role}
    members = _role_members(role_names)

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
    delegates = delegates_of(set().union(*designated_by_request.values()), today=today)

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
        approvers |= {d for a in approvers for d in delegates.get(a, ())}
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
    return {"escalated": escalated, "overdue": len(overdue), "emails": emails}


# --- missing time -----------------------------------------------------------------------------------


def working_days(start: date, end: date) -> int:
    """Monday to Friday in [start, end] (public holidays are not modelled)."""
    days = (end - start).days + 1
    return sum(1 for offset in range(days) if (start + timedelta(days=offset)).weekday() < 5)


def timesheet_cutoff(period_end: date) -> date:
    """Time of a month is late from this day on (as the billing engine's LATE_TIME reads it)."""
    return period_end + timedelta(days=1 + getattr(settings, "BILLING_TIMESHEET_CUTOFF_DAYS", 2))


def timesheet_reminders_send(*, today: date | None = None) -> dict[str, Any]:
    """After last month's cut-off, remind people whose time is unsubmitted or short.

    Short: submitted (or approved, invoiced) hours below 80 % of working days × 8 h.
    Unsubmitted: any draft or rejected entry of the month.
    """
    today = today or timezone.localdate()
    start, end = previous_month(today)
    cutoff = timesheet_cutoff(end)
    if today < cutoff:
        return {"period": f"{start:%Y-%m}", "skipped": f"before the cut-off ({cutoff})", "emails": 0}
    expected = working_days(start, end) * HOURS_PER_DAY * EXPECTED_SHARE
    done = [TimeEntry.Status.SUBMITTED, TimeEntry.Status.APPROVED, TimeEntry.Status.INVOICED]
    open_ = [TimeEntry.Status.DRAFT, TimeEntry.Status.REJECTED]
    people = list(
        Person.objects.filter(active=True, user__isnull=False, user__is_active=True)
        .select_related("user")
        .order_by("pk")
    )
    totals = {
        row["person_id"]: row
        for row in TimeEntry.objects.filter(date__gte=start, date__lte=end, person__in=people)
        .values("person_id")
        .annotate(
            submitted=Sum("hours", filter=Q(status__in=done)),
            unsubmitted=Count("id", filter=Q(status__in=open_)),
            unsubmitted_hours=Sum("hours", filter=Q(status__in=open_)),
        )
    }
    key = f"timesheet:{start:%Y-%m}"
    emails = reminded = 0
    for person in people:
        row = totals.get(person.pk, {})
        # Hours print with their two places (`:.2f`): a sum comes back as 80.00 from PostgreSQL, 80 from SQLite.
        submitted = row.get("submitted") or Decimal("0")
        unsubmitted = row.get("unsubmitted") or 0
        if not unsubmitted and submitted >= expected:
            continue
        reminded += 1
        lines = []
        if unsubmitted:
            lines.append(
                f"- {unsubmitted} entr{'y' if unsubmitted == 1 else 'ies'} "
                f"({Decimal(row.get('unsubmitted_hours') or 0):.2f} h) still in draft or rejected: "
                "correct and submit them."
            )
        if submitted < expected:
            lines.append(
                f"- {submitted:.2f} h submitted; about {expected.quantize(Decimal('1'))} h are expected "
                f"for {working_days(start, end)} working days."
            )
        emails += reminder_send(
            kind=Kind.MISSING_TIME,
            recipient=person.user,
            email=person.user.email or person.email,
            items=[(key, "\n".join(lines))],
            subject=f"Your timesheet for {start:%B %Y} is incomplete",
            intro=f"Hello {person.name}, the cut-off for {start:%B %Y} was {cutoff}. Please complete your time:",
            today=today,
        )
    return {"period": f"{start:%Y-%m}", "reminded": reminded, "emails": emails}


# --- weekly exception digest -----------------------------------------------------------------------


def exception_digest_send(*, today: date | None = None) -> dict[str, Any]:
    """E-mail finance analysts the exception backlog: invoices in `exception` by open code."""
    today = today or timezone.localdate()
    rows = list(
        InvoiceException.objects.filter(invoice__status=Invoice.Status.EXCEPTION, state=InvoiceException.State.OPEN)
        .values("code")
        .annotate(invoices=Count("invoice", distinct=True), oldest=Min("invoice__created_at"))
        .order_by("-invoices", "code")
    )
    total = Invoice.objects.filter(status=Invoice.Status.EXCEPTION).count()
    lines = [f"Invoices in exception: {total}"]
    for row in rows:
        age = (today - timezone.localdate(row["oldest"])).days if row["oldest"] else 0
        lines.append(f"- {row['code']}: {row['invoices']} invoice(s), oldest {age} day(s)")
    if not rows:
        lines.append("- No open exceptions.")
    year, week, _ = today.isocalendar()
    key = f"exception-digest:{year}-W{week:02d}"
    recipients = (
        get_user_model()
        .objects.filter(groups__name=FINANCE_ANALYST, is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    emails = 0
    for recipient in recipients:
        emails += reminder_send(
            kind=Kind.EXCEPTION_DIGEST,
            recipient=recipient,
            items=[(key, "\n".join(lines))],
            subject=f"Exception backlog, week {week} of {year}: {total} invoice(s)",
            intro="The exception queue this week:",
            today=today,
        )
    return {"invoices": total, "codes": {row["code"]: row["invoices"] for row in rows}, "emails": emails}
