"""The billing services wired to the approval engine.

Handing a subject over (submit, reopen, complete) opens its request in the same
transaction; deciding through the billing services records the decision through
the engine; a finance controller outside the route overrides (audited); no
decided subject keeps a pending request.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_migrate
from django.utils import timezone
from django_fsm_log.models import StateLog

from approvals.models import ApprovalPolicy, ApprovalRequest, ApprovalStep
from approvals.services import approval_decide, approval_reject, delegation_create
from billing.models import ChangeOrder, ContractRate, Expense, TimeEntry
from billing.services.change_orders import change_order_approve, change_order_reject, change_order_submit
from billing.services.milestones import milestone_approve, milestone_complete, milestone_resubmit
from billing.services.work import (
    expense_update_draft,
    time_entry_create,
    time_entry_discard_draft,
    time_entry_update_draft,
    work_approve,
    work_approve_bulk,
    work_redraft,
    work_reject,
    work_reopen,
    work_submit,
    work_submit_bulk,
)
from kernel.errors import (
    ApplicationError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from tests.factories import (
    ChangeOrderFactory,
    ChangeOrderRateFactory,
    ContractFactory,
    ExpenseFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

DAY = datetime.date(2025, 3, 10)


def requests_of(subject):
    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk
    ).order_by("pk")


def pending_of(subject):
    return requests_of(subject).filter(status="pending").first()


def assert_no_pending(subject):
    assert pending_of(subject) is None, f"{subject} was decided but its approval request is still pending"


@pytest.fixture
def controller():
    return UserFactory(groups=["finance_controller"])


def draft_time(**kwargs):
    return TimeEntryFactory(status="draft", **kwargs)


# --- opening on hand-over ------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [TimeEntryFactory, ExpenseFactory])
def test_submitting_work_opens_its_approval_request(factory):
    item = factory(status="draft")
    owner = item.person.user

    work_submit(item=item, user=owner)

    request = pending_of(item)
    assert request.subject == item
    assert request.subject_type == ("time_entry" if factory is TimeEntryFactory else "expense")
    assert request.requested_by == owner and request.prepared_by == owner
    assert request.project == item.project
    assert request.current_step == 1 and not request.escalated


def test_no_matching_policy_refuses_the_submission_and_leaves_the_draft():
    ApprovalPolicy.objects.filter(subject_type="time_entry").update(active=False)
    entry = draft_time()

    with pytest.raises(ApplicationError) as exc:
        work_submit(item=entry, user=entry.person.user)

    assert exc.value.code == "no_policy"
    entry.refresh_from_db()
    assert entry.status == "draft" and not requests_of(entry).exists()
    assert not StateLog.objects.for_(entry).exists()


def test_reopening_approved_work_routes_it_again():
    entry = draft_time()
    pm = entry.project.project_manager
    work_submit(item=entry, user=entry.person.user)
    work_approve(item=entry, user=pm)
    assert_no_pending(entry)

    work_reopen(item=entry, user=pm, reason="Hours belong to March")

    assert entry.status == "submitted"
    assert list(requests_of(entry).values_list("status", flat=True)) == ["approved", "pending"]
    assert pending_of(entry).requested_by == pm


def test_bulk_submission_opens_all_requests_or_none():
    person = PersonFactory()
    project = ProjectFactory()
    entries = [draft_time(person=person, project=project, date=DAY + datetime.timedelta(days=i)) for i in range(3)]

    assert work_submit_bulk(items=entries, user=person.user) == 3

    assert ApprovalRequest.objects.filter(status="pending", subject_type="time_entry").count() == 3
    stranger_entry = draft_time()
    with pytest.raises(PermissionDeniedError):
        work_submit_bulk(items=[draft_time(person=person, project=project), stranger_entry], user=person.user)
    assert TimeEntry.objects.filter(status="draft").count() == 2
    assert ApprovalRequest.objects.count() == 3


# --- deciding through the billing services ------------------------------------------------------------


def test_the_pms_approval_is_an_engine_decision():
    entry = draft_time()
    pm = entry.project.project_manager
    work_submit(item=entry, user=entry.person.user)
    request = pending_of(entry)

    work_approve(item=entry, user=pm)

    assert entry.status == "approved" and entry.approved_by == pm
    request.refresh_from_db()
    assert request.status == "approved"
    decision = request.decisions.get()
    assert (decision.approver, decision.decision, decision.step_order) == (pm, "approve", 1)
    assert StateLog.objects.for_(entry).filter(transition="approve").get().by == pm


def test_the_pms_rejection_is_an_engine_decision_and_resubmission_opens_a_new_request():
    entry = draft_time()
    owner, pm = entry.person.user, entry.project.project_manager
    work_submit(item=entry, user=owner)

    work_reject(item=entry, user=pm, reason="Wrong project: book it on the workshop")

    assert entry.status == "rejected" and entry.rejection_reason == "Wrong project: book it on the workshop"
    request = requests_of(entry).get()
    assert (request.status, request.outcome_reason) == ("rejected", "Wrong project: book it on the workshop")
    assert request.decisions.get().comment == "Wrong project: book it on the workshop"

    work_redraft(item=entry, user=owner)
    time_entry_update_draft(entry=entry, hours="6.5", user=owner)
    work_submit(item=entry, user=owner)
    assert list(requests_of(entry).values_list("status", flat=True)) == ["rejected", "pending"]


def test_deciding_in_the_engine_applies_the_billing_service():
    entry = draft_time()
    pm = entry.project.project_manager
    work_submit(item=entry, user=entry.person.user)

    approval_decide(request=pending_of(entry), user=pm, decision="approve")

    entry.refresh_from_db()
    assert entry.status == "approved" and entry.approved_by == pm


def test_bulk_approval_of_a_week_records_one_decision_per_item():
    project = ProjectFactory()
    pm = project.project_manager
    person = PersonFactory()
    items = [draft_time(person=person, project=project, date=DAY + datetime.timedelta(days=i)) for i in range(4)]
    items.append(ExpenseFactory(status="draft", person=person, project=project))
    for item in items:
        work_submit(item=item, user=person.user)

    assert work_approve_bulk(items=items, user=pm) == 5

    assert not ApprovalRequest.objects.filter(status="pending").exists()
    assert ApprovalRequest.objects.filter(status="approved").count() == 5
    assert set(TimeEntry.objects.values_list("status", flat=True)) == {"approved"}
    assert Expense.objects.get().status == "approved"


def test_bulk_approval_stays_all_or_nothing_through_the_engine():
    project = ProjectFactory()
    pm = project.project_manager
    mine = PersonFactory(user=pm)
    other = PersonFactory()
    items = [draft_time(person=other, project=project), draft_time(person=mine, project=project)]
    for item in items:
        work_submit(item=item, user=item.person.user)

    with pytest.raises(SegregationOfDutiesError, match="your own work"):
        work_approve_bulk(items=items, user=pm)

    assert set(TimeEntry.objects.values_list("status", flat=True)) == {"submitted"}
    assert ApprovalRequest.objects.filter(status="pending").count() == 2
    assert not ApprovalRequest.objects.filter(decisions__isnull=False).exists()


def test_another_pm_gets_the_engines_refusal_and_nothing_changes():
    entry = draft_time()
    work_submit(item=entry, user=entry.person.user)
    outsider = ProjectFactory().project_manager

    with pytest.raises(PermissionDeniedError) as exc:
        work_approve(item=entry, user=outsider)
    assert not isinstance(exc.value, SegregationOfDutiesError)
    with pytest.raises(PermissionDeniedError):
        work_reject(item=entry, user=outsider, reason="not mine")

    entry.refresh_from_db()
    assert entry.status == "submitted" and pending_of(entry) is not None


def test_a_controller_outside_the_route_is_refused_and_the_request_stays_pending(controller):
    """No one-click override: a controller outside the open step gets the engine's refusal (see tests/controls)."""
    entry = draft_time()
    work_submit(item=entry, user=entry.person.user)
    request = pending_of(entry)

    with pytest.raises(PermissionDeniedError, match="Step 1 of the approval"):
        work_approve(item=entry, user=controller)

    entry.refresh_from_db()
    request.refresh_from_db()
    assert entry.status == "submitted" and request.status == "pending" and not request.decisions.exists()


def test_a_controller_on_an_escalated_step_decides_in_the_engine(controller):
    project = ProjectFactory()
    pm = project.project_manager
    own = draft_time(person=PersonFactory(user=pm), project=project)
    work_submit(item=own, user=pm)
    request = pending_of(own)
    assert request.escalated and request.escalation_reason == "no_eligible_approver"

    work_reject(item=own, user=controller, reason="Split the hours by task")

    request.refresh_from_db()
    assert request.status == "rejected" and request.decisions.get().approver == controller
    assert own.status == "rejected"


def test_segregation_of_duties_is_never_overridden(controller):
    own = draft_time(person=PersonFactory(user=controller))
    work_submit(item=own, user=controller)
    with pytest.raises(SegregationOfDutiesError):
        work_approve(item=own, user=controller)
    assert pending_of(own) is not None


def test_a_delegate_pm_decides_on_behalf_when_the_service_accepts_them(controller):
    entry = draft_time()
    pm = entry.project.project_manager
    delegation_create(
        delegator=pm, delegate=controller, starts_on=timezone.localdate(), ends_on=timezone.localdate(), user=pm
    )
    work_submit(item=entry, user=entry.person.user)

    work_approve(item=entry, user=controller)

    decision = requests_of(entry).get().decisions.get()
    assert (decision.approver, decision.on_behalf_of) == (controller, pm)


def test_unrouted_work_is_routed_first_and_decided_through_the_engine():
    """Data from before the wiring (or imported as submitted) has no request: deciding opens one first."""
    entry = TimeEntryFactory(status="submitted")
    work_approve(item=entry, user=entry.project.project_manager)
    request = requests_of(entry).get()
    assert entry.status == "approved" and request.status == "approved"
    assert request.decisions.get().approver == entry.project.project_manager


# --- milestones ------------------------------------------------------------------------------------------


def test_completing_a_milestone_routes_it_past_the_completing_pm_to_a_controller(controller):
    milestone = MilestoneFactory()
    pm = milestone.project.project_manager
    milestone_complete(milestone=milestone, user=pm, evidence="Acceptance protocol signed")

    request = pending_of(milestone)
    assert request.prepared_by == pm and request.escalated
    with pytest.raises(SegregationOfDutiesError):
        milestone_approve(milestone=milestone, user=pm)

    milestone_approve(milestone=milestone, user=controller)

    assert milestone.status == "approved" and milestone.approved_by == controller
    request.refresh_from_db()
    assert request.status == "approved" and request.decisions.get().approver == controller


def test_the_new_pm_approves_what_the_previous_pm_completed_in_the_engine():
    milestone = MilestoneFactory()
    project = milestone.project
    milestone_complete(milestone=milestone, user=project.project_manager)
    new_pm = UserFactory(groups=["project_manager"])
    project.project_manager = new_pm
    project.save()

    milestone_approve(milestone=milestone, user=new_pm)

    assert milestone.status == "approved"
    assert requests_of(milestone).get().decisions.get().approver == new_pm


def test_a_rejected_milestone_stays_completed_and_can_be_resubmitted(controller):
    milestone = MilestoneFactory()
    pm = milestone.project.project_manager
    milestone_complete(milestone=milestone, user=pm, evidence="Draft report")
    approval_reject(request=pending_of(milestone), user=controller, reason="The client has not signed yet")
    milestone.refresh_from_db()
    assert milestone.status == "completed" and pending_of(milestone) is None

    with pytest.raises(PermissionDeniedError):
        milestone_resubmit(milestone=milestone, user=controller)
    milestone_resubmit(milestone=milestone, user=pm, evidence="Signed acceptance, 2025-03-20")

    assert milestone.evidence == "Signed acceptance, 2025-03-20"
    assert list(requests_of(milestone).values_list("status", flat=True)) == ["rejected", "pending"]
    with pytest.raises(InvalidTransitionError, match="already awaiting"):
        milestone_resubmit(milestone=milestone, user=pm)


def test_only_completed_milestones_are_resubmitted():
    milestone = MilestoneFactory()
    with pytest.raises(InvalidTransitionError):
        milestone_resubmit(milestone=milestone, user=milestone.project.project_manager)


# --- change orders -----------------------------------------------------------------------------------------


def test_a_change_order_growing_the_cap_over_20_percent_needs_a_pm_then_a_controller(controller):
    contract = ContractFactory(cap=Decimal("50000.00"))
    submitter_project = ProjectFactory(contract=contract)
    second_pm = ProjectFactory(contract=contract).project_manager
    co = ChangeOrderFactory(contract=contract, cap_delta=Decimal("12000.00"))
    ChangeOrderRateFactory(change_order=co)
    change_order_submit(change_order=co, user=submitter_project.project_manager)

    change_order_approve(change_order=co, user=second_pm, reason="Scope agreed")

    assert co.status == "submitted" and not ContractRate.objects.exists()  # step 2 still open
    request = pending_of(co)
    assert request.current_step == 2
    with pytest.raises(PermissionDeniedError):
        change_order_approve(change_order=co, user=submitter_project.project_manager)

    change_order_approve(change_order=co, user=controller, reason="Budget confirmed")

    assert co.status == "approved" and co.decided_by == controller
    assert ContractRate.objects.get().change_order == co
    assert_no_pending(co)
    assert list(request.decisions.values_list("approver", flat=True)) == [second_pm.pk, controller.pk]


def test_the_controller_of_step_one_cannot_override_step_two(controller):
    """Four eyes: a controller who decided the escalated PM step may not also take the controller step."""
    contract = ContractFactory(cap=Decimal("50000.00"))
    pm = ProjectFactory(contract=contract).project_manager
    co = ChangeOrderFactory(contract=contract, cap_delta=Decimal("20000.00"))
    change_order_submit(change_order=co, user=pm)  # the only PM submitted it: step 1 goes to controllers

    change_order_approve(change_order=co, user=controller)
    with pytest.raises(SegregationOfDutiesError, match="already decided step 1"):
        change_order_approve(change_order=co, user=controller)

    co.refresh_from_db()
    assert co.status == "submitted" and pending_of(co).current_step == 2


def test_rejecting_a_change_order_settles_its_request(controller):
    contract = ContractFactory(cap=Decimal("50000.00"))
    pm = ProjectFactory(contract=contract).project_manager
    co = ChangeOrderFactory(contract=contract)
    change_order_submit(change_order=co, user=pm)

    change_order_reject(change_order=co, user=controller, reason="Client withdrew the request")

    assert co.status == "rejected" and co.decision_reason == "Client withdrew the request"
    assert requests_of(co).get().status == "rejected"
    assert ChangeOrder.objects.get().status == "rejected"


# --- draft edits used by the timesheet ------------------------------------------------------------------------


def test_updating_a_draft_keeps_the_daily_limit():
    person = PersonFactory()
    project = ProjectFactory()
    first = time_entry_create(person=person, project=project, date=DAY, hours="10", user=person.user)
    time_entry_create(person=person, project=ProjectFactory(), date=DAY, hours="12", user=person.user)

    time_entry_update_draft(entry=first, hours="12", description="Workshop", user=person.user)
    assert (first.hours, first.description) == (Decimal("12.00"), "Workshop")
    with pytest.raises(ApplicationError) as exc:
        time_entry_update_draft(entry=first, hours="12.5", user=person.user)
    assert exc.value.code == "daily_hours_exceeded"
    with pytest.raises(ApplicationError) as exc:
        time_entry_update_draft(entry=first, hours="0", user=person.user)
    assert exc.value.code == "invalid_hours"


def test_only_drafts_are_updated_or_discarded_and_only_by_those_who_may_record_them():
    entry = draft_time()
    owner = entry.person.user
    with pytest.raises(PermissionDeniedError):
        time_entry_update_draft(entry=entry, hours="2", user=PersonFactory().user)
    work_submit(item=entry, user=owner)
    with pytest.raises(InvalidTransitionError):
        time_entry_update_draft(entry=entry, hours="2", user=owner)
    with pytest.raises(InvalidTransitionError):
        time_entry_discard_draft(entry=entry, user=owner)

    draft = draft_time(person=entry.person, project=entry.project, date=DAY + datetime.timedelta(days=1))
    time_entry_discard_draft(entry=draft, user=owner)
    assert not TimeEntry.objects.filter(pk=draft.pk).exists()
    deletion = TimeEntry.history.filter(id=draft.pk, history_type="-").get()
    assert (deletion.history_user, deletion.history_change_reason) == (owner, "Draft discarded")


def test_updating_a_draft_expense():
    expense = ExpenseFactory(status="draft")
    owner = expense.person.user
    expense_update_draft(
        expense=expense, user=owner, date=DAY, amount="88.40", currency="eur", category="meals", description="Dinner"
    )
    assert (expense.amount, expense.currency, expense.category) == (Decimal("88.40"), "EUR", "meals")
    with pytest.raises(ApplicationError, match="positive"):
        expense_update_draft(expense=expense, user=owner, date=DAY, amount="0", currency="EUR", category="meals")


# --- seeded defaults --------------------------------------------------------------------------------------------


def test_post_migrate_restores_the_default_policies():
    ApprovalStep.objects.all().delete()
    ApprovalPolicy.objects.all().delete()
    config = apps.get_app_config("approvals")

    post_migrate.send(sender=config, app_config=config, verbosity=0, interactive=False, using="default", apps=apps,
                      plan=[])

    assert ApprovalPolicy.objects.filter(subject_type="time_entry").exists()
    assert ApprovalPolicy.objects.filter(subject_type="milestone").exists()


# --- admin actions go through the same route ------------------------------------------------------------


def test_the_admin_approve_action_records_an_engine_decision(client):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
    from django.urls import reverse

    pm = UserFactory(is_staff=True, groups=["project_manager"])
    project = ProjectFactory(project_manager=pm)
    entry = draft_time(project=project)
    work_submit(item=entry, user=entry.person.user)
    client.force_login(pm)

    response = client.post(
        reverse("admin:billing_timeentry_changelist"),
        {"action": "work_approve", ACTION_CHECKBOX_NAME: [entry.pk], "index": 0},
        follow=True,
    )

    assert response.status_code == 200
    entry.refresh_from_db()
    assert entry.status == "approved"
    request = requests_of(entry).get()
    assert request.status == "approved" and request.decisions.get().approver == pm
