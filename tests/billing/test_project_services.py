"""Project and contract lifecycles through their services: every transition, who may do it, closing rules."""

from __future__ import annotations

import pytest
from django_fsm_log.models import StateLog

from billing.services.contracts import contract_activate, contract_close, contract_resume, contract_suspend
from billing.services.projects import project_activate, project_close, project_complete, project_hold
from kernel.errors import ApplicationError, InvalidTransitionError, PermissionDeniedError
from tests.factories import (
    ChangeOrderFactory,
    ContractFactory,
    ExpenseFactory,
    InvoiceLineFactory,
    MilestoneFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PROJECT_STATUSES = ["planned", "active", "on_hold", "completed", "closed"]
PROJECT_SERVICES = {
    "activate": (project_activate, {"planned", "on_hold"}, "active"),
    "hold": (project_hold, {"active"}, "on_hold"),
    "complete": (project_complete, {"active"}, "completed"),
    "close": (project_close, {"completed"}, "closed"),
}


@pytest.mark.parametrize("action", PROJECT_SERVICES)
@pytest.mark.parametrize("status", PROJECT_STATUSES)
def test_project_transition_matrix(action, status):
    service, sources, target = PROJECT_SERVICES[action]
    project = ProjectFactory(status=status)
    pm = project.project_manager
    if status in sources:
        service(project=project, user=pm, reason=f"{action} requested")
        assert project.status == target
        log = StateLog.objects.for_(project).get()
        assert (log.by, log.source_state, log.state, log.description) == (pm, status, target, f"{action} requested")
        assert project.history.latest().history_change_reason == f"{action} requested"
    else:
        with pytest.raises(InvalidTransitionError):
            service(project=project, user=pm)
        project.refresh_from_db()
        assert project.status == status
        assert not StateLog.objects.for_(project).exists()


def test_project_round_trip_with_a_hold():
    project = ProjectFactory(status="planned")
    pm = project.project_manager
    project_activate(project=project, user=pm)
    project_hold(project=project, user=pm, reason="Client budget freeze")
    project_activate(project=project, user=pm, reason="Budget released")
    project_complete(project=project, user=pm)
    project_close(project=project, user=pm)
    assert list(StateLog.objects.for_(project).order_by("pk").values_list("transition", flat=True)) == [
        "activate",
        "hold",
        "activate",
        "complete",
        "close",
    ]
    assert project.history.latest().history_change_reason == "Closed"  # default reason when none is given


@pytest.mark.parametrize("role", ["billing_admin", "finance_controller"])
def test_admins_and_controllers_manage_any_project(role):
    project = ProjectFactory()
    project_hold(project=project, user=UserFactory(groups=[role]))
    assert project.status == "on_hold"


@pytest.mark.parametrize("role", ["consultant", "finance_analyst", "collections", "auditor", "project_manager"])
def test_others_may_not_change_a_project(role):
    project = ProjectFactory()
    with pytest.raises(PermissionDeniedError):
        project_hold(project=project, user=UserFactory(groups=[role]))


def test_a_pm_is_denied_on_another_pms_project():
    mine, theirs = ProjectFactory(), ProjectFactory()
    with pytest.raises(PermissionDeniedError, match=theirs.code):
        project_complete(project=theirs, user=mine.project_manager)


@pytest.mark.parametrize("contract_status", ["draft", "suspended", "closed"])
def test_a_project_starts_only_under_an_active_contract(contract_status):
    project = ProjectFactory(status="planned", contract=ContractFactory(status=contract_status))
    with pytest.raises(ApplicationError) as exc:
        project_activate(project=project, user=project.project_manager)
    assert exc.value.code == "contract_not_active"


@pytest.mark.parametrize(
    "make_pending",
    [
        lambda p: TimeEntryFactory(project=p, status="submitted"),
        lambda p: TimeEntryFactory(project=p, status="approved"),
        lambda p: ExpenseFactory(project=p, status="approved"),
        lambda p: MilestoneFactory(project=p, status="approved"),
    ],
)
def test_close_refused_while_work_awaits_approval_or_billing(make_pending):
    project = ProjectFactory(status="completed", contract=ContractFactory(fixed_fee=True))
    make_pending(project)
    with pytest.raises(ApplicationError) as exc:
        project_close(project=project, user=project.project_manager)
    assert exc.value.code == "unbilled_work"
    project.refresh_from_db()
    assert project.status == "completed"


def test_close_allowed_when_only_billed_rejected_or_non_billable_work_is_left():
    project = ProjectFactory(status="completed")
    TimeEntryFactory(project=project, status="invoiced", invoice_line=InvoiceLineFactory())
    TimeEntryFactory(project=project, status="rejected")
    TimeEntryFactory(project=project, status="approved", billable=False)
    MilestoneFactory(project=project, status="approved")  # T&M contract: milestones are not billed
    project_close(project=project, user=project.project_manager)
    assert project.status == "closed"


# --- contracts ---------------------------------------------------------------------------------

CONTRACT_STATUSES = ["draft", "active", "suspended", "closed"]
CONTRACT_SERVICES = {
    "activate": (contract_activate, {"draft"}, "active"),
    "suspend": (contract_suspend, {"active"}, "suspended"),
    "resume": (contract_resume, {"suspended"}, "active"),
    "close": (contract_close, {"active", "suspended"}, "closed"),
}


@pytest.fixture
def billing_admin():
    return UserFactory(groups=["billing_admin"])


@pytest.mark.parametrize("action", CONTRACT_SERVICES)
@pytest.mark.parametrize("status", CONTRACT_STATUSES)
def test_contract_transition_matrix(action, status, billing_admin):
    service, sources, target = CONTRACT_SERVICES[action]
    contract = ContractFactory(status=status)
    if status in sources:
        service(contract=contract, user=billing_admin, reason="Per signed SOW")
        assert contract.status == target
        log = StateLog.objects.for_(contract).get()
        assert (log.by, log.source_state, log.state, log.description) == (
            billing_admin,
            status,
            target,
            "Per signed SOW",
        )
        record = contract.history.latest()
        assert (record.history_user, record.history_change_reason) == (billing_admin, "Per signed SOW")
    else:
        with pytest.raises(InvalidTransitionError):
            service(contract=contract, user=billing_admin)
        contract.refresh_from_db()
        assert contract.status == status


def test_controller_may_suspend_and_resume():
    controller = UserFactory(groups=["finance_controller"])
    contract = ContractFactory()
    contract_suspend(contract=contract, user=controller, reason="Client insolvency filing")
    contract_resume(contract=contract, user=controller, reason="Administrator confirmed")
    assert contract.status == "active"


@pytest.mark.parametrize("role", ["project_manager", "finance_analyst", "consultant", "collections", "auditor"])
def test_others_may_not_change_a_contract(role):
    contract = ContractFactory()
    ProjectFactory(contract=contract, project_manager=UserFactory(groups=[role]))
    user = contract.projects.get().project_manager  # even the PM of its project
    with pytest.raises(PermissionDeniedError):
        contract_suspend(contract=contract, user=user)


def test_contract_close_refused_while_a_project_runs(billing_admin):
    contract = ContractFactory()
    ProjectFactory(contract=contract, status="on_hold", code="RUN-1")
    with pytest.raises(ApplicationError, match="RUN-1") as exc:
        contract_close(contract=contract, user=billing_admin)
    assert exc.value.code == "projects_running"


def test_contract_close_refused_while_a_change_order_is_pending(billing_admin):
    contract = ContractFactory()
    ProjectFactory(contract=contract, status="closed")
    ChangeOrderFactory(contract=contract, status="submitted")
    with pytest.raises(ApplicationError) as exc:
        contract_close(contract=contract, user=billing_admin)
    assert exc.value.code == "change_order_pending"


def test_contract_close_after_its_projects_are_done(billing_admin):
    contract = ContractFactory()
    ProjectFactory(contract=contract, status="closed")
    ProjectFactory(contract=contract, status="completed")
    ChangeOrderFactory(contract=contract, status="approved")
    contract_close(contract=contract, user=billing_admin, reason="Engagement ended")
    assert contract.status == "closed"
