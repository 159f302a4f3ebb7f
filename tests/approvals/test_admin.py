"""Admin of the approvals app: every page renders, policies edit with their steps, actions go through services."""

from __future__ import annotations

import datetime

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from approvals.models import ApprovalPolicy, ApprovalRequest, ApprovalStep, Delegation, Reminder
from approvals.services import approval_decide, approval_override_request, approval_request_open
from kernel.roles import sync_role_permissions
from tests.approvals.conftest import credit_note, pending_invoice
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MODELS = [m for m in apps.get_app_config("approvals").get_models() if not m.__name__.startswith("Historical")]
STANDALONE = [m for m in MODELS if m is not ApprovalStep]  # steps are edited inline on their policy


@pytest.fixture(autouse=True)
def _role_permissions():
    """Groups hold their permissions (a reused test database may have lost them to a flush)."""
    sync_role_permissions()


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def one_of_each(analyst, controller):
    request = approval_request_open(subject=pending_invoice("50000.00"))
    approval_decide(request=request, user=analyst, decision="approve", comment="ok")
    approval_override_request(request=request, user=controller, reason="Client deadline")
    Delegation.objects.create(
        delegator=analyst,
        delegate=UserFactory(),
        starts_on=datetime.date(2025, 4, 1),
        ends_on=datetime.date(2025, 4, 2),
    )
    Reminder.objects.create(
        kind="missing_time", recipient=analyst, subject_key="timesheet:2025-03", sent_on=datetime.date(2025, 4, 3)
    )
    return request


def test_every_approvals_model_is_registered_and_steps_only_inline():
    assert [m.__name__ for m in STANDALONE if not admin.site.is_registered(m)] == []
    assert not admin.site.is_registered(ApprovalStep)


@pytest.mark.parametrize("model", STANDALONE, ids=lambda m: m.__name__)
def test_superuser_sees_every_page(client, superuser, one_of_each, model):
    client.force_login(superuser)
    obj = model.objects.first()

    assert client.get(_url(model, "changelist")).status_code == 200
    assert client.get(_url(model, "change", obj.pk)).status_code == 200
    add = client.get(_url(model, "add"))
    assert add.status_code == (200 if model in (ApprovalPolicy, Delegation) else 403)


def test_auditor_reads_requests_and_changes_nothing(client, one_of_each):
    auditor = UserFactory(is_staff=True, groups=["auditor"])
    client.force_login(auditor)

    assert client.get(_url(ApprovalRequest, "change", one_of_each.pk)).status_code == 200
    assert client.get(_url(ApprovalPolicy, "add")).status_code == 403


def test_a_policy_is_edited_with_its_steps_inline(client, superuser):
    client.force_login(superuser)
    data = {
        "name": "Retainer invoices",
        "description": "",
        "subject_type": "invoice",
        "priority": "50",
        "active": "on",
        "min_amount": "",
        "max_amount": "",
        "billing_model": "retainer",
        "requires_warning": "",
        "min_cap_growth_pct": "",
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-order": "1",
        "steps-0-approver_kind": "role",
        "steps-0-role": "finance_analyst",
        "steps-0-sla_hours": "24",
        "steps-0-escalation_role": "finance_controller",
        "steps-1-order": "2",
        "steps-1-approver_kind": "project_manager",
        "steps-1-role": "",
        "steps-1-sla_hours": "48",
        "steps-1-escalation_role": "finance_controller",
    }

    response = client.post(_url(ApprovalPolicy, "add"), data)

    assert response.status_code == 302, response.context["errors"] if response.context else response
    policy = ApprovalPolicy.objects.get(name="Retainer invoices")
    assert [(s.order, s.approver_kind) for s in policy.steps.all()] == [(1, "role"), (2, "project_manager")]
    assert policy.history.get().history_user == superuser
    assert (
        "Finance analyst (24 h) → Project manager (48 h)"
        in client.get(_url(ApprovalPolicy, "changelist")).content.decode()
    )


def test_a_role_step_without_a_role_is_refused(client, superuser):
    client.force_login(superuser)
    policy = ApprovalPolicy.objects.get(name="Credit note")
    step = policy.steps.get()
    data = {
        "name": policy.name,
        "description": policy.description,
        "subject_type": policy.subject_type,
        "priority": policy.priority,
        "active": "on",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "1",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-id": step.pk,
        "steps-0-policy": policy.pk,
        "steps-0-order": "1",
        "steps-0-approver_kind": "role",
        "steps-0-role": "",
        "steps-0-sla_hours": "48",
        "steps-0-escalation_role": "finance_controller",
    }

    response = client.post(_url(ApprovalPolicy, "change", policy.pk), data)

    assert response.status_code == 200  # the form comes back with the error
    step.refresh_from_db()
    assert step.role == "finance_controller"


def test_controller_approves_in_admin_through_the_service(client):
    controller = UserFactory(is_staff=True, groups=["finance_controller"])
    note = credit_note(prepared_by=controller)
    other = credit_note()
    own = approval_request_open(subject=note)
    theirs = approval_request_open(subject=other)
    client.force_login(controller)

    data = {"action": "approval_approve", ACTION_CHECKBOX_NAME: [own.pk, theirs.pk], "index": 0}
    response = client.post(_url(ApprovalRequest, "changelist"), data, follow=True)

    own.refresh_from_db()
    theirs.refresh_from_db()
    assert own.status == "pending" and theirs.status == "approved"
    texts = _messages(response)
    assert any("You prepared credit note" in t for t in texts), texts
    assert "1 approval request approved at their open step." in texts


def test_reject_in_admin_asks_for_the_reason(client):
    controller = UserFactory(is_staff=True, groups=["finance_controller"])
    request = approval_request_open(subject=credit_note())
    client.force_login(controller)

    page = client.post(
        _url(ApprovalRequest, "changelist"),
        {"action": "approval_reject", ACTION_CHECKBOX_NAME: [request.pk], "index": 0},
    )
    assert 'name="reason"' in page.content.decode()

    data = {"action": "approval_reject", ACTION_CHECKBOX_NAME: [request.pk], "apply": "1", "reason": "Duplicate credit"}
    client.post(_url(ApprovalRequest, "changelist"), data, follow=True)

    request.refresh_from_db()
    assert request.status == "rejected" and request.outcome_reason == "Duplicate credit"
    assert request.subject.status == "draft"
