"""Change orders: draft → submitted → approved | rejected; approval applies the amendment."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django_fsm_log.models import StateLog

from billing.models import ContractRate, Milestone
from billing.services.change_orders import change_order_approve, change_order_reject, change_order_submit
from kernel.errors import (
    ApplicationError,
    InvalidTransitionError,
    PermissionDeniedError,
    SegregationOfDutiesError,
)
from tests.factories import (
    ChangeOrderFactory,
    ChangeOrderMilestoneFactory,
    ChangeOrderRateFactory,
    ContractFactory,
    ContractRateFactory,
    PersonFactory,
    ProjectFactory,
    RoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

D = datetime.date
STATUSES = ["draft", "submitted", "approved", "rejected"]


@pytest.fixture
def project():
    return ProjectFactory(contract=ContractFactory(cap=Decimal("50000.00")))


@pytest.fixture
def controller():
    return UserFactory(groups=["finance_controller"])


def submitted_co(project, **kwargs):
    co = ChangeOrderFactory(contract=project.contract, **kwargs)
    change_order_submit(change_order=co, user=project.project_manager)
    return co


def test_pm_submits_and_a_controller_approves_applying_rates_and_milestones(project, controller):
    senior = RoleFactory(code="SENIOR")
    person = PersonFactory()
    # A cap growth of 16 % (over 20 % the approval policy adds a controller step after the PM's:
    # tests/approvals/test_wiring.py).
    co = ChangeOrderFactory(contract=project.contract, cap_delta=Decimal("8000.00"))
    ChangeOrderRateFactory(change_order=co, role=senior, rate=Decimal("150"), effective_from=D(2025, 3, 16))
    ChangeOrderRateFactory(
        change_order=co,
        role=None,
        person=person,
        rate=Decimal("175"),
        effective_from=D(2025, 4, 1),
        effective_to=D(2025, 12, 31),
    )
    ChangeOrderMilestoneFactory(
        change_order=co, project=project, name="Phase 2 go-live", amount=Decimal("8000"), due_date=D(2025, 9, 30)
    )
    pm = project.project_manager

    change_order_submit(change_order=co, user=pm)
    assert co.status == "submitted" and co.submitted_by == pm and co.submitted_at is not None
    assert not ContractRate.objects.exists()  # nothing applies before approval

    change_order_approve(change_order=co, user=controller, reason="Signed by client on 2025-03-14")
    assert co.status == "approved"
    assert (co.decided_by, co.decision_reason) == (controller, "Signed by client on 2025-03-14")

    rates = {(r.role_id, r.person_id): r for r in ContractRate.objects.filter(contract=project.contract)}
    assert set(rates) == {(senior.pk, None), (None, person.pk)}
    role_rate = rates[(senior.pk, None)]
    assert (role_rate.rate, role_rate.effective_from, role_rate.effective_to, role_rate.change_order) == (
        Decimal("150"),
        D(2025, 3, 16),
        None,
        co,
    )
    person_rate = rates[(None, person.pk)]
    assert (person_rate.effective_from, person_rate.effective_to) == (D(2025, 4, 1), D(2025, 12, 31))
    assert role_rate.history.get().history_user == controller

    milestone = Milestone.objects.get(change_order=co)
    assert (milestone.project, milestone.name, milestone.amount, milestone.due_date, milestone.status) == (
        project,
        "Phase 2 go-live",
        Decimal("8000.00"),
        D(2025, 9, 30),
        "planned",
    )
    assert milestone.history.get().history_user == controller

    project.contract.refresh_from_db()
    assert project.contract.cap == Decimal("50000.00")  # the engine adds approved deltas itself

    log = StateLog.objects.for_(co).filter(transition="approve").get()
    assert (log.by, log.source_state, log.state, log.description) == (
        controller,
        "submitted",
        "approved",
        "Signed by client on 2025-03-14",
    )


def test_an_earlier_contract_rate_stays_and_the_change_order_rate_is_added(project, controller):
    role = RoleFactory(code="CONSULTANT")
    ContractRateFactory(contract=project.contract, role=role, effective_from=D(2025, 1, 1), rate=Decimal("110"))
    co = ChangeOrderFactory(contract=project.contract)
    ChangeOrderRateFactory(change_order=co, role=role, effective_from=D(2025, 1, 1), rate=Decimal("125"))
    change_order_submit(change_order=co, user=project.project_manager)
    change_order_approve(change_order=co, user=controller)
    assert sorted(ContractRate.objects.values_list("rate", "change_order")) == [
        (Decimal("110.0000"), None),
        (Decimal("125.0000"), co.pk),
    ]


def test_sod_the_submitter_cannot_approve(project):
    co = submitted_co(project)
    with pytest.raises(SegregationOfDutiesError):
        change_order_approve(change_order=co, user=project.project_manager)
    controller_submitter = UserFactory(groups=["finance_controller"])
    co2 = ChangeOrderFactory(contract=project.contract)
    change_order_submit(change_order=co2, user=controller_submitter)
    with pytest.raises(SegregationOfDutiesError):
        change_order_approve(change_order=co2, user=controller_submitter)
    co2.refresh_from_db()
    assert co2.status == "submitted"


def test_another_pm_of_the_contract_may_approve(project):
    second = ProjectFactory(contract=project.contract)
    co = submitted_co(project)
    change_order_approve(change_order=co, user=second.project_manager)
    assert co.status == "approved"


def test_a_pm_of_another_contract_is_denied(project):
    outsider = ProjectFactory().project_manager
    co = ChangeOrderFactory(contract=project.contract)
    with pytest.raises(PermissionDeniedError):
        change_order_submit(change_order=co, user=outsider)
    change_order_submit(change_order=co, user=project.project_manager)
    with pytest.raises(PermissionDeniedError) as exc:
        change_order_approve(change_order=co, user=outsider)
    assert not isinstance(exc.value, SegregationOfDutiesError)
    with pytest.raises(PermissionDeniedError):
        change_order_reject(change_order=co, user=outsider, reason="no")


@pytest.mark.parametrize("role", ["finance_analyst", "billing_admin", "consultant", "auditor", "collections"])
def test_only_pm_or_controller_decides(project, role):
    co = submitted_co(project)
    user = UserFactory(groups=[role])
    with pytest.raises(PermissionDeniedError):
        change_order_approve(change_order=co, user=user)
    with pytest.raises(PermissionDeniedError):
        change_order_reject(change_order=co, user=user, reason="no")


@pytest.mark.parametrize("role", ["billing_admin", "finance_analyst", "finance_controller"])
def test_admins_and_finance_may_submit(project, role):
    co = ChangeOrderFactory(contract=project.contract)
    change_order_submit(change_order=co, user=UserFactory(groups=[role]))
    assert co.status == "submitted"


@pytest.mark.parametrize("role", ["consultant", "auditor", "collections"])
def test_others_may_not_submit(project, role):
    with pytest.raises(PermissionDeniedError):
        change_order_submit(change_order=ChangeOrderFactory(contract=project.contract), user=UserFactory(groups=[role]))


def test_reject_needs_a_reason_and_applies_nothing(project, controller):
    co = submitted_co(project)
    ChangeOrderRateFactory(change_order=co)
    ChangeOrderMilestoneFactory(change_order=co, project=project)
    with pytest.raises(ApplicationError) as exc:
        change_order_reject(change_order=co, user=controller, reason="  ")
    assert exc.value.code == "reason_required"
    change_order_reject(change_order=co, user=controller, reason="Client did not sign")
    assert co.status == "rejected" and co.decision_reason == "Client did not sign" and co.decided_by == controller
    assert not ContractRate.objects.exists()
    assert not Milestone.objects.exists()
    assert co.history.latest().history_change_reason == "Client did not sign"


ACTIONS = {
    "submit": ("draft", "submitted"),
    "approve": ("submitted", "approved"),
    "reject": ("submitted", "rejected"),
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", STATUSES)
def test_transition_matrix(project, controller, action, status):
    co = ChangeOrderFactory(contract=project.contract, status=status, submitted_by=project.project_manager)
    ChangeOrderRateFactory(change_order=co)
    call = {
        "submit": lambda: change_order_submit(change_order=co, user=project.project_manager),
        "approve": lambda: change_order_approve(change_order=co, user=controller),
        "reject": lambda: change_order_reject(change_order=co, user=controller, reason="No budget"),
    }[action]
    source, target = ACTIONS[action]
    if status == source:
        call()
        assert co.status == target
    else:
        with pytest.raises(InvalidTransitionError):
            call()
        co.refresh_from_db()
        assert co.status == status
    # Rates are applied exactly when the change order is approved by this call.
    assert ContractRate.objects.exists() == (action == "approve" and status == "submitted")


def test_approving_twice_does_not_apply_twice(project, controller):
    co = submitted_co(project)
    ChangeOrderRateFactory(change_order=co)
    change_order_approve(change_order=co, user=controller)
    with pytest.raises(InvalidTransitionError):
        change_order_approve(change_order=co, user=controller)
    assert ContractRate.objects.count() == 1


def test_milestones_must_belong_to_the_contracts_projects(project, controller):
    co = ChangeOrderFactory(contract=project.contract)
    ChangeOrderMilestoneFactory(change_order=co, project=ProjectFactory())  # another contract's project
    with pytest.raises(ApplicationError, match="another contract"):
        change_order_submit(change_order=co, user=project.project_manager)


def test_a_closed_contract_takes_no_amendment(controller):
    project = ProjectFactory(status="closed", contract=ContractFactory(status="closed"))
    co = ChangeOrderFactory(contract=project.contract)
    with pytest.raises(ApplicationError, match="closed"):
        change_order_submit(change_order=co, user=project.project_manager)
