"""Control: no single person skips a policy route (docs/rules/approvals.md, issue #12 finding 2).

An override of a pending route is an explicit action with a mandatory reason, requested
by one finance controller and confirmed by a second, different one; it is recorded as a
decision on every skipped step, shows on the invoice page, counts in the KPIs, and a
policy can forbid it. Each test tries one way around. Which of them passed on the code
before this control ("old code") is said in each docstring.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import ApprovalOverride, ApprovalPolicy, ApprovalRequest
from approvals.services import (
    approval_decide,
    approval_override_confirm,
    approval_override_request,
    approval_override_withdraw,
    approval_request_cancel,
    approval_request_open,
)
from approvals.services.defaults import ensure_approval_defaults
from billing.models import Invoice
from billing.services.invoices import invoice_approve, invoice_reject
from billing.services.work import work_approve
from insights.selectors import KpiFilters, route_overrides
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError, SegregationOfDutiesError
from kernel.roles import sync_role_permissions
from tests.factories import InvoiceFactory, TimeEntryFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("override")]

REASON = "Client signs off today; both reviewers are on leave"


@pytest.fixture(autouse=True)
def _policies():
    ensure_approval_defaults()


@pytest.fixture
def controller_a():
    return UserFactory(username="ctrl-a", first_name="Ada", last_name="Able", groups=["finance_controller"])


@pytest.fixture
def controller_b():
    return UserFactory(username="ctrl-b", first_name="Ben", last_name="Baker", groups=["finance_controller"])


def big_invoice(total: str = "198000.00", **kwargs) -> Invoice:
    """Analyst → controller → controller (the 100,000-and-above policy)."""
    return InvoiceFactory(status="pending_approval", subtotal=Decimal(total), total=Decimal(total), **kwargs)


def routed(invoice: Invoice) -> ApprovalRequest:
    return approval_request_open(subject=invoice)


def pending_of(invoice: Invoice) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(object_id=invoice.pk, subject_type="invoice", status="pending").first()


# --- the one-click path is gone -----------------------------------------------------------------------------


def test_finding_2_one_controller_cannot_approve_a_198k_invoice_in_one_click(client, controller_a):
    """The reproduction of finding 2 (invoice page, no comment).
    Old code: approved and numbered; the request was cancelled as 'Overridden'."""
    invoice = big_invoice()
    request = routed(invoice)
    client.force_login(controller_a)

    client.post(reverse("billing:invoice_approve", args=[invoice.pk]), {"comment": ""})

    invoice.refresh_from_db()
    request.refresh_from_db()
    assert invoice.status == "pending_approval" and not invoice.number
    assert request.status == "pending" and not request.decisions.exists()


def test_a_controller_outside_the_route_cannot_reject_either(controller_a):
    """Old code: rejected, and the request cancelled as overridden."""
    invoice = big_invoice()
    routed(invoice)
    with pytest.raises(PermissionDeniedError):
        invoice_reject(invoice=invoice, user=controller_a, reason="No")
    assert pending_of(invoice) is not None


def test_a_controller_cannot_skip_a_pms_time_approval(controller_a):
    """Old code: approved, the PM's request cancelled as overridden."""
    entry = TimeEntryFactory(status="submitted")
    approval_request_open(subject=entry)
    with pytest.raises(PermissionDeniedError):
        work_approve(item=entry, user=controller_a)
    entry.refresh_from_db()
    assert entry.status == "submitted"


def test_cancelling_the_request_opens_no_way_around_the_route(controller_a):
    """Cancel then approve. Old code: the approval went through the service's own rules alone.

    A person's cancel of a route still awaiting approval is refused (docs/controls.md, policy-route); and
    even after the system cancels a route, nobody decides outside it: the approval routes the invoice again.
    """
    invoice = big_invoice()
    request = routed(invoice)
    with pytest.raises(ApplicationError):
        approval_request_cancel(request=request, user=controller_a, reason="Revalidating")
    approval_request_cancel(request=request, user=None, reason="Revalidating")
    with pytest.raises(PermissionDeniedError):
        invoice_approve(invoice=invoice, user=controller_a)
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval" and not invoice.number
    # The attempt routed it again and was refused at step 1; an analyst now decides through a new request.
    analyst = UserFactory(groups=["finance_analyst"])
    invoice_approve(invoice=invoice, user=analyst)
    assert pending_of(invoice).decisions.get().approver == analyst


# --- four eyes -------------------------------------------------------------------------------------------------


def test_the_four_eyes_override_approves_with_a_decision_on_every_skipped_step(controller_a, controller_b):
    invoice = big_invoice()
    request = routed(invoice)
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    request.refresh_from_db()
    assert request.status == "pending" and override.status == "pending"  # one controller is not enough

    approval_override_confirm(override=override, user=controller_b, comment="Checked the SOW")

    request.refresh_from_db()
    override.refresh_from_db()
    invoice.refresh_from_db()
    assert request.status == "approved" and invoice.status in ("approved", "posted") and invoice.number
    decisions = list(request.decisions.order_by("step_order"))
    assert [d.step_order for d in decisions] == [1, 2, 3]
    assert all(d.override_id == override.pk and d.approver == controller_b for d in decisions)
    assert all(REASON in d.comment and "Ada Able" in d.comment for d in decisions)
    assert all(d.step_opened_at is None for d in decisions)  # kept out of approval latency
    assert (override.status, override.confirmed_by) == ("confirmed", controller_b)
    assert "confirmed by Ben Baker" in request.outcome_reason
    assert request.history.filter(history_change_reason__startswith="Override requested").exists()


def test_only_the_remaining_steps_are_overridden(controller_a, controller_b):
    invoice = big_invoice()
    request = routed(invoice)
    analyst = UserFactory(groups=["finance_analyst"])
    approval_decide(request=request, user=analyst, decision="approve", comment="Lines checked")
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    approval_override_confirm(override=override, user=controller_b)
    decisions = {d.step_order: d for d in request.decisions.all()}
    assert decisions[1].override_id is None and decisions[1].approver == analyst
    assert decisions[2].override_id == decisions[3].override_id == override.pk


def test_the_requester_cannot_confirm_their_own_override(controller_a):
    """Old code: one controller was enough (one click)."""
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(SegregationOfDutiesError, match="four eyes"):
        approval_override_confirm(override=override, user=controller_a)
    request.refresh_from_db()
    assert request.status == "pending" and not request.decisions.exists()


def test_the_database_refuses_a_self_confirmed_override(controller_a):
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalOverride.objects.filter(pk=override.pk).update(confirmed_by=controller_a)


def test_an_override_without_a_reason_is_refused(controller_a):
    """Old code: the one-click override took an empty comment."""
    request = routed(big_invoice())
    for blank in ("", "   ", None):
        with pytest.raises(ApplicationError, match="reason"):
            approval_override_request(request=request, user=controller_a, reason=blank)
    assert not ApprovalOverride.objects.exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalOverride.objects.create(request=request, requested_by=controller_a, reason="", from_step=1)


@pytest.mark.parametrize("role", ["finance_analyst", "project_manager", "auditor", "billing_admin", "collections"])
def test_only_controllers_request_or_confirm(role, controller_a):
    """Old code: there was no override request; an analyst could not one-click either (guard)."""
    other = UserFactory(groups=[role])
    request = routed(big_invoice())
    with pytest.raises(PermissionDeniedError, match="finance controller"):
        approval_override_request(request=request, user=other, reason=REASON)
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(PermissionDeniedError, match="finance controller"):
        approval_override_confirm(override=override, user=other)


def test_a_superuser_without_the_controller_role_is_not_a_second_pair_of_eyes(controller_a):
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(PermissionDeniedError):
        approval_override_confirm(override=override, user=UserFactory(is_superuser=True, is_staff=True))


def test_a_policy_can_forbid_overrides(controller_a, controller_b):
    """Old code: no such setting; every route could be skipped in one click."""
    invoice = big_invoice()
    request = routed(invoice)
    ApprovalPolicy.objects.filter(pk=request.policy_id).update(allow_override=False)
    with pytest.raises(PermissionDeniedError, match="forbids overrides"):
        approval_override_request(request=routed(invoice), user=controller_a, reason=REASON)


def test_forbidding_overrides_after_the_request_stops_the_confirmation(controller_a, controller_b):
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    ApprovalPolicy.objects.filter(pk=request.policy_id).update(allow_override=False)
    with pytest.raises(PermissionDeniedError, match="forbids overrides"):
        approval_override_confirm(override=override, user=controller_b)


def test_the_preparer_can_neither_request_nor_confirm(controller_a, controller_b):
    """SoD applies to both pairs of eyes. Old code: the preparing controller was refused as well (guard)."""
    invoice = big_invoice(prepared_by=controller_a)
    request = routed(invoice)
    with pytest.raises(SegregationOfDutiesError, match="prepared"):
        approval_override_request(request=request, user=controller_a, reason=REASON)
    override = approval_override_request(request=request, user=controller_b, reason=REASON)
    with pytest.raises(SegregationOfDutiesError, match="prepared"):
        approval_override_confirm(override=override, user=controller_a)


def test_whoever_decided_a_step_is_not_the_second_pair_of_eyes(controller_a, controller_b):
    request = routed(big_invoice())
    approval_decide(request=request, user=UserFactory(groups=["finance_analyst"]), decision="approve")
    approval_decide(request=request, user=controller_b, decision="approve")
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(SegregationOfDutiesError, match="already decided step 2"):
        approval_override_confirm(override=override, user=controller_b)


def test_a_requester_who_is_no_longer_a_controller_cannot_be_confirmed(controller_a, controller_b):
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    controller_a.groups.set(Group.objects.filter(name="finance_analyst"))
    with pytest.raises(PermissionDeniedError, match="no longer a finance controller"):
        approval_override_confirm(override=override, user=controller_b)


def test_one_pending_override_per_request(controller_a, controller_b):
    request = routed(big_invoice())
    approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(ConflictError, match="already requested"):
        approval_override_request(request=request, user=controller_b, reason="Me too")


def test_an_override_lapses_when_the_request_is_settled_otherwise(controller_a, controller_b):
    invoice = big_invoice("500.00")  # one analyst step
    request = routed(invoice)
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    approval_decide(request=request, user=UserFactory(groups=["finance_analyst"]), decision="approve")
    override.refresh_from_db()
    assert override.status == "lapsed"
    with pytest.raises(ConflictError):
        approval_override_confirm(override=override, user=controller_b)


def test_a_withdrawn_override_cannot_be_confirmed_and_withdrawing_needs_a_reason(controller_a, controller_b):
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    with pytest.raises(ApplicationError, match="reason"):
        approval_override_withdraw(override=override, user=controller_a, reason="")
    approval_override_withdraw(override=override, user=controller_a, reason="Reviewer is back")
    with pytest.raises(ConflictError):
        approval_override_confirm(override=override, user=controller_b)


# --- portal, admin, KPIs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["finance_analyst", "auditor", "project_manager"])
def test_the_override_views_are_for_controllers_only(client, role, controller_a):
    request = routed(big_invoice())
    client.force_login(UserFactory(groups=[role]))
    assert client.post(reverse("approvals:override_request", args=[request.pk]), {"reason": REASON}).status_code == 403
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    assert client.post(reverse("approvals:override_confirm", args=[override.pk]), {}).status_code == 403
    override.refresh_from_db()
    assert override.status == "pending"


def test_through_the_portal_a_controller_confirming_their_own_override_is_refused(client, controller_a):
    request = routed(big_invoice())
    client.force_login(controller_a)
    client.post(reverse("approvals:override_request", args=[request.pk]), {"reason": ""})
    assert not ApprovalOverride.objects.exists()  # no reason, no override
    client.post(reverse("approvals:override_request", args=[request.pk]), {"reason": REASON})
    override = ApprovalOverride.objects.get()
    client.post(reverse("approvals:override_confirm", args=[override.pk]), {})
    override.refresh_from_db()
    request.refresh_from_db()
    assert override.status == "pending" and request.status == "pending"


def test_overrides_cannot_be_faked_in_django_admin(client, controller_a):
    sync_role_permissions()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    request = routed(big_invoice())
    override = approval_override_request(request=request, user=controller_a, reason=REASON)
    assert client.get(reverse("admin:approvals_approvaloverride_add")).status_code == 403
    client.post(reverse("admin:approvals_approvaloverride_change", args=[override.pk]),
                {"status": "confirmed", "confirmed_by": controller_a.pk})
    override.refresh_from_db()
    assert override.status == "pending" and override.confirmed_by is None


def test_the_invoice_page_shows_the_route_and_the_pending_override(client, controller_a, controller_b):
    """Old code: the invoice page showed no route and no warning."""
    invoice = big_invoice()
    request = routed(invoice)
    url = reverse("billing:invoice_detail", args=[invoice.pk])
    client.force_login(controller_a)
    page = client.get(url).content.decode()
    assert "Approval route" in page and "Request override of the route" in page
    approval_override_request(request=request, user=controller_a, reason=REASON)

    mine = client.get(url).content.decode()
    assert "Override awaiting a second controller" in mine and "Confirm override" not in mine
    client.force_login(controller_b)
    theirs = client.get(url).content.decode()
    assert "Confirm override" in theirs

    client.post(reverse("approvals:override_confirm", args=[request.overrides.get().pk]),
                {"reason": "", "next": url})
    done = client.get(url).content.decode()
    assert done.count("Skipped by override") == 3 and "Route overridden" in done and REASON in done


def test_the_invoice_page_route_panel_takes_a_fixed_number_of_queries(client):
    invoice = big_invoice()
    routed(invoice)
    client.force_login(UserFactory(groups=["auditor"]))
    url = reverse("billing:invoice_detail", args=[invoice.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as one_step:
        client.get(url)
    approval_decide(request=pending_of(invoice), user=UserFactory(groups=["finance_analyst"]), decision="approve")
    with CaptureQueriesContext(connection) as two_steps:
        client.get(url)
    assert len(two_steps.captured_queries) == len(one_step.captured_queries)


def test_overrides_count_in_the_kpis(controller_a, controller_b):
    """Old code: overrides were cancellations, not counted."""
    today = datetime.date.today()
    period = KpiFilters(today.replace(day=1), today)
    first = approval_override_request(request=routed(big_invoice()), user=controller_a, reason=REASON)
    approval_override_request(request=routed(big_invoice()), user=controller_b, reason=REASON)
    approval_override_confirm(override=first, user=controller_b)
    assert route_overrides(period) == {"route_overrides_requested": 2, "route_overrides_confirmed": 1}
