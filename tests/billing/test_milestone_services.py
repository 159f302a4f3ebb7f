"""Milestones: planned → completed → approved, the completer never approves."""

from __future__ import annotations

import pytest
from django_fsm_log.models import StateLog

from billing.models import Milestone
from billing.services.milestones import milestone_approve, milestone_complete
from kernel.errors import (
    ApplicationError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from tests.factories import InvoiceLineFactory, MilestoneFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

STATUSES = ["planned", "completed", "approved", "invoiced"]


def make_milestone(status="planned", **kwargs):
    if status == "invoiced":
        kwargs["invoice_line"] = InvoiceLineFactory()
    if status in ("completed", "approved", "invoiced"):
        kwargs.setdefault("completed_by", UserFactory(groups=["project_manager"]))
    return MilestoneFactory(status=status, **kwargs)


def test_pm_completes_and_a_controller_approves():
    milestone = make_milestone()
    pm = milestone.project.project_manager
    controller = UserFactory(groups=["finance_controller"])
    milestone_complete(milestone=milestone, user=pm, evidence="Signed acceptance protocol, 2025-03-12")
    assert milestone.status == Milestone.Status.COMPLETED
    assert milestone.completed_by == pm and milestone.completed_at is not None
    assert milestone.evidence == "Signed acceptance protocol, 2025-03-12"
    milestone_approve(milestone=milestone, user=controller)
    assert milestone.status == Milestone.Status.APPROVED
    assert milestone.approved_by == controller and milestone.approved_at is not None
    logs = list(
        StateLog.objects.for_(milestone).order_by("pk").values_list("source_state", "state", "by", "description")
    )
    assert logs == [
        ("planned", "completed", pm.pk, "Signed acceptance protocol, 2025-03-12"),
        ("completed", "approved", controller.pk, None),
    ]
    reasons = list(milestone.history.order_by("history_id").values_list("history_user", "history_change_reason"))
    assert reasons[1:] == [(pm.pk, "Completed"), (controller.pk, "Approved")]


def test_sod_the_completer_cannot_approve():
    milestone = make_milestone()
    pm = milestone.project.project_manager
    milestone_complete(milestone=milestone, user=pm)
    with pytest.raises(SegregationOfDutiesError):
        milestone_approve(milestone=milestone, user=pm)
    milestone.refresh_from_db()
    assert milestone.status == "completed"


def test_sod_holds_for_a_controller_who_completed_it_as_pm():
    controller_pm = UserFactory(groups=["finance_controller", "project_manager"])
    milestone = make_milestone(project=ProjectFactory(project_manager=controller_pm, contract__fixed_fee=True))
    milestone_complete(milestone=milestone, user=controller_pm)
    with pytest.raises(SegregationOfDutiesError):
        milestone_approve(milestone=milestone, user=controller_pm)


def test_a_new_pm_may_approve_what_the_previous_pm_completed():
    milestone = make_milestone()
    old_pm = milestone.project.project_manager
    milestone_complete(milestone=milestone, user=old_pm)
    new_pm = UserFactory(groups=["project_manager"])
    project = milestone.project
    project.project_manager = new_pm
    project.save()
    milestone_approve(milestone=milestone, user=new_pm)
    assert milestone.status == "approved"


@pytest.mark.parametrize("role", ["finance_controller", "finance_analyst", "billing_admin", "consultant", "auditor"])
def test_only_the_projects_pm_completes(role):
    milestone = make_milestone()
    with pytest.raises(PermissionDeniedError):
        milestone_complete(milestone=milestone, user=UserFactory(groups=[role]))


def test_a_pm_is_denied_on_another_pms_project():
    other_pm = ProjectFactory().project_manager
    with pytest.raises(PermissionDeniedError):
        milestone_complete(milestone=make_milestone(), user=other_pm)
    with pytest.raises(PermissionDeniedError) as exc:
        milestone_approve(milestone=make_milestone("completed"), user=other_pm)
    assert not isinstance(exc.value, SegregationOfDutiesError)


@pytest.mark.parametrize("role", ["finance_analyst", "billing_admin", "consultant", "collections"])
def test_only_pm_or_controller_approves(role):
    with pytest.raises(PermissionDeniedError):
        milestone_approve(milestone=make_milestone("completed"), user=UserFactory(groups=[role]))


@pytest.mark.parametrize("status", STATUSES)
def test_complete_only_from_planned(status):
    milestone = make_milestone(status)
    pm = milestone.project.project_manager
    if status == "planned":
        milestone_complete(milestone=milestone, user=pm)
        assert milestone.status == "completed"
    else:
        with pytest.raises(InvalidTransitionError):
            milestone_complete(milestone=milestone, user=pm)
        assert milestone.history.count() == 1


@pytest.mark.parametrize("status", STATUSES)
def test_approve_only_from_completed(status):
    milestone = make_milestone(status)
    pm = milestone.project.project_manager
    if status == "completed":
        milestone_approve(milestone=milestone, user=pm)
        assert milestone.status == "approved"
    else:
        with pytest.raises(InvalidTransitionError):
            milestone_approve(milestone=milestone, user=pm)
        assert not StateLog.objects.for_(milestone).exists()


@pytest.mark.parametrize("status", ["planned", "on_hold", "closed"])
def test_milestones_complete_on_active_or_completed_projects_only(status):
    milestone = make_milestone(project=ProjectFactory(status=status, contract__fixed_fee=True))
    with pytest.raises(ApplicationError, match="active or completed"):
        milestone_complete(milestone=milestone, user=milestone.project.project_manager)


def test_milestone_of_a_completed_project_can_still_be_completed():
    milestone = make_milestone(project=ProjectFactory(status="completed", contract__fixed_fee=True))
    milestone_complete(milestone=milestone, user=milestone.project.project_manager, evidence="Final report")
    assert milestone.status == "completed"
