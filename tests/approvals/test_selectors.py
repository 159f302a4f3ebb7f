"""The approval queues: who sees what, overdue first, in a bounded number of queries."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.models import ApprovalRequest
from approvals.selectors import (
    approvals_of,
    can_decide,
    my_approvals,
    my_approvals_count,
    my_approvals_page,
    my_invoice_approvals_count,
    overdue_approvals,
)
from approvals.services import approval_decide, approval_request_escalate, approval_request_open, delegation_create
from billing.models import ChangeOrder, Expense, Invoice, Milestone, TimeEntry
from tests.approvals.conftest import (
    completed_milestone,
    pending_invoice,
    person_of,
    submitted_change_order,
    submitted_time,
)
from tests.factories import ExpenseFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2025, 4, 2, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def ids(qs) -> set[int]:
    return {r.pk for r in qs}


def test_finance_queue_follows_the_open_step(preparer, analyst, controller):
    request = approval_request_open(subject=pending_invoice("50000.00", prepared_by=preparer))

    assert ids(my_approvals(analyst)) == {request.pk}
    assert ids(my_approvals(preparer)) == set()  # prepared it
    assert ids(my_approvals(controller)) == set()  # not their step yet

    approval_decide(request=request, user=analyst, decision="approve")

    assert ids(my_approvals(analyst)) == set()
    assert ids(my_approvals(controller)) == {request.pk}
    assert my_approvals_count(controller) == 1


def test_the_queue_page_counts_its_invoices_for_the_navigation_as_counting_apart_does(preparer, analyst, controller):
    invoices = [approval_request_open(subject=pending_invoice("50000.00", prepared_by=preparer)) for _ in range(3)]
    for request in invoices[:2]:
        approval_decide(request=request, user=analyst, decision="approve")  # at the controller's step
    approval_request_open(subject=submitted_change_order())  # not an invoice
    apart = my_invoice_approvals_count(type(controller).objects.get(pk=controller.pk))
    page = my_approvals_page(controller, now=NOW, delegations=[])
    with CaptureQueriesContext(connection) as counting:
        on_the_page = my_invoice_approvals_count(controller)
    assert apart == on_the_page == 2
    assert page.paginator.count >= 2 and len(counting) == 0
    filtered = type(controller).objects.get(pk=controller.pk)  # another request's user
    my_approvals_page(filtered, now=NOW, delegations=[], subject_type="invoice")
    with CaptureQueriesContext(connection) as counting:
        assert my_invoice_approvals_count(filtered) == 2
    assert len(counting) == 1  # a filtered page does not stand for the whole queue: counted apart


def test_someone_in_two_roles_does_not_see_the_next_step_of_what_they_decided():
    both = UserFactory(groups=["finance_analyst", "finance_controller"])
    request = approval_request_open(subject=pending_invoice("50000.00"))
    assert ids(my_approvals(both)) == {request.pk}

    approval_decide(request=request, user=both, decision="approve")

    assert ids(my_approvals(both)) == set()


def test_pm_queue_holds_their_projects_items_but_not_their_own(controller):
    project = ProjectFactory()
    pm = project.project_manager
    theirs = approval_request_open(subject=submitted_time(project=project))
    expense = approval_request_open(subject=ExpenseFactory(status="submitted", project=project))
    own = approval_request_open(subject=submitted_time(project=project, person=person_of(pm)))
    approval_request_open(subject=submitted_time())  # another project

    assert ids(my_approvals(pm)) == {theirs.pk, expense.pk}
    assert own.escalated
    assert own.pk in ids(my_approvals(controller))


def test_change_orders_show_to_the_pms_of_the_contracts_other_projects():
    change_order = submitted_change_order(cap_delta="1000.00")
    other_pm = ProjectFactory(contract=change_order.contract).project_manager
    request = approval_request_open(subject=change_order)

    assert ids(my_approvals(other_pm)) == {request.pk}
    assert ids(my_approvals(change_order.submitted_by)) == set()


def test_a_delegate_sees_the_delegators_queue():
    entry = submitted_time()
    pm = entry.project.project_manager
    deputy = UserFactory(groups=["finance_controller"])
    request = approval_request_open(subject=entry)
    assert ids(my_approvals(deputy)) == set()

    delegation_create(delegator=pm, delegate=deputy, starts_on=NOW.date(), ends_on=NOW.date(), user=pm)

    assert ids(my_approvals(deputy)) == {request.pk}


def test_escalated_steps_join_the_escalation_roles_queue(analyst, controller):
    request = approval_request_open(subject=pending_invoice("500.00"))
    assert ids(my_approvals(controller)) == set()

    approval_request_escalate(request=request, now=NOW + datetime.timedelta(hours=25))

    assert ids(my_approvals(controller)) == {request.pk}
    assert ids(overdue_approvals(now=NOW + datetime.timedelta(hours=25))) == {request.pk}


def test_overdue_first_then_by_due_time(analyst):
    with time_machine.travel(NOW - datetime.timedelta(hours=30), tick=False):
        overdue = approval_request_open(subject=pending_invoice("100.00"))
    with time_machine.travel(NOW - datetime.timedelta(hours=1), tick=False):
        later = approval_request_open(subject=pending_invoice("200.00"))
    sooner = approval_request_open(subject=pending_invoice("50000.00"))
    ApprovalRequest.objects.filter(pk=sooner.pk).update(sla_due_at=NOW + datetime.timedelta(hours=2))

    assert [r.pk for r in my_approvals(analyst)] == [overdue.pk, sooner.pk, later.pk]


def _queue_of_size(n: int, project, controller):
    pm = project.project_manager
    for _ in range(n):
        approval_request_open(subject=submitted_time(project=project))
        approval_request_open(subject=ExpenseFactory(status="submitted", project=project))
        approval_request_open(
            subject=completed_milestone(
                project=ProjectFactory(project_manager=pm, contract__fixed_fee=True), completed_by=controller
            )
        )
        change_order = submitted_change_order(cap_delta="100.00", submitted_by=controller)
        ProjectFactory(contract=change_order.contract, project_manager=pm)
        approval_request_open(subject=change_order)


def _queries_to_show(user) -> tuple[int, int]:
    user = type(user).objects.get(pk=user.pk)  # as a request's user: roles not yet read (they are then memoised)
    with CaptureQueriesContext(connection) as ctx:
        rows = [(str(r.subject), r.subject_type, r.policy.name, r.contract_id) for r in my_approvals(user)]
    return len(rows), len(ctx.captured_queries)


def test_my_approvals_takes_a_bounded_number_of_queries(controller):
    project = ProjectFactory()
    pm = project.project_manager
    ContentType.objects.get_for_models(Invoice, TimeEntry, Expense, Milestone, ChangeOrder)
    _queue_of_size(2, project, controller)
    small, small_queries = _queries_to_show(pm)
    _queue_of_size(8, project, controller)
    large, large_queries = _queries_to_show(pm)

    assert (small, large) == (8, 40)
    assert large_queries == small_queries
    assert large_queries <= 4 + 4  # delegations, roles, steps, requests + one per subject type


def test_queue_and_service_agree_on_who_may_decide(preparer, analyst, controller, controller2):
    project = ProjectFactory()
    pm = project.project_manager
    deputy = UserFactory(groups=["project_manager"])  # a role analyst steps do not accept
    delegation_create(delegator=analyst, delegate=deputy, starts_on=NOW.date(), ends_on=NOW.date(), user=analyst)
    requests = [
        approval_request_open(subject=pending_invoice("500.00", prepared_by=preparer)),
        approval_request_open(subject=pending_invoice("150000.00")),
        approval_request_open(subject=submitted_time(project=project)),
        approval_request_open(subject=submitted_time(project=project, person=person_of(pm))),
        approval_request_open(
            subject=completed_milestone(project=ProjectFactory(project_manager=pm, contract__fixed_fee=True))
        ),
    ]
    approval_decide(request=requests[1], user=analyst, decision="approve")
    users = [preparer, analyst, controller, controller2, pm, deputy, UserFactory(groups=["consultant"])]

    for user in users:
        queue = ids(my_approvals(user))
        for request in requests:
            request.refresh_from_db()
            assert (request.pk in queue) == can_decide(request, user), (user.username, request)


def test_approvals_of_a_subject_lists_every_request_with_its_decisions(analyst):
    invoice = pending_invoice()
    first = approval_request_open(subject=invoice)
    approval_decide(request=first, user=analyst, decision="reject", comment="Wrong client")
    invoice.refresh_from_db()
    assert invoice.status == "draft"

    [found] = approvals_of(invoice)
    assert found.pk == first.pk and [d.comment for d in found.decisions.all()] == ["Wrong client"]
