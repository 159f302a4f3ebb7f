"""Control: only a manager of the contract's projects (or finance, billing admins) raises its change orders.

Checked in the service, whatever the screen: another PM's contract, a closed contract, milestones on
another contract's projects and a submitted change order are refused, and nothing is written.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import ChangeOrder, Contract
from billing.services.change_orders import MilestoneTerm, change_order_draft_save
from kernel.errors import ApplicationError, PermissionDeniedError
from tests.factories import ChangeOrderFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("change-order-raising")]


def _save(**kwargs):
    return change_order_draft_save(description="More scope", cap_delta=Decimal("100"), rates=[], milestones=[],
                                   **kwargs)


def test_a_pm_cannot_raise_a_change_order_on_another_pms_contract():
    pm = UserFactory(groups=["project_manager"])
    theirs = ProjectFactory(project_manager=UserFactory(groups=["project_manager"]))
    with pytest.raises(PermissionDeniedError):
        _save(user=pm, contract=theirs.contract)
    draft = ChangeOrderFactory(contract=theirs.contract)
    with pytest.raises(PermissionDeniedError):
        _save(user=pm, change_order=draft)
    assert ChangeOrder.objects.count() == 1
    draft.refresh_from_db()
    assert draft.description == "Scope extension"


def test_consultants_and_auditors_cannot_raise_one():
    project = ProjectFactory()
    for group in ("consultant", "auditor", "collections"):
        with pytest.raises(PermissionDeniedError):
            _save(user=UserFactory(groups=[group]), contract=project.contract)
    assert not ChangeOrder.objects.exists()


def test_a_closed_contract_foreign_milestones_and_submitted_orders_are_refused():
    pm = UserFactory(groups=["project_manager"])
    project = ProjectFactory(project_manager=pm)
    other = ProjectFactory(project_manager=pm)  # the PM's too, but another contract
    with pytest.raises(ApplicationError, match="own projects"):
        change_order_draft_save(
            user=pm, contract=project.contract, description="x", cap_delta=Decimal("0"), rates=[],
            milestones=[MilestoneTerm(project_id=other.pk, name="Elsewhere", amount=Decimal("10"))],
        )
    submitted = ChangeOrderFactory(contract=project.contract, status=ChangeOrder.Status.SUBMITTED)
    with pytest.raises(ApplicationError, match="only a draft"):
        _save(user=pm, change_order=submitted)
    Contract.objects.filter(pk=project.contract.pk).update(status=Contract.Status.CLOSED)
    with pytest.raises(ApplicationError, match="closed"):
        _save(user=pm, contract=project.contract)
    assert ChangeOrder.objects.count() == 1


def test_finance_may_raise_one_too():
    project = ProjectFactory()
    co = _save(user=UserFactory(groups=["finance_analyst"]), contract=project.contract)
    assert co.status == ChangeOrder.Status.DRAFT and co.code == "CO-01"
