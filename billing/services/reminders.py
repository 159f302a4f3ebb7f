"""Billing's reminders: missing time after a month's cut-off, and the weekly exception digest.

They go out through the approval engine's reminder mail (`approvals.services.reminders.reminder_send`:
one `Reminder` row per kind, recipient, item and day, so at most one e-mail per item and day), and
the engine's scheduled tasks (`approvals.tasks.remind_missing_time`, `weekly_exception_digest`) call
them through the reminder registry (`approvals.registry.register_reminder`, from
`BillingConfig.ready()`; ADR 0080).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from approvals.models import Reminder
from approvals.services.reminders import reminder_send
from billing.models import Invoice, InvoiceException, Person, TimeEntry
from billing.models.work import timesheet_cutoff
from kernel.periods import previous_month, working_days
from kernel.roles import FINANCE_ANALYST

Kind = Reminder.Kind
HOURS_PER_DAY = Decimal("8")
EXPECTED_SHARE = Decimal("0.8")


# --- missing time -----------------------------------------------------------------------------------


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
