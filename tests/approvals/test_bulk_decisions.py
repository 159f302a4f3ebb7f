"""Bulk decisions (a PM's week, a queue selection) in a bounded number of queries, with every record.

`work_approve_bulk` and `approval_decide_bulk` decide N items with the same checks and the same
rows as N single decisions (decision + its history, request history and transition log, the
item's history and transition log); the number of queries does not grow with N.
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django_fsm_log.models import StateLog

from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, ApprovalStep
from approvals.services import approval_decide, approval_decide_bulk, approval_requests_open_bulk
from billing.models import Expense, TimeEntry
from billing.services.work import work_approve, work_approve_bulk
from kernel.errors import ConflictError, PermissionDeniedError, SegregationOfDutiesError
from tests.factories import ExpenseFactory, PersonFactory, ProjectFactory, TimeEntryFactory, UserFactory

pytestmark = pytest.mark.django_db


def _week(count: int, *, project=None, routed: bool = True):
    """`count` submitted items of one project (4 time entries to 1 expense), routed to their policy."""
    project = project or ProjectFactory()
    person = PersonFactory()
    items = [
        (ExpenseFactory if i % 5 == 4 else TimeEntryFactory)(status="submitted", project=project, person=person)
        for i in range(count)
    ]
    if routed:
        approval_requests_open_bulk(subjects=items)
    return project, items


def _queries(call) -> int:
    ContentType.objects.get_for_models(TimeEntry, Expense, ApprovalRequest)  # warm the content-type cache
    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured.captured_queries)


def _records(items) -> dict:
    """What a decision leaves behind, per item, comparable across two sets of items."""
    rows = []
    for item in items:
        item.refresh_from_db()
        ct = ContentType.objects.get_for_model(type(item))
        request = ApprovalRequest.objects.get(content_type=ct, object_id=item.pk)
        decision = request.decisions.get()
        rows.append(
            (
                type(item).__name__,
                item.status,
                item.approved_by_id is not None,
                [(h.history_change_reason, h.history_user_id is not None) for h in item.history.all()[:1]],
                request.status,
                [h.history_change_reason for h in request.history.order_by("-history_id")[:1]],
                (decision.decision, decision.step_order, decision.on_behalf_of_id),
                [h.history_change_reason for h in decision.history.all()],
                sorted(
                    StateLog.objects.filter(content_type=ct, object_id=item.pk).values_list("transition", flat=True)
                ),
                sorted(StateLog.objects.for_(request).values_list("transition", "description")),
            )
        )
    return rows


#: A week of time entries and expenses (two models), whatever its length: each model's rows locked once,
#: the requests locked, the steps, earlier decisions, service-account flag and roles (once), the writes
#: (decisions, requests, items and their history rows, the transition log). Was 34 while the engine locked
#: and read again the rows `work_approve_bulk` had locked, and the roles and PMs were read three times.
WEEK_QUERIES = 20


def _sql(captured, fragment: str) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if fragment in q["sql"]]


def test_a_week_locks_its_rows_once_and_reads_the_roles_once():
    """The rows `work_approve_bulk` locks are the rows the engine checks: not selected a second time."""
    project, items = _week(5)
    pm = project.project_manager
    ContentType.objects.get_for_models(TimeEntry, Expense, ApprovalRequest)
    with CaptureQueriesContext(connection) as captured:
        assert work_approve_bulk(items=items, user=pm) == 5
    if connection.vendor == "postgresql":  # SQLite has no FOR UPDATE
        for table in ("billing_timeentry", "billing_expense", "approvals_approvalrequest"):
            assert len(_sql(captured, f'FROM "{table}"')) == 1
            assert "FOR UPDATE" in _sql(captured, f'FROM "{table}"')[0]
    assert len(_sql(captured, 'FROM "auth_group"')) == 1  # the user's roles: read once, in the transaction
    assert not _sql(captured, 'FROM "billing_project"')  # the PM: read with the locked rows


def test_a_decision_on_rows_the_caller_locked_needs_the_callers_transaction(monkeypatch):
    """`subjects_locked=True` is only for rows locked in the caller's open transaction; outside one it is refused."""
    project, items = _week(1)
    rows = list(TimeEntry.objects.filter(pk=items[0].pk))
    # As if no transaction held the caller's lock (the test's own transaction is always open).
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "in_atomic_block", False)
    with pytest.raises(TransactionManagementError):
        approval_decide_bulk(subjects=rows, user=project.project_manager, decision="approve", subjects_locked=True)
    monkeypatch.undo()
    assert TimeEntry.objects.get(pk=items[0].pk).status == "submitted"
    assert not ApprovalDecision.objects.exists()


def test_a_week_is_approved_in_the_same_number_of_queries_for_10_and_50_items():
    pm_project, ten = _week(10)
    pm = pm_project.project_manager
    _other, fifty = _week(50, project=ProjectFactory(project_manager=pm))

    q10 = _queries(lambda: work_approve_bulk(items=ten, user=pm))
    q50 = _queries(lambda: work_approve_bulk(items=fifty, user=pm))

    if connection.vendor == "postgresql":
        assert q50 == q10 == WEEK_QUERIES
    else:  # SQLite binds at most 999 parameters a statement: Django splits the bulk writes of 50 rows in batches
        assert q10 <= q50 <= q10 + 8
    assert q10 <= WEEK_QUERIES
    assert TimeEntry.objects.filter(status="approved").count() == 48
    assert Expense.objects.filter(status="approved").count() == 12


def test_bulk_leaves_the_same_records_as_one_by_one():
    project, one_by_one = _week(5)
    pm = project.project_manager
    _, together = _week(5, project=ProjectFactory(project_manager=pm))
    for item in one_by_one:
        work_approve(item=item, user=pm)
    assert work_approve_bulk(items=together, user=pm) == 5
    assert _records(together) == _records(one_by_one)
    assert StateLog.objects.filter(transition="approve", by=pm).count() == 20  # 10 items + 10 requests


def test_unrouted_items_are_routed_then_decided():
    project, items = _week(3, routed=False)
    assert work_approve_bulk(items=items, user=project.project_manager) == 3
    assert ApprovalDecision.objects.count() == 3


def test_one_refusal_refuses_the_whole_selection():
    project, items = _week(4)
    pm = project.project_manager
    own = TimeEntryFactory(status="submitted", project=project, person=PersonFactory(user=pm))
    approval_requests_open_bulk(subjects=[own])
    with pytest.raises(SegregationOfDutiesError):
        work_approve_bulk(items=[*items, own], user=pm)
    with pytest.raises(PermissionDeniedError):
        work_approve_bulk(items=[*items, *_week(1)[1]], user=pm)  # another PM's project
    assert not TimeEntry.objects.filter(status="approved").exists()
    assert not ApprovalDecision.objects.exists()
    assert not StateLog.objects.filter(transition="approve").exists()


def test_a_multi_step_policy_keeps_items_waiting_for_the_next_step():
    policy = ApprovalPolicy.objects.filter(subject_type="time_entry", active=True).order_by("priority").first()
    ApprovalStep.objects.create(
        policy=policy, order=policy.steps.count() + 1, approver_kind="role", role="finance_controller", sla_hours=24
    )
    project, items = _week(4)
    items = [i for i in items if isinstance(i, TimeEntry)]
    assert work_approve_bulk(items=items, user=project.project_manager) == 0
    requests = ApprovalRequest.objects.filter(status="pending", subject_type="time_entry")
    assert {r.current_step for r in requests} == {policy.steps.count()}
    controller = UserFactory(groups=["finance_controller"])
    with CaptureQueriesContext(connection):
        settled = approval_decide_bulk(subjects=items, user=controller, decision="approve")
    assert len(settled) == len(items)
    assert set(TimeEntry.objects.filter(pk__in=[i.pk for i in items]).values_list("status", flat=True)) == {"approved"}
    with pytest.raises(ConflictError):
        approval_decide_bulk(subjects=items, user=controller, decision="approve")


def test_bulk_rejection_sends_work_back_with_the_reason():
    project, items = _week(3)
    settled = approval_decide_bulk(subjects=items, user=project.project_manager, decision="reject", comment="Split")
    assert len(settled) == 3
    assert {(i.status, i.rejection_reason) for i in TimeEntry.objects.all()} | {
        (e.status, e.rejection_reason) for e in Expense.objects.all()
    } == {("rejected", "Split")}


def test_a_single_decision_still_works_alongside():
    project, items = _week(2)
    request = ApprovalRequest.objects.get(object_id=items[0].pk, subject_type="time_entry")
    approval_decide(request=request, user=project.project_manager, decision="approve")
    assert work_approve_bulk(items=items[1:], user=project.project_manager) == 1
