"""A PM raises a change order in the portal: a draft on a contract of their projects, then submits it."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.services.defaults import ensure_approval_defaults
from billing.models import ChangeOrder, Contract
from tests.factories import ChangeOrderFactory, ContractFactory, ProjectFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return UserFactory(username="pm-co", groups=["project_manager"])


@pytest.fixture
def project(pm):
    return ProjectFactory(project_manager=pm, contract=ContractFactory(code="C-CO-OURS", fixed_fee=True))


def _body(contract=None, action="save", **extra) -> dict:
    body = {
        "description": "Two more workshop days and a senior rate from May",
        "cap_delta": "3000.00",
        "signed_on": "2025-04-20",
        "action": action,
        "rates-TOTAL_FORMS": "1", "rates-INITIAL_FORMS": "0",
        "milestones-TOTAL_FORMS": "1", "milestones-INITIAL_FORMS": "0",
    }
    if contract is not None:
        body["contract"] = contract.pk
    body.update(extra)
    return body


def test_pm_raises_a_draft_with_a_rate_and_a_milestone_then_submits_it(client, pm, project):
    ensure_approval_defaults()
    senior = RoleFactory(code="SENIOR")
    client.force_login(pm)
    page = client.get(reverse("approvals:pm_change_order_new"), {"contract": project.contract.code})
    assert page.status_code == 200
    assert "Raise a change order" in page.content.decode()
    assert 'href="/approvals/change-orders/new/' in client.get(reverse("approvals:pm_change_orders")).content.decode()

    response = client.post(reverse("approvals:pm_change_order_new"), _body(
        project.contract,
        **{"rates-0-role": senior.pk, "rates-0-rate": "180.00", "rates-0-effective_from": "2025-05-01",
           "milestones-0-project": project.pk, "milestones-0-name": "Extra workshop", "milestones-0-amount": "3000.00",
           "milestones-0-due_date": "2025-06-30"},
    ))
    co = ChangeOrder.objects.get(contract=project.contract)
    assert response.status_code == 303 and response.url == reverse("approvals:pm_change_order_edit", args=[co.pk])
    assert (co.code, co.status, co.cap_delta) == ("CO-01", ChangeOrder.Status.DRAFT, Decimal("3000.00"))
    assert [(r.role_id, r.rate, r.effective_from) for r in co.rates.all()] == [
        (senior.pk, Decimal("180.00"), datetime.date(2025, 5, 1))
    ]
    assert [(m.project_id, m.name) for m in co.milestones.all()] == [(project.pk, "Extra workshop")]
    assert co.history.first().history_user == pm

    edit = client.get(reverse("approvals:pm_change_order_edit", args=[co.pk]))
    assert edit.status_code == 200 and "Extra workshop" in edit.content.decode()
    response = client.post(reverse("approvals:pm_change_order_edit", args=[co.pk]), _body(action="submit"))
    assert response.status_code == 303 and response.url == reverse("approvals:pm_change_orders")
    co.refresh_from_db()
    assert co.status == ChangeOrder.Status.SUBMITTED and co.submitted_by == pm
    assert co.rates.count() == 0 and co.milestones.count() == 0  # the submitted form had no rows: terms replaced
    # Submitted: no longer edited here.
    response = client.get(reverse("approvals:pm_change_order_edit", args=[co.pk]))
    assert response.status_code == 303


def test_a_second_change_order_gets_the_next_code(client, pm, project):
    ChangeOrderFactory(contract=project.contract, code="CO-01")
    client.force_login(pm)
    client.post(reverse("approvals:pm_change_order_new"), _body(project.contract, **{"rates-TOTAL_FORMS": "0",
                                                                                     "milestones-TOTAL_FORMS": "0"}))
    assert set(ChangeOrder.objects.values_list("code", flat=True)) == {"CO-01", "CO-02"}


def test_an_incomplete_rate_row_is_an_error_and_nothing_is_saved(client, pm, project):
    client.force_login(pm)
    response = client.post(reverse("approvals:pm_change_order_new"), _body(project.contract, **{"rates-0-rate": "99"}))
    assert response.status_code == 200
    assert "A new rate needs a role, a rate and the date it applies from." in response.content.decode()
    assert not ChangeOrder.objects.exists()


def test_another_pms_contract_is_refused(client, pm, project):
    theirs = ProjectFactory(project_manager=UserFactory(groups=["project_manager"]), contract=ContractFactory(
        code="C-CO-THEIRS"))
    draft = ChangeOrderFactory(contract=theirs.contract)
    client.force_login(pm)
    assert client.get(reverse("approvals:pm_change_order_new"), {"contract": "C-CO-THEIRS"}).status_code == 403
    assert client.get(reverse("approvals:pm_change_order_new"), {"contract": "C-NOPE"}).status_code == 404
    response = client.post(reverse("approvals:pm_change_order_new"), _body(theirs.contract, **{
        "rates-TOTAL_FORMS": "0", "milestones-TOTAL_FORMS": "0"}))
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert client.get(reverse("approvals:pm_change_order_edit", args=[draft.pk])).status_code == 403
    assert client.post(reverse("approvals:pm_change_order_edit", args=[draft.pk]), _body()).status_code == 403
    assert ChangeOrder.objects.count() == 1
    draft.refresh_from_db()
    assert draft.description == "Scope extension"


def test_consultants_and_finance_get_403(client, project):
    for group in ("consultant", "finance_analyst", "auditor"):
        client.force_login(UserFactory(groups=[group], is_staff=group != "consultant"))
        assert client.get(reverse("approvals:pm_change_order_new")).status_code == 403, group


def test_a_closed_contract_is_not_offered(client, pm, project):
    Contract.objects.filter(pk=project.contract.pk).update(status=Contract.Status.CLOSED)
    client.force_login(pm)
    assert client.get(reverse("approvals:pm_change_order_new"), {"contract": project.contract.code}).status_code == 403
