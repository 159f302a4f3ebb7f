"""The approvals queue's multi-select (ADR 0116): tick requests of any type, approve or reject them at once.

Through `approval_decide_bulk`: the number of queries does not grow with the selection, the
records are those of one-by-one decisions, and an item the user may not decide (segregation of
duties, someone else's step, no longer pending) is refused and reported while the others proceed.
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_fsm_log.models import StateLog

from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.registry import subject_label
from approvals.services import approval_requests_open_bulk
from billing.models import Expense, TimeEntry
from tests.approvals.test_bulk_decisions import _records, _week
from tests.factories import PersonFactory, ProjectFactory, TimeEntryFactory

pytestmark = pytest.mark.django_db

URL = reverse("approvals:mine_decide")


def _request_ids(items) -> list[int]:
    ids = []
    for item in items:
        ct = ContentType.objects.get_for_model(type(item))
        ids.append(ApprovalRequest.objects.get(content_type=ct, object_id=item.pk, status="pending").pk)
    return ids


def _post(client, ids, decision="approve", comment=""):
    ContentType.objects.get_for_models(TimeEntry, Expense, ApprovalRequest)  # warm the content-type cache
    with CaptureQueriesContext(connection) as captured:
        data = {"request": ids, "decision": decision, "comment": comment, "next": "/approvals/mine/"}
        response = client.post(URL, data)
    assert response.status_code == 303 and response.url == "/approvals/mine/"
    return len(captured.captured_queries)


def test_a_selection_of_10_and_of_50_is_decided_in_the_same_number_of_queries(client):
    project, ten = _week(10)
    pm = project.project_manager
    _, fifty = _week(50, project=ProjectFactory(project_manager=pm))
    client.force_login(pm)
    q10 = _post(client, _request_ids(ten))
    q50 = _post(client, _request_ids(fifty))
    if connection.vendor == "postgresql":
        assert q50 == q10
    else:  # SQLite splits bulk writes of many rows in batches
        assert q10 <= q50 <= q10 + 8
    assert TimeEntry.objects.filter(status="approved").count() == 48
    assert Expense.objects.filter(status="approved").count() == 12
    assert ApprovalDecision.objects.filter(approver=pm, decision="approve").count() == 60


def test_the_queue_leaves_the_records_of_one_by_one_decisions(client):
    project, one_by_one = _week(5)
    pm = project.project_manager
    _, together = _week(5, project=ProjectFactory(project_manager=pm))
    client.force_login(pm)
    for pk in _request_ids(one_by_one):
        response = client.post(reverse("approvals:request_decide", args=[pk]), {"decision": "approve"})
        assert response.status_code == 303
    _post(client, _request_ids(together))
    assert _records(together) == _records(one_by_one)


def test_what_the_user_may_not_decide_is_refused_and_reported_and_the_rest_is_decided(client):
    project, items = _week(4)
    pm = project.project_manager
    own = TimeEntryFactory(status="submitted", project=project, person=PersonFactory(user=pm))
    _, others = _week(1)  # another PM's project
    approval_requests_open_bulk(subjects=[own])
    ids = _request_ids([*items, own, *others])
    client.force_login(pm)
    _post(client, ids)
    page = client.get(reverse("approvals:mine")).content.decode()
    assert "4 approvals approved." in page
    assert page.count("Not decided:") == 2
    # Another PM's item is reported by its request number only: neither what it is nor why (no side door
    # for reading other people's work by posting request ids).
    assert f"Not decided: approval {ids[-1]}: It is not in your approvals queue." in page
    assert subject_label(others[0]) not in page
    assert {i.status for i in (type(i).objects.get(pk=i.pk) for i in items)} == {"approved"}
    own.refresh_from_db()
    others[0].refresh_from_db()
    assert own.status == "submitted" and others[0].status == "submitted"
    assert not ApprovalDecision.objects.filter(request_id__in=ids[4:]).exists()
    refused_entries = StateLog.objects.filter(
        content_type=ContentType.objects.get_for_model(TimeEntry), object_id__in=[own.pk, others[0].pk]
    )
    assert not refused_entries.filter(transition="approve").exists()
    # Deciding them again: nothing is pending any more, each is reported, nothing is decided twice.
    _post(client, ids[:4])
    assert "no longer pending" in client.get(reverse("approvals:mine")).content.decode()
    assert ApprovalDecision.objects.filter(approver=pm).count() == 4


def test_a_rejection_needs_a_reason_and_sends_every_selected_item_back(client):
    project, items = _week(3)
    pm = project.project_manager
    ids = _request_ids(items)
    client.force_login(pm)
    _post(client, ids, decision="reject")
    assert not ApprovalDecision.objects.exists()
    _post(client, ids, decision="reject", comment="Wrong project code")
    assert {type(i).objects.get(pk=i.pk).status for i in items} == {"rejected"}
    assert set(ApprovalRequest.objects.filter(pk__in=ids).values_list("outcome_reason", flat=True)) == {
        "Wrong project code"
    }
