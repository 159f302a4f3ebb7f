"""Time entries and expenses: creation rules, every FSM transition, permissions and SoD."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone
from django_fsm_log.models import StateLog

from approvals.models import Delegation
from approvals.services import approval_request_escalate, approval_request_open
from billing.models import Expense, Project, TimeEntry
from billing.services.work import (
    expense_create,
    time_entry_create,
    work_approve,
    work_approve_bulk,
    work_redraft,
    work_reject,
    work_reopen,
    work_submit,
)
from kernel.errors import (
    ApplicationError,
    ConflictError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from tests.factories import (
    ContractFactory,
    ExpenseFactory,
    InvoiceLineFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

DAY = datetime.date(2025, 3, 10)
WORK_FACTORIES = [TimeEntryFactory, ExpenseFactory]


def make_item(factory, status="draft", **kwargs):
    if status == "invoiced":
        kwargs["invoice_line"] = InvoiceLineFactory()
    return factory(status=status, **kwargs)


# --- time_entry_create -------------------------------------------------------------------------


def test_consultant_records_own_time_as_draft_with_audit():
    person = PersonFactory()
    project = ProjectFactory()
    entry = time_entry_create(
        person=person, project=project, date=DAY, hours="7.5", description="Analysis", user=person.user
    )
    assert entry.status == TimeEntry.Status.DRAFT
    assert entry.hours == Decimal("7.5")
    record = entry.history.get()
    assert record.history_user == person.user
    assert record.history_change_reason == "Time entry recorded"


def test_pm_and_finance_may_record_time_for_a_consultant():
    project = ProjectFactory()
    person = PersonFactory()
    assert time_entry_create(person=person, project=project, date=DAY, hours=2, user=project.project_manager).pk
    analyst = UserFactory(groups=["finance_analyst"])
    assert time_entry_create(person=person, project=project, date=DAY, hours=2, user=analyst).pk


def test_a_consultant_cannot_record_time_for_someone_else():
    other = PersonFactory()
    with pytest.raises(PermissionDeniedError):
        time_entry_create(person=PersonFactory(), project=ProjectFactory(), date=DAY, hours=1, user=other.user)
    assert TimeEntry.objects.count() == 0


@pytest.mark.parametrize("hours", ["0", "-1", "24.5", "abc"])
def test_hours_must_be_between_0_and_24(hours):
    person = PersonFactory()
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=ProjectFactory(), date=DAY, hours=hours, user=person.user)
    assert "hours" in exc.value.field_errors


def test_more_than_two_decimals_is_refused_with_a_field_error():
    person = PersonFactory()
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=ProjectFactory(), date=DAY, hours="1.255", user=person.user)
    assert "hours" in exc.value.field_errors


def test_at_most_24_hours_per_person_per_day_across_projects():
    person = PersonFactory()
    p1, p2 = ProjectFactory(), ProjectFactory()
    time_entry_create(person=person, project=p1, date=DAY, hours="16", user=person.user)
    time_entry_create(person=person, project=p2, date=DAY, hours="8", user=person.user)
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=p1, date=DAY, hours="0.25", user=person.user)
    assert exc.value.code == "daily_hours_exceeded"
    assert "24" in exc.value.message
    # Other days and other people are not affected.
    time_entry_create(person=person, project=p1, date=DAY + datetime.timedelta(days=1), hours="24", user=person.user)
    other = PersonFactory()
    time_entry_create(person=other, project=p1, date=DAY, hours="24", user=other.user)
    assert TimeEntry.objects.filter(person=person, date=DAY).count() == 2


def test_the_daily_limit_counts_entries_in_every_status():
    person = PersonFactory()
    TimeEntryFactory(person=person, date=DAY, hours=Decimal("20"), status="approved")
    with pytest.raises(ApplicationError, match="already has 20"):
        time_entry_create(person=person, project=ProjectFactory(), date=DAY, hours="5", user=person.user)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_bookings_cannot_together_exceed_24_hours():
    """The Person row lock serializes the day-total check of concurrent requests."""
    person = PersonFactory()
    project = ProjectFactory()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def book():
        try:
            barrier.wait()
            time_entry_create(person=person, project=project, date=DAY, hours="16", user=person.user)
            outcomes.append("ok")
        except ApplicationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=book) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["daily_hours_exceeded", "ok"]
    assert TimeEntry.objects.filter(person=person, date=DAY).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_approve_once():
    """The row lock makes the second approver see the first one's result instead of approving again."""
    item = TimeEntryFactory(status="submitted")
    pm = item.project.project_manager
    deputy = UserFactory(groups=["finance_controller"])  # the PM's delegate: both may decide the step
    Delegation.objects.create(delegator=pm, delegate=deputy, starts_on=timezone.localdate(),
                              ends_on=timezone.localdate())
    approvers = [pm, deputy]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(user):
        try:
            barrier.wait()
            work_approve(item=TimeEntry.objects.get(pk=item.pk), user=user)
            outcomes.append("ok")
        except InvalidTransitionError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused"]
    assert StateLog.objects.for_(item).count() == 1


@pytest.mark.parametrize("status", ["planned", "on_hold", "completed", "closed"])
def test_time_only_on_active_projects(status):
    person = PersonFactory()
    project = ProjectFactory(status=status)
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=project, date=DAY, hours=1, user=person.user)
    assert exc.value.code == "project_not_active"


def test_no_time_under_a_suspended_contract():
    person = PersonFactory()
    project = ProjectFactory(contract=ContractFactory(status="suspended"))
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=project, date=DAY, hours=1, user=person.user)
    assert exc.value.code == "contract_not_active"


def test_inactive_people_book_nothing():
    person = PersonFactory(active=False)
    with pytest.raises(ApplicationError) as exc:
        time_entry_create(person=person, project=ProjectFactory(), date=DAY, hours=1, user=person.user)
    assert exc.value.code == "person_inactive"


# --- expense_create ----------------------------------------------------------------------------


def test_expense_create_keeps_original_currency():
    person = PersonFactory()
    expense = expense_create(
        person=person,
        project=ProjectFactory(),
        date=DAY,
        amount="84.10",
        currency="usd",
        category="meals",
        description="Team dinner",
        user=person.user,
    )
    assert (expense.amount, expense.currency, expense.status) == (Decimal("84.10"), "USD", "draft")
    assert expense.history.get().history_user == person.user


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "E1R"}, "currency"),
        ({"category": "yacht"}, "category"),
    ],
)
def test_expense_validation(kwargs, field):
    person = PersonFactory()
    args = {"amount": "10", "currency": "EUR", "category": "travel"} | kwargs
    with pytest.raises(ApplicationError) as exc:
        expense_create(person=person, project=ProjectFactory(), date=DAY, user=person.user, **args)
    assert field in exc.value.field_errors
    assert Expense.objects.count() == 0


def test_expense_needs_an_active_project():
    person = PersonFactory()
    with pytest.raises(ApplicationError, match="active project"):
        expense_create(
            person=person,
            project=ProjectFactory(status="on_hold"),
            date=DAY,
            amount=10,
            currency="EUR",
            category="travel",
            user=person.user,
        )


# --- the FSM, through the services ----------------------------------------------------------------


def _owner(item):
    return item.person.user


def _pm(item):
    return item.project.project_manager


SERVICES = {
    "submit": (lambda item: work_submit(item=item, user=_owner(item)), "draft", "submitted"),
    "approve": (lambda item: work_approve(item=item, user=_pm(item)), "submitted", "approved"),
    "reject": (lambda item: work_reject(item=item, user=_pm(item), reason="Wrong project"), "submitted", "rejected"),
    "redraft": (lambda item: work_redraft(item=item, user=_owner(item)), "rejected", "draft"),
    "reopen": (
        lambda item: work_reopen(item=item, user=_pm(item), reason="Approved too early"),
        "approved",
        "submitted",
    ),
    "approve_bulk": (lambda item: work_approve_bulk(items=[item], user=_pm(item)), "submitted", "approved"),
}
STATUSES = ["draft", "submitted", "approved", "rejected", "invoiced"]


@pytest.mark.parametrize("factory", WORK_FACTORIES)
@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("status", STATUSES)
def test_transition_matrix(factory, service, status):
    call, source, target = SERVICES[service]
    item = make_item(factory, status)
    if status == source:
        call(item)
        item.refresh_from_db()
        assert item.status == target
        log = StateLog.objects.for_(item).get()
        assert (log.source_state, log.state) == (source, target)
    else:
        with pytest.raises(InvalidTransitionError):
            call(item)
        item.refresh_from_db()
        assert item.status == status
        assert not StateLog.objects.for_(item).exists()
        assert item.history.count() == 1  # only the creation: nothing was saved


@pytest.mark.parametrize("factory", WORK_FACTORIES)
def test_full_lifecycle_sets_the_workflow_fields(factory):
    item = make_item(factory)
    pm = _pm(item)
    work_submit(item=item, user=_owner(item))
    assert item.status == "submitted" and item.submitted_at is not None  # caller's instance is refreshed
    work_reject(item=item, user=pm, reason="Use the workshop project")
    assert item.rejection_reason == "Use the workshop project"
    work_redraft(item=item, user=_owner(item))
    assert item.status == "draft"
    assert item.rejection_reason == "Use the workshop project"  # still visible while the owner corrects
    work_submit(item=item, user=_owner(item))
    assert item.rejection_reason == ""
    work_approve(item=item, user=pm)
    assert item.approved_by == pm and item.approved_at is not None
    work_reopen(item=item, user=pm, reason="Hours to be split")
    assert item.status == "submitted" and item.approved_by is None and item.approved_at is None
    logs = list(StateLog.objects.for_(item).order_by("timestamp", "pk").values_list("transition", "by", "description"))
    owner = _owner(item).pk
    assert logs == [
        ("submit", owner, None),
        ("reject", pm.pk, "Use the workshop project"),
        ("redraft", owner, None),
        ("submit", owner, None),
        ("approve", pm.pk, None),
        ("reopen", pm.pk, "Hours to be split"),
    ]


def test_reopen_of_invoiced_work_says_use_a_credit_note():
    item = make_item(TimeEntryFactory, "invoiced")
    with pytest.raises(InvalidTransitionError) as exc:
        work_reopen(item=item, user=_pm(item), reason="Too late")
    assert exc.value.code == "already_invoiced"
    assert "credit note" in exc.value.message


@pytest.mark.parametrize(
    "call",
    [
        lambda item, user, reason: work_reject(item=item, user=user, reason=reason),
        lambda item, user, reason: work_reopen(item=item, user=user, reason=reason),
    ],
)
@pytest.mark.parametrize("reason", ["", "   ", None])
def test_reject_and_reopen_need_a_reason(call, reason):
    item = make_item(TimeEntryFactory, "submitted")
    with pytest.raises(ApplicationError) as exc:
        call(item, _pm(item), reason)
    assert exc.value.code == "reason_required"
    assert "reason" in exc.value.field_errors


# --- who may act ------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", WORK_FACTORIES)
def test_finance_controller_decides_work_through_its_route_once_escalated(factory):
    """No one-click override of the PM's step (ADR 0031); the escalation role decides an overdue step."""
    controller = UserFactory(groups=["finance_controller"])
    item = make_item(factory, "submitted")
    with pytest.raises(PermissionDeniedError, match="is for project manager"):
        work_approve(item=item, user=controller)
    request = approval_request_open(subject=item)
    approval_request_escalate(request=request, now=timezone.now() + datetime.timedelta(days=30))
    work_approve(item=item, user=controller)
    assert item.status == "approved"


@pytest.mark.parametrize(
    "role", ["consultant", "finance_analyst", "collections", "billing_admin", "auditor", "project_manager"]
)
@pytest.mark.parametrize("factory", WORK_FACTORIES)
def test_others_may_not_decide(role, factory):
    item = make_item(factory, "submitted")
    user = UserFactory(groups=[role])
    for call in (
        lambda: work_approve(item=item, user=user),
        lambda: work_reject(item=item, user=user, reason="no"),
        lambda: work_approve_bulk(items=[item], user=user),
    ):
        with pytest.raises(PermissionDeniedError) as exc:
            call()
        assert not isinstance(exc.value, SegregationOfDutiesError)
    item.refresh_from_db()
    assert item.status == "submitted"


def test_a_pm_is_denied_on_another_pms_project():
    mine = ProjectFactory()
    theirs = make_item(TimeEntryFactory, "submitted")
    with pytest.raises(PermissionDeniedError, match="is for project manager"):
        work_approve(item=theirs, user=mine.project_manager)
    approved = make_item(TimeEntryFactory, "approved")
    with pytest.raises(PermissionDeniedError):
        work_reopen(item=approved, user=mine.project_manager, reason="mine now")


def test_an_inactive_pm_is_denied():
    item = make_item(TimeEntryFactory, "submitted")
    pm = _pm(item)
    pm.is_active = False
    pm.save()
    with pytest.raises(PermissionDeniedError):
        work_approve(item=item, user=pm)


@pytest.mark.parametrize("factory", WORK_FACTORIES)
def test_sod_nobody_approves_their_own_work(factory):
    project = ProjectFactory()
    pm_person = PersonFactory(user=project.project_manager)
    own = make_item(factory, "submitted", person=pm_person, project=project)
    with pytest.raises(SegregationOfDutiesError):
        work_approve(item=own, user=project.project_manager)
    with pytest.raises(SegregationOfDutiesError):
        work_reject(item=own, user=project.project_manager, reason="hmm")
    with pytest.raises(SegregationOfDutiesError):
        work_approve_bulk(items=[own], user=project.project_manager)
    controller = UserFactory(groups=["finance_controller"])
    controllers_own = make_item(factory, "submitted", person=PersonFactory(user=controller))
    with pytest.raises(SegregationOfDutiesError):
        work_approve(item=controllers_own, user=controller)
    approved_own = make_item(factory, "approved", person=pm_person, project=project)
    with pytest.raises(SegregationOfDutiesError):
        work_reopen(item=approved_own, user=project.project_manager, reason="fix")


def test_submit_and_redraft_rights():
    item = make_item(TimeEntryFactory)
    stranger = PersonFactory().user
    with pytest.raises(PermissionDeniedError):
        work_submit(item=item, user=stranger)
    work_submit(item=item, user=_pm(item))  # a PM may submit on the consultant's behalf
    work_reject(item=item, user=_pm(item), reason="Split by task")
    with pytest.raises(PermissionDeniedError):
        work_redraft(item=item, user=_pm(item))  # only the owner corrects their work
    work_redraft(item=item, user=_owner(item))


def test_no_submission_on_a_closed_project():
    item = make_item(TimeEntryFactory, project=ProjectFactory(status=Project.Status.CLOSED))
    with pytest.raises(ApplicationError, match="closed"):
        work_submit(item=item, user=_owner(item))


# --- bulk approval ---------------------------------------------------------------------------------


def test_bulk_approval_of_time_and_expenses():
    project = ProjectFactory()
    items = [make_item(TimeEntryFactory, "submitted", project=project) for _ in range(3)]
    items += [make_item(ExpenseFactory, "submitted", project=project) for _ in range(2)]
    assert work_approve_bulk(items=items + items[:1], user=project.project_manager) == 5
    assert set(TimeEntry.objects.values_list("status", flat=True)) == {"approved"}
    assert set(Expense.objects.values_list("status", flat=True)) == {"approved"}
    work = ContentType.objects.get_for_models(TimeEntry, Expense).values()
    assert StateLog.objects.filter(transition="approve", by=project.project_manager,
                                   content_type__in=work).count() == 5
    assert work_approve_bulk(items=[], user=project.project_manager) == 0


@pytest.mark.parametrize("spoiler", ["draft", "foreign_project", "own"])
def test_bulk_approval_is_all_or_nothing(spoiler):
    project = ProjectFactory()
    pm = project.project_manager
    items = [make_item(TimeEntryFactory, "submitted", project=project) for _ in range(3)]
    if spoiler == "draft":
        items.append(make_item(TimeEntryFactory, "draft", project=project))
        expected = InvalidTransitionError
    elif spoiler == "foreign_project":
        items.append(make_item(ExpenseFactory, "submitted"))
        expected = PermissionDeniedError
    else:
        items.append(make_item(TimeEntryFactory, "submitted", project=project, person=PersonFactory(user=pm)))
        expected = SegregationOfDutiesError
    with pytest.raises(expected):
        work_approve_bulk(items=items, user=pm)
    assert not TimeEntry.objects.filter(status="approved").exists()
    assert not StateLog.objects.filter(transition="approve").exists()


def test_a_draft_discarded_meanwhile_is_a_conflict_not_an_error_page():
    """Two tabs (or a double submit) of one timesheet: the second discard or change finds the draft gone."""
    from billing.services.work import time_entry_discard_draft, time_entry_update_draft

    entry = make_item(TimeEntryFactory)
    stale = TimeEntry.objects.get(pk=entry.pk)
    time_entry_discard_draft(entry=entry, user=_owner(entry))
    with pytest.raises(ConflictError, match="discarded meanwhile"):
        time_entry_discard_draft(entry=stale, user=_owner(stale))
    with pytest.raises(ConflictError, match="discarded meanwhile"):
        time_entry_update_draft(entry=stale, hours="2", user=_owner(stale))
