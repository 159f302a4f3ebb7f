"""Escalation and reminders: once a day per item, through Django's e-mail backend."""

from __future__ import annotations

import datetime
import importlib
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.utils.module_loading import import_string
from django_q.models import Schedule

from approvals import tasks
from approvals.models import Reminder
from approvals.services import approval_decide, approval_request_open, delegation_create
from kernel.periods import working_days
from tests.approvals.conftest import pending_invoice, submitted_time
from tests.factories import InvoiceExceptionFactory, InvoiceFactory, PersonFactory, TimeEntryFactory, UserFactory

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
T0 = datetime.datetime(2025, 4, 2, 9, 0, tzinfo=UTC)


def run(task, at, capture):
    with time_machine.travel(at, tick=False), capture(execute=True):
        return task()


def _to(mailoutbox, user):
    return [m for m in mailoutbox if m.to == [user.email]]


# --- SLA escalation --------------------------------------------------------------------------------


@pytest.fixture
def overdue_setup(preparer, analyst, controller):
    with time_machine.travel(T0, tick=False):
        request = approval_request_open(subject=pending_invoice("500.00", prepared_by=preparer))
    return request


def test_nothing_happens_before_the_sla(overdue_setup, mailoutbox, django_capture_on_commit_callbacks):
    result = run(tasks.escalate_overdue, T0 + datetime.timedelta(hours=23), django_capture_on_commit_callbacks)

    assert result == {"escalated": 0, "overdue": 0, "emails": 0}
    overdue_setup.refresh_from_db()
    assert not overdue_setup.escalated
    assert mailoutbox == []


def test_escalation_marks_the_request_and_emails_once_per_day(
    overdue_setup, preparer, analyst, controller, mailoutbox, django_capture_on_commit_callbacks
):
    request = overdue_setup
    day1 = T0 + datetime.timedelta(hours=25)

    result = run(tasks.escalate_overdue, day1, django_capture_on_commit_callbacks)

    assert result == {"escalated": 1, "overdue": 1, "emails": 2}
    request.refresh_from_db()
    assert request.escalated and request.escalation_reason == "sla" and request.escalated_at == day1
    [to_controller] = _to(mailoutbox, controller)
    assert to_controller.subject == "Escalated: 1 approval(s) past their SLA"
    assert f"invoice DRAFT-{request.object_id}: step 1 (Finance analyst)" in to_controller.body
    [to_analyst] = _to(mailoutbox, analyst)
    assert to_analyst.subject.startswith("Reminder: 1 approval(s) waiting for you")
    assert _to(mailoutbox, preparer) == []  # the preparer may not decide it: no reminder
    assert request.history.first().history_change_reason == "Escalated: step 1 past its SLA"

    # Again the same day: nothing new.
    again = run(tasks.escalate_overdue, day1 + datetime.timedelta(hours=2), django_capture_on_commit_callbacks)
    assert again == {"escalated": 0, "overdue": 1, "emails": 0}
    assert len(mailoutbox) == 2

    # Next day, still overdue: reminded again, escalated once.
    next_day = run(tasks.escalate_overdue, day1 + datetime.timedelta(days=1), django_capture_on_commit_callbacks)
    assert next_day == {"escalated": 0, "overdue": 1, "emails": 2}
    request.refresh_from_db()
    assert request.escalated_at == day1
    assert Reminder.objects.filter(recipient=controller, kind="sla_escalation").count() == 2
    assert set(Reminder.objects.values_list("sent_on", flat=True)) == {day1.date(), day1.date() + datetime.timedelta(1)}


def test_once_escalated_the_escalation_role_may_decide_the_step(
    overdue_setup, controller, django_capture_on_commit_callbacks
):
    run(tasks.escalate_overdue, T0 + datetime.timedelta(hours=25), django_capture_on_commit_callbacks)
    overdue_setup.refresh_from_db()

    with time_machine.travel(T0 + datetime.timedelta(hours=26), tick=False):
        approval_decide(request=overdue_setup, user=controller, decision="approve", comment="Escalated to me")

    assert overdue_setup.status == "approved"
    assert overdue_setup.subject.status == "posted"


def test_reminders_reach_the_delegate_of_an_approver(mailoutbox, django_capture_on_commit_callbacks):
    entry = submitted_time()
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["project_manager"])
    with time_machine.travel(T0, tick=False):
        delegation_create(
            delegator=pm, delegate=deputy, starts_on=T0.date(), ends_on=datetime.date(2025, 4, 30), user=pm
        )
        approval_request_open(subject=entry)

    run(tasks.escalate_overdue, T0 + datetime.timedelta(hours=73), django_capture_on_commit_callbacks)

    assert len(_to(mailoutbox, pm)) == 1 and len(_to(mailoutbox, deputy)) == 1
    assert f"time entry {entry.pk}: step 1 (Project manager)" in _to(mailoutbox, deputy)[0].body


def test_the_next_step_is_not_escalated_by_the_previous_steps_delay(analyst, django_capture_on_commit_callbacks):
    # A two-step invoice whose first step is decided late: the controller's step starts its own SLA.
    with time_machine.travel(T0, tick=False):
        request = approval_request_open(subject=pending_invoice("50000.00"))
    with time_machine.travel(T0 + datetime.timedelta(hours=30), tick=False):
        approval_decide(request=request, user=analyst, decision="approve")

    run(tasks.escalate_overdue, T0 + datetime.timedelta(hours=31), django_capture_on_commit_callbacks)

    request.refresh_from_db()
    assert not request.escalated


# --- missing time ----------------------------------------------------------------------------------


def _weekdays(count: int) -> list[datetime.date]:
    days, day = [], datetime.date(2025, 3, 3)
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += datetime.timedelta(days=1)
    return days


def test_march_2025_has_21_working_days():
    assert working_days(datetime.date(2025, 3, 1), datetime.date(2025, 3, 31)) == 21


@pytest.fixture
def timesheets():
    complete, short, unsubmitted = PersonFactory(), PersonFactory(), PersonFactory()
    PersonFactory(user=None)  # no login: nobody to remind
    idle = PersonFactory(active=False)
    for day in _weekdays(17):  # 136 h ≥ 80 % × 21 × 8 = 134.4 h
        TimeEntryFactory(person=complete, date=day, hours=Decimal("8"), status="approved")
        TimeEntryFactory(person=unsubmitted, date=day, hours=Decimal("8"), status="submitted")
    for day in _weekdays(10):
        TimeEntryFactory(person=short, date=day, hours=Decimal("8"), status="submitted")
    TimeEntryFactory(person=unsubmitted, date=datetime.date(2025, 3, 31), hours=Decimal("4"), status="draft")
    return {"complete": complete, "short": short, "unsubmitted": unsubmitted, "idle": idle}


def test_no_time_reminders_before_the_cut_off(timesheets, mailoutbox, django_capture_on_commit_callbacks):
    # Cut-off of March with BILLING_TIMESHEET_CUTOFF_DAYS=2: 3 April.
    result = run(
        tasks.remind_missing_time, datetime.datetime(2025, 4, 2, 6, tzinfo=UTC), django_capture_on_commit_callbacks
    )

    assert result["emails"] == 0 and "before the cut-off" in result["skipped"]
    assert mailoutbox == []


def test_time_reminders_after_the_cut_off_once_a_day(timesheets, mailoutbox, django_capture_on_commit_callbacks):
    at = datetime.datetime(2025, 4, 3, 6, tzinfo=UTC)

    result = run(tasks.remind_missing_time, at, django_capture_on_commit_callbacks)

    assert result == {"period": "2025-03", "reminded": 2, "emails": 2}
    [short] = _to(mailoutbox, timesheets["short"].user)
    assert short.subject == "Your timesheet for March 2025 is incomplete"
    assert "80.00 h submitted; about 134 h are expected for 21 working days" in short.body
    [unsubmitted] = _to(mailoutbox, timesheets["unsubmitted"].user)
    assert "1 entry (4.00 h) still in draft or rejected" in unsubmitted.body
    assert _to(mailoutbox, timesheets["complete"].user) == []

    assert (
        run(tasks.remind_missing_time, at + datetime.timedelta(hours=3), django_capture_on_commit_callbacks)["emails"]
        == 0
    )
    assert (
        run(tasks.remind_missing_time, at + datetime.timedelta(days=1), django_capture_on_commit_callbacks)["emails"]
        == 2
    )
    assert Reminder.objects.filter(kind="missing_time", subject_key="timesheet:2025-03").count() == 4


def test_a_reminder_row_stops_a_second_email_the_same_day(timesheets, mailoutbox, django_capture_on_commit_callbacks):
    today = datetime.date(2025, 4, 3)
    for key in ("short", "unsubmitted"):
        Reminder.objects.create(
            kind="missing_time", recipient=timesheets[key].user, subject_key="timesheet:2025-03", sent_on=today
        )

    result = run(
        tasks.remind_missing_time, datetime.datetime(2025, 4, 3, 6, tzinfo=UTC), django_capture_on_commit_callbacks
    )

    assert result["emails"] == 0 and mailoutbox == []


# --- weekly exception digest -----------------------------------------------------------------------


def test_weekly_digest_counts_invoices_in_exception_by_code(mailoutbox, django_capture_on_commit_callbacks):
    analysts = [UserFactory(groups=["finance_analyst"]) for _ in range(2)]
    UserFactory(groups=["finance_analyst"], email="")  # no address: skipped
    controller = UserFactory(groups=["finance_controller"])
    with time_machine.travel(datetime.datetime(2025, 3, 28, tzinfo=UTC)):
        first, second = InvoiceFactory(status="exception"), InvoiceFactory(status="exception")
    InvoiceExceptionFactory(invoice=first, code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=first, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=second, code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=second, code="TAX_RULE_MISSING", state="resolved")
    InvoiceExceptionFactory(invoice=InvoiceFactory(status="draft"), code="MISSING_RATE")
    monday = datetime.datetime(2025, 4, 7, 7, tzinfo=UTC)

    result = run(tasks.weekly_exception_digest, monday, django_capture_on_commit_callbacks)

    assert result == {"invoices": 2, "codes": {"MISSING_RATE": 2, "CAP_EXCEEDED": 1}, "emails": 2}
    assert {m.to[0] for m in mailoutbox} == {a.email for a in analysts}
    body = mailoutbox[0].body
    assert "Invoices in exception: 2" in body
    assert "- MISSING_RATE: 2 invoice(s), oldest 10 day(s)" in body
    assert "- CAP_EXCEEDED: 1 invoice(s)" in body
    assert mailoutbox[0].subject == "Exception backlog, week 15 of 2025: 2 invoice(s)"
    assert _to(mailoutbox, controller) == []
    assert run(tasks.weekly_exception_digest, monday, django_capture_on_commit_callbacks)["emails"] == 0


# --- schedules -------------------------------------------------------------------------------------


def test_the_tasks_are_scheduled_daily_and_weekly_by_migration():
    migration = importlib.import_module("approvals.migrations.0003_reminder_schedules")
    migration.schedule(apps, None)  # idempotent: the migration (or the post_migrate safety net) already ran

    schedules = {s.func: s for s in Schedule.objects.filter(func__startswith="approvals.tasks.")}
    assert set(schedules) == {
        "approvals.tasks.escalate_overdue",
        "approvals.tasks.remind_missing_time",
        "approvals.tasks.weekly_exception_digest",
    }
    for func, schedule in schedules.items():
        assert callable(import_string(func))
        assert schedule.repeats == -1
    assert schedules["approvals.tasks.escalate_overdue"].schedule_type == Schedule.DAILY
    assert (
        schedules["approvals.tasks.escalate_overdue"].next_run.hour,
        schedules["approvals.tasks.escalate_overdue"].next_run.minute,
    ) == (6, 0)
    digest = schedules["approvals.tasks.weekly_exception_digest"]
    assert digest.schedule_type == Schedule.WEEKLY
    assert (digest.next_run.weekday(), digest.next_run.hour) == (0, 7)


@pytest.mark.parametrize(
    "now_holds",
    [
        pytest.param(["auditor", "project_manager"], id="became-auditor"),
        pytest.param(["consultant"], id="no-approving-role"),
        pytest.param(["finance_analyst"], id="role-the-pm-step-does-not-accept"),
    ],
)
def test_reminders_skip_a_delegate_who_could_not_decide_the_step(
    now_holds, mailoutbox, django_capture_on_commit_callbacks
):
    """The delegate's roles changed after the delegation: the decision would refuse them, so no reminder either."""
    from django.contrib.auth.models import Group

    entry = submitted_time()
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["project_manager"])
    with time_machine.travel(T0, tick=False):
        delegation_create(
            delegator=pm, delegate=deputy, starts_on=T0.date(), ends_on=datetime.date(2025, 4, 30), user=pm
        )
        approval_request_open(subject=entry)
    deputy.groups.set([Group.objects.get_or_create(name=name)[0] for name in now_holds])

    run(tasks.escalate_overdue, T0 + datetime.timedelta(hours=73), django_capture_on_commit_callbacks)

    assert len(_to(mailoutbox, pm)) == 1
    assert _to(mailoutbox, deputy) == []
