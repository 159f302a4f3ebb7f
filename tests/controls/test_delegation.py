"""Control: delegation hands approval power only to an eligible delegate (docs/rules/approvals.md, issue #12 finding 1).

A delegate must hold, at decision time, a role the step accepts; auditors, consultants
and API service users are never delegates; segregation of duties is checked against the
delegate and the principal; every step checks the subject. Each test tries one way
around, through the service, the portal, the admin or the queue. Which of them passed
on the code before this control was built is said in each docstring ("old code").
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from approvals.forms import DelegationForm
from approvals.models import Delegation
from approvals.selectors import my_approvals
from approvals.services import approval_decide, approval_request_open, delegation_create
from approvals.services.defaults import ensure_approval_defaults
from billing.models import Invoice
from integrations.services.clients import integration_client_create
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError, SegregationOfDutiesError
from kernel.roles import sync_role_permissions
from tests.factories import InvoiceFactory, MilestoneFactory, ProjectFactory, TimeEntryFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("delegation")]


@pytest.fixture(autouse=True)
def _policies():
    ensure_approval_defaults()


def today() -> datetime.date:
    return timezone.localdate()


def delegate_row(delegator, delegate) -> Delegation:
    """A delegation as the table may hold it: made before this control, or before the delegate's roles changed."""
    return Delegation.objects.create(
        delegator=delegator, delegate=delegate, starts_on=today(), ends_on=today() + datetime.timedelta(days=3)
    )


def pending_invoice(total: str = "50000.00", **kwargs) -> Invoice:
    return InvoiceFactory(status="pending_approval", subtotal=Decimal(total), total=Decimal(total), **kwargs)


def completed_milestone_request():
    milestone = MilestoneFactory(status="completed", project=ProjectFactory(contract__fixed_fee=True))
    milestone.completed_by = UserFactory(groups=["project_manager"])  # another PM marked it completed
    milestone.save(update_fields=["completed_by"])
    return milestone, approval_request_open(subject=milestone)


def service_user(name: str = "psa"):
    client, _token, _secret = integration_client_create(
        name=name, scopes=["write:billing", "write:masterdata"], user=UserFactory(is_superuser=True)
    )
    return client.user


# --- creating a delegation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        (["auditor"], "auditor"),
        (["auditor", "finance_controller"], "auditor"),
        (["consultant"], "no approving role"),
        (["collections"], "no approving role"),
        ([], "no approving role"),
    ],
)
def test_the_service_refuses_an_ineligible_delegate(groups, match):
    """Old code: accepted every one of them (only self and inactive accounts were refused)."""
    controller = UserFactory(groups=["finance_controller"])
    with pytest.raises(ApplicationError, match=match):
        delegation_create(
            delegator=controller, delegate=UserFactory(groups=groups), starts_on=today(), ends_on=today(),
            user=controller,
        )
    assert not Delegation.objects.exists()


def test_the_service_refuses_an_api_service_user_as_delegate():
    """Old code: accepted (the service user holds finance_analyst and billing_admin through its scopes)."""
    controller = UserFactory(groups=["finance_controller"])
    with pytest.raises(ApplicationError, match="API service user"):
        delegation_create(
            delegator=controller, delegate=service_user(), starts_on=today(), ends_on=today(), user=controller
        )


def test_the_delegation_form_offers_only_eligible_delegates():
    """Old code: offered every active user with a role — auditor and API service users included."""
    me = UserFactory(groups=["finance_controller"])
    pm = UserFactory(groups=["project_manager"])
    analyst = UserFactory(groups=["finance_analyst"])
    ineligible = [
        UserFactory(groups=["auditor"]),
        UserFactory(groups=["consultant"]),
        UserFactory(groups=["auditor", "finance_analyst"]),
        service_user("crm"),
        me,
    ]
    offered = set(DelegationForm(user=me).fields["delegate"].queryset)
    assert {pm, analyst} <= offered
    assert [u for u in ineligible if u in offered] == []


def test_posting_an_auditor_to_the_delegation_page_is_refused(client):
    """Old code: the auditor became the controller's delegate."""
    controller = UserFactory(groups=["finance_controller"])
    auditor = UserFactory(groups=["auditor"])
    client.force_login(controller)
    client.post(
        reverse("approvals:delegation"),
        {"delegate": auditor.pk, "starts_on": today().isoformat(), "ends_on": today().isoformat()},
    )
    assert not Delegation.objects.filter(delegate=auditor).exists()


def test_django_admin_cannot_create_or_edit_a_delegation_around_the_service(client):
    """Old code: admin saved the row as typed (any delegate) and let a live delegation's delegate be changed."""
    sync_role_permissions()
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    controller = UserFactory(groups=["finance_controller"])
    auditor = UserFactory(groups=["auditor"])
    client.force_login(admin_user)
    add = reverse("admin:approvals_delegation_add")
    client.post(add, {"delegator": controller.pk, "delegate": auditor.pk, "starts_on": today().isoformat(),
                      "ends_on": today().isoformat(), "reason": "x"})
    assert not Delegation.objects.exists()

    pm = UserFactory(groups=["project_manager"])
    ok = client.post(add, {"delegator": controller.pk, "delegate": pm.pk, "starts_on": today().isoformat(),
                           "ends_on": today().isoformat(), "reason": "Holiday"})
    assert ok.status_code == 302
    delegation = Delegation.objects.get()
    assert delegation.created_by == admin_user
    change = reverse("admin:approvals_delegation_change", args=[delegation.pk])
    client.post(change, {"delegator": controller.pk, "delegate": auditor.pk, "starts_on": today().isoformat(),
                         "ends_on": today().isoformat(), "reason": "x"})
    delegation.refresh_from_db()
    assert delegation.delegate == pm


# --- deciding as a delegate --------------------------------------------------------------------------------


def test_finding_1_an_auditor_delegate_cannot_reject_a_milestone_through_the_portal(client):
    """The reproduction of finding 1. Old code: the auditor's rejection was recorded (HTTP 303, 'rejected')."""
    milestone, request = completed_milestone_request()
    pm = milestone.project.project_manager
    auditor = UserFactory(groups=["auditor"])
    delegate_row(pm, auditor)
    client.force_login(auditor)

    client.post(reverse("approvals:request_decide", args=[request.pk]),
                {"decision": "reject", "comment": "Not delivered", "step": 1})

    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()


@pytest.mark.parametrize("groups", [["auditor"], ["consultant"], ["collections"], []])
def test_an_ineligible_delegate_decides_no_step_and_sees_no_queue(groups):
    """Old code: each of them approved the PM's time on the PM's behalf, and saw it in their queue."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    deputy = UserFactory(groups=groups)
    delegate_row(pm, deputy)
    request = approval_request_open(subject=entry)

    assert not my_approvals(deputy).filter(pk=request.pk).exists()
    with pytest.raises(PermissionDeniedError):
        approval_decide(request=request, user=deputy, decision="approve")
    with pytest.raises(PermissionDeniedError):
        approval_decide(request=request, user=deputy, decision="reject", comment="No")
    assert not request.decisions.exists()


def test_an_api_service_user_decides_nothing_directly_or_as_a_delegate():
    """Old code: the service user (finance_analyst by scope) approved an analyst step, and a PM's time as delegate."""
    robot = service_user()
    invoice_request = approval_request_open(subject=pending_invoice("500.00"))
    with pytest.raises(PermissionDeniedError, match="service users"):
        approval_decide(request=invoice_request, user=robot, decision="approve")

    entry = TimeEntryFactory(status="submitted")
    delegate_row(entry.project.project_manager, robot)
    time_request = approval_request_open(subject=entry)
    with pytest.raises(PermissionDeniedError):
        approval_decide(request=time_request, user=robot, decision="approve")
    assert not invoice_request.decisions.exists() and not time_request.decisions.exists()


def test_a_delegate_whose_role_was_removed_after_the_delegation_is_refused():
    """Eligible when delegated, not when deciding. Old code: approved (the delegate's roles were never read)."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["project_manager"])
    delegation_create(delegator=pm, delegate=deputy, starts_on=today(), ends_on=today(), user=pm)
    request = approval_request_open(subject=entry)
    deputy.groups.set(Group.objects.filter(name="consultant"))  # moved to another job

    assert not my_approvals(deputy).filter(pk=request.pk).exists()
    with pytest.raises(PermissionDeniedError, match="no approving role"):
        approval_decide(request=request, user=deputy, decision="approve")


def test_a_delegate_who_became_an_auditor_is_refused():
    """Old code: approved."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["project_manager"])
    delegation_create(delegator=pm, delegate=deputy, starts_on=today(), ends_on=today(), user=pm)
    request = approval_request_open(subject=entry)
    deputy.groups.add(Group.objects.get(name="auditor"))

    with pytest.raises(PermissionDeniedError, match="auditor"):
        approval_decide(request=request, user=deputy, decision="approve")


def test_a_delegate_needs_a_role_the_step_accepts():
    """An analyst deputising for a PM: a PM step accepts PMs (and its escalation role, controllers).
    Old code: approved the PM's time on their behalf."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    analyst = UserFactory(groups=["finance_analyst"])
    delegation_create(delegator=pm, delegate=analyst, starts_on=today(), ends_on=today(), user=pm)
    request = approval_request_open(subject=entry)

    with pytest.raises(PermissionDeniedError, match="needs a role you do not hold"):
        approval_decide(request=request, user=analyst, decision="approve")
    assert not my_approvals(analyst).filter(pk=request.pk).exists()


def test_a_principal_whose_role_was_removed_gives_the_delegate_nothing():
    """The principal must be an approver of the step now. Old code: refused as well (guard)."""
    controller = UserFactory(groups=["finance_controller"])
    deputy = UserFactory(groups=["finance_controller"])
    request = approval_request_open(subject=pending_invoice())
    approval_decide(request=request, user=UserFactory(groups=["finance_analyst"]), decision="approve")
    delegation_create(delegator=controller, delegate=deputy, starts_on=today(), ends_on=today(), user=controller)
    controller.groups.set([])
    # The deputy is a controller themselves: they decide as themselves, not on the ex-controller's behalf.
    decided = approval_decide(request=request, user=deputy, decision="approve")
    assert decided.decisions.get(step_order=2).on_behalf_of is None


def test_segregation_of_duties_is_checked_against_the_principal():
    """The delegate acts for the preparer. Old code: refused as well (guard)."""
    preparer = UserFactory(groups=["finance_analyst"])
    deputy = UserFactory(groups=["finance_controller"])
    delegation_create(delegator=preparer, delegate=deputy, starts_on=today(), ends_on=today(), user=preparer)
    request = approval_request_open(subject=pending_invoice(prepared_by=preparer))
    with pytest.raises(SegregationOfDutiesError, match="so you cannot decide step 1 on"):
        approval_decide(request=request, user=deputy, decision="approve")


def test_segregation_of_duties_is_checked_against_the_delegate():
    """The PM's delegate booked the time themselves. Old code: refused as well (guard)."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    booker = entry.person.user
    booker.groups.add(Group.objects.get(name="project_manager"))
    delegation_create(delegator=pm, delegate=booker, starts_on=today(), ends_on=today(), user=pm)
    request = approval_request_open(subject=entry)
    with pytest.raises(SegregationOfDutiesError):
        approval_decide(request=request, user=booker, decision="approve")


def test_a_milestone_completer_cannot_approve_it_as_someone_elses_delegate():
    """Old code: refused as well (guard): the completer is barred whoever they act for."""
    milestone, request = completed_milestone_request()
    completer = milestone.completed_by
    delegation_create(delegator=milestone.project.project_manager, delegate=completer, starts_on=today(),
                      ends_on=today(), user=milestone.project.project_manager)
    with pytest.raises(SegregationOfDutiesError):
        approval_decide(request=request, user=completer, decision="approve")


def test_delegation_does_not_chain():
    """PM A → PM B → PM C: C gets nothing of A's. Old code: refused as well (one hop; guard)."""
    entry = TimeEntryFactory(status="submitted")
    a = entry.project.project_manager
    b, c = UserFactory(groups=["project_manager"]), UserFactory(groups=["project_manager"])
    delegation_create(delegator=a, delegate=b, starts_on=today(), ends_on=today(), user=a)
    delegation_create(delegator=b, delegate=c, starts_on=today(), ends_on=today(), user=b)
    request = approval_request_open(subject=entry)
    with pytest.raises(PermissionDeniedError, match="hold no delegation"):
        approval_decide(request=request, user=c, decision="approve")


def test_an_expired_delegation_gives_nothing():
    """Old code: refused as well (guard)."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["project_manager"])
    Delegation.objects.create(delegator=pm, delegate=deputy, starts_on=today() - datetime.timedelta(days=9),
                              ends_on=today() - datetime.timedelta(days=1))
    request = approval_request_open(subject=entry)
    with pytest.raises(PermissionDeniedError, match="hold no delegation"):
        approval_decide(request=request, user=deputy, decision="approve")


def test_an_eligible_delegate_still_decides_and_the_record_names_the_principal():
    """The control does not stop legitimate delegation (a controller deputising for a PM)."""
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["finance_controller"])
    delegation_create(delegator=pm, delegate=deputy, starts_on=today(), ends_on=today(), user=pm)
    request = approval_request_open(subject=entry)
    assert my_approvals(deputy).filter(pk=request.pk).exists()
    decided = approval_decide(request=request, user=deputy, decision="approve")
    assert (decided.decisions.get().approver, decided.decisions.get().on_behalf_of) == (deputy, pm)


# --- every step checks the subject ----------------------------------------------------------------------------


def test_a_non_final_step_is_not_recorded_on_a_subject_no_longer_awaiting_approval():
    """Finding 1, second half. Old code: step 1 of a 2-step route was recorded on a draft invoice."""
    invoice = pending_invoice()
    request = approval_request_open(subject=invoice)
    Invoice.objects.filter(pk=invoice.pk).update(status="draft")  # taken back without the request
    with pytest.raises(ConflictError, match="no longer awaiting approval"):
        approval_decide(request=request, user=UserFactory(groups=["finance_analyst"]), decision="approve")
    assert not request.decisions.exists()


# --- other doors ------------------------------------------------------------------------------------------------


def test_the_api_has_no_approval_decision_endpoint():
    """Approvals are decided by people in the portal; the API (tokens, service users) has no such route.
    Old code: none either (guard against one being added without the delegate checks)."""
    found = []

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                found.append(prefix + str(entry.pattern))

    walk(get_resolver().url_patterns)
    api = [route for route in found if route.startswith("api/")]
    assert api, "no API routes found"
    assert [r for r in api if "approv" in r or "decide" in r or "delegat" in r or "override" in r] == []


def test_decisions_cannot_be_written_in_django_admin(client):
    """ApprovalDecision/ApprovalRequest admin: no add, no edit. Old code: the same (guard)."""
    sync_role_permissions()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    request = approval_request_open(subject=pending_invoice("500.00"))
    assert client.get(reverse("admin:approvals_approvaldecision_add")).status_code == 403
    assert client.get(reverse("admin:approvals_approvalrequest_add")).status_code == 403
    client.post(reverse("admin:approvals_approvalrequest_change", args=[request.pk]),
                {"status": "approved", "current_step": 9})
    request.refresh_from_db()
    assert request.status == "pending" and request.current_step == 1
