"""Segregation of duties, policy routes and reasons: every way around them, as every role.

Each test is one bypass attempt (docs/controls.md: `sod`, `policy-route`, `reason-required`). The person
who prepared, booked, completed or submitted something tries to approve it themselves — through the
service, the approval engine, the portal and Django admin — while holding, on top of the role that
would let them approve, each role of kernel/roles.py (and as a superuser). The assertion is always on
the database: the subject is still waiting, nothing was numbered or approved.
"""

from __future__ import annotations

import contextlib
import datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.services import approval_approve, approval_reject, approval_request_cancel, delegation_create
from billing.models import ChangeOrder, Invoice, Milestone, TimeEntry
from billing.services.change_orders import change_order_approve, change_order_reject, change_order_submit
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_approve, invoice_reject
from billing.services.milestones import milestone_approve, milestone_complete
from billing.services.work import time_entry_create, work_approve, work_reject, work_submit
from kernel.roles import ALL_ROLES, FINANCE_ANALYST, FINANCE_CONTROLLER, PROJECT_MANAGER
from tests.controls.conftest import attempt, log_in, pending_invoice, pending_request
from tests.factories import (
    ChangeOrderFactory,
    ContractFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    InvoiceTaxFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RoleFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

AS_EVERY_ROLE = [*ALL_ROLES, "superuser"]
CHANNELS = ["service", "engine", "portal", "admin"]
WORK_DAY = datetime.date(2025, 3, 10)


def _user(base_role: str, extra: str, name: str):
    """A user holding `base_role` (the one that may approve) plus `extra` (or a superuser), staff."""
    groups = [base_role] if extra == "superuser" else [base_role, extra]
    return UserFactory(username=name, groups=groups, is_staff=True, is_superuser=extra == "superuser")


def _portal(user) -> Client:
    return log_in(Client(), user)


def _admin_action(user, changelist: str, action: str, pk: int, **extra) -> None:
    log_in(Client(), user).post(reverse(changelist), {"action": action, "_selected_action": [pk], **extra})


def _approve_request(subject, user) -> None:
    request = pending_request(subject)
    assert request is not None
    approval_approve(request=request, user=user, comment="Looks right to me")


# --- nobody approves what they prepared -------------------------------------------------------------


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("extra", AS_EVERY_ROLE)
def test_the_preparer_of_an_invoice_never_approves_it(extra, channel):
    preparer = _user(FINANCE_ANALYST, extra, "ctl-preparer")
    invoice = pending_invoice(prepared_by=preparer)

    if channel == "service":
        refusal = attempt(lambda: invoice_approve(invoice=invoice, user=preparer, comment="mine"))
        assert refusal is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(invoice, preparer)) is not None
    elif channel == "portal":
        _portal(preparer).post(reverse("billing:invoice_approve", args=[invoice.pk]), {"comment": "mine"})
    else:
        _admin_action(preparer, "admin:approvals_approvalrequest_changelist", "approval_approve",
                      pending_request(invoice).pk)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None
    assert pending_request(invoice).decisions.count() == 0


def _posted_invoice():
    invoice = InvoiceFactory(status="posted", subtotal=Decimal("1000.00"), tax_total=Decimal("190.00"),
                             total=Decimal("1190.00"))
    InvoiceLineFactory(invoice=invoice, quantity=Decimal("10.00"), unit_price=Decimal("100.0000"))
    InvoiceTaxFactory(invoice=invoice, base=Decimal("1000.00"))
    Invoice.objects.filter(pk=invoice.pk).update(number=f"{invoice.entity.code}-2025-000001")
    invoice.refresh_from_db()
    return invoice


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", ["service", "engine", "portal"])
@pytest.mark.parametrize("extra", [FINANCE_CONTROLLER, "superuser"])
def test_whoever_makes_a_credit_note_never_approves_it(extra, channel):
    maker = _user(FINANCE_ANALYST, extra, "ctl-credit-maker")
    credit_note = credit_note_create(invoice=_posted_invoice(), user=maker, reason="Customer complaint",
                                     amount=Decimal("119.00"))
    assert credit_note.status == Invoice.Status.PENDING_APPROVAL

    if channel == "service":
        assert attempt(lambda: invoice_approve(invoice=credit_note, user=maker)) is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(credit_note, maker)) is not None
    else:
        _portal(maker).post(reverse("billing:invoice_approve", args=[credit_note.pk]), {"comment": "ok"})

    credit_note.refresh_from_db()
    assert credit_note.status == Invoice.Status.PENDING_APPROVAL and credit_note.number is None


# --- nobody approves their own time -----------------------------------------------------------------


def _own_time(booker):
    """`booker` manages the project and books (and submits) time on it."""
    project = ProjectFactory(project_manager=booker)
    person = PersonFactory(user=booker, role=RoleFactory(code="CONSULTANT"))
    entry = time_entry_create(person=person, project=project, date=WORK_DAY, hours="6", description="Own work",
                              user=booker)
    return work_submit(item=entry, user=booker)


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("extra", AS_EVERY_ROLE)
def test_nobody_approves_their_own_time(extra, channel):
    booker = _user(PROJECT_MANAGER, extra, "ctl-booker")
    entry = _own_time(booker)
    assert entry.status == TimeEntry.Status.SUBMITTED

    if channel == "service":
        assert attempt(lambda: work_approve(item=entry, user=booker)) is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(entry, booker)) is not None
    elif channel == "portal":
        _portal(booker).post(reverse("approvals:pm_time_approve_week"), {"time": [entry.pk]})
    else:
        _admin_action(booker, "admin:billing_timeentry_changelist", "work_approve", entry.pk)

    entry.refresh_from_db()
    assert entry.status == TimeEntry.Status.SUBMITTED and entry.approved_by_id is None


# --- nobody approves a milestone they completed -----------------------------------------------------


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("extra", AS_EVERY_ROLE)
def test_whoever_completed_a_milestone_never_approves_it(extra, channel):
    pm = _user(PROJECT_MANAGER, extra, "ctl-completer")
    milestone = MilestoneFactory(project=ProjectFactory(contract=ContractFactory(fixed_fee=True), project_manager=pm))
    milestone = milestone_complete(milestone=milestone, user=pm, evidence="Signed acceptance")

    if channel == "service":
        assert attempt(lambda: milestone_approve(milestone=milestone, user=pm)) is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(milestone, pm)) is not None
    elif channel == "portal":
        _portal(pm).post(reverse("approvals:pm_milestone_action", args=[milestone.pk, "approve"]), {})
    else:
        _admin_action(pm, "admin:billing_milestone_changelist", "milestone_approve", milestone.pk)

    milestone.refresh_from_db()
    assert milestone.status == Milestone.Status.COMPLETED and milestone.approved_by_id is None


# --- nobody approves a change order they submitted ---------------------------------------------------


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("extra", AS_EVERY_ROLE)
def test_whoever_submitted_a_change_order_never_approves_it(extra, channel):
    pm = _user(PROJECT_MANAGER, extra, "ctl-submitter")
    contract = ContractFactory(cap=Decimal("100000.00"))
    ProjectFactory(contract=contract, project_manager=pm)
    change_order = change_order_submit(change_order=ChangeOrderFactory(contract=contract, cap_delta=Decimal("5000")),
                                       user=pm)

    if channel == "service":
        assert attempt(lambda: change_order_approve(change_order=change_order, user=pm, reason="ok")) is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(change_order, pm)) is not None
    elif channel == "portal":
        _portal(pm).post(reverse("approvals:pm_change_order_action", args=[change_order.pk, "approve"]),
                         {"reason": "ok", "comment": "ok"})
    else:
        _admin_action(pm, "admin:billing_changeorder_changelist", "change_order_approve", change_order.pk)

    change_order.refresh_from_db()
    assert change_order.status == ChangeOrder.Status.SUBMITTED
    assert not contract.rates.exists()


# --- nobody decides two steps of one route ----------------------------------------------------------


@pytest.mark.control("sod")
@pytest.mark.parametrize("channel", ["service", "engine", "portal", "admin"])
def test_nobody_decides_two_steps_of_the_same_route(channel):
    both = UserFactory(username="ctl-both", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER], is_staff=True)
    invoice = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]), total="50000.00")
    invoice_approve(invoice=invoice, user=both, comment="Step 1")  # analyst, controller: step 1 is theirs
    assert pending_request(invoice).current_step == 2

    if channel == "service":
        assert attempt(lambda: invoice_approve(invoice=invoice, user=both, comment="Step 2 too")) is not None
    elif channel == "engine":
        assert attempt(lambda: _approve_request(invoice, both)) is not None
    elif channel == "portal":
        _portal(both).post(reverse("billing:invoice_approve", args=[invoice.pk]), {"comment": "Step 2 too"})
    else:
        _admin_action(both, "admin:approvals_approvalrequest_changelist", "approval_approve",
                      pending_request(invoice).pk)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None


# --- a delegate and the person they stand in for count as one ----------------------------------------


@pytest.mark.control("sod")
def test_a_delegate_cannot_approve_their_own_time_on_their_managers_behalf():
    consultant = UserFactory(username="ctl-own-delegate", groups=["consultant"])
    person = PersonFactory(user=consultant, role=RoleFactory(code="CONSULTANT"))
    project = ProjectFactory()
    entry = work_submit(item=time_entry_create(person=person, project=project, date=WORK_DAY, hours="5",
                                               description="Work", user=consultant), user=consultant)
    today = timezone.localdate()
    pm = project.project_manager
    with contextlib.suppress(Exception):  # a stricter delegation rule refusing the delegate is fine too
        delegation_create(delegator=pm, delegate=consultant, starts_on=today, ends_on=today, reason="Away", user=pm)

    assert attempt(lambda: work_approve(item=entry, user=consultant)) is not None
    assert attempt(lambda: _approve_request(entry, consultant)) is not None
    entry.refresh_from_db()
    assert entry.status == TimeEntry.Status.SUBMITTED


@pytest.mark.control("sod")
def test_a_delegate_cannot_approve_for_a_principal_who_prepared_the_invoice():
    preparer = UserFactory(username="ctl-barred-principal", groups=[FINANCE_ANALYST])
    deputy = UserFactory(username="ctl-deputy", groups=[PROJECT_MANAGER])
    invoice = pending_invoice(prepared_by=preparer)
    today = timezone.localdate()
    with contextlib.suppress(Exception):  # a stricter delegation rule refusing the delegate is fine too
        delegation_create(delegator=preparer, delegate=deputy, starts_on=today, ends_on=today, reason="Away",
                          user=preparer)

    assert attempt(lambda: _approve_request(invoice, deputy)) is not None
    assert attempt(lambda: invoice_approve(invoice=invoice, user=deputy)) is not None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None


# --- policy routes: nobody leaves the route ---------------------------------------------------------


@pytest.mark.control("policy-route")
@pytest.mark.parametrize("role", [*ALL_ROLES, "superuser"])
def test_cancelling_the_route_alone_is_refused_so_nobody_decides_outside_it(role):
    """Found by this suite: cancelling a pending request left the invoice awaiting approval with no route, so
    one person approved a 198k invoice alone (the service's direct path). Now a person may cancel a request
    only with its subject."""
    preparer = UserFactory(username="ctl-route-preparer", groups=[FINANCE_ANALYST])
    invoice = pending_invoice(prepared_by=preparer, total="198000.00")
    request = pending_request(invoice)
    assert request.policy.steps.count() == 3
    canceller = _user(FINANCE_ANALYST, role, "ctl-canceller") if role != FINANCE_ANALYST else preparer

    attempt(lambda: approval_request_cancel(request=request, user=canceller, reason="Skip the route"))
    lone = UserFactory(username="ctl-lone-approver", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER])
    attempt(lambda: invoice_approve(invoice=invoice, user=lone, comment="alone"))

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None
    request.refresh_from_db()
    assert request.status == "pending" and request.current_step == 2


@pytest.mark.control("policy-route")
def test_cancelling_the_route_in_admin_is_refused():
    controller = UserFactory(username="ctl-admin-canceller", groups=[FINANCE_CONTROLLER], is_staff=True)
    invoice = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]), total="198000.00")
    request = pending_request(invoice)

    _admin_action(controller, "admin:approvals_approvalrequest_changelist", "approval_request_cancel", request.pk,
                  apply="1", reason="Skip the route")

    request.refresh_from_db()
    assert request.status == "pending"


@pytest.mark.control("policy-route")
def test_withdrawing_a_credit_note_still_cancels_its_route():
    """The fix keeps the legitimate path: the subject leaves the route first, then its request is cancelled."""
    from billing.services.credit_notes import credit_note_cancel

    analyst = UserFactory(username="ctl-cn-analyst", groups=[FINANCE_ANALYST])
    credit_note = credit_note_create(invoice=_posted_invoice(), user=analyst, reason="Complaint",
                                     amount=Decimal("119.00"))
    credit_note_cancel(credit_note=credit_note, user=analyst, reason="Raised in error")

    credit_note.refresh_from_db()
    assert credit_note.status == Invoice.Status.CANCELLED and pending_request(credit_note) is None


@pytest.mark.control("policy-route")
@pytest.mark.parametrize("channel", ["service", "portal"])
def test_an_analyst_alone_takes_a_two_step_invoice_only_to_its_second_step(channel):
    analyst = UserFactory(username="ctl-step-one", groups=[FINANCE_ANALYST], is_staff=True)
    invoice = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]), total="50000.00")

    if channel == "service":
        invoice_approve(invoice=invoice, user=analyst, comment="Step 1")
    else:
        _portal(analyst).post(reverse("billing:invoice_approve", args=[invoice.pk]), {"comment": "Step 1"})
    assert attempt(lambda: invoice_approve(invoice=invoice, user=analyst, comment="again")) is not None

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None
    assert pending_request(invoice).current_step == 2


# --- a rejection needs a reason -----------------------------------------------------------------------


@pytest.mark.control("reason-required")
@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
@pytest.mark.parametrize("subject", ["invoice", "engine", "time", "change_order"])
def test_a_rejection_without_a_reason_is_refused(subject, reason):
    controller = UserFactory(username="ctl-rejecter", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER])
    if subject in ("invoice", "engine"):
        target = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]))
        reject = (
            (lambda: invoice_reject(invoice=target, user=controller, reason=reason)) if subject == "invoice"
            else (lambda: approval_reject(request=pending_request(target), user=controller, reason=reason))
        )
        waiting = Invoice.Status.PENDING_APPROVAL
    elif subject == "time":
        consultant = UserFactory(groups=["consultant"])
        project = ProjectFactory(project_manager=UserFactory(username="ctl-rej-pm", groups=[PROJECT_MANAGER]))
        target = work_submit(item=time_entry_create(
            person=PersonFactory(user=consultant), project=project, date=WORK_DAY, hours="2", user=consultant,
        ), user=consultant)
        reject = lambda: work_reject(item=target, user=project.project_manager, reason=reason)  # noqa: E731
        waiting = TimeEntry.Status.SUBMITTED
    else:
        contract = ContractFactory()
        ProjectFactory(contract=contract)
        target = change_order_submit(change_order=ChangeOrderFactory(contract=contract), user=controller)
        reject = lambda: change_order_reject(change_order=target, user=controller, reason=reason)  # noqa: E731
        waiting = ChangeOrder.Status.SUBMITTED

    refusal = attempt(reject)

    assert refusal is not None and getattr(refusal, "code", "") == "reason_required"
    target.refresh_from_db()
    assert target.status == waiting


@pytest.mark.control("reason-required")
@pytest.mark.parametrize("url_name", ["billing:invoice_reject", "billing:invoice_override", "billing:invoice_cancel"])
def test_the_portal_refuses_a_reasonless_reject_override_or_cancel(url_name):
    controller = UserFactory(username="ctl-portal-rejecter", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER])
    invoice = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]))
    before = invoice.status

    _portal(controller).post(reverse(url_name, args=[invoice.pk]), {"reason": " ", "comment": " "})

    invoice.refresh_from_db()
    assert invoice.status == before
