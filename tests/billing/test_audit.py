"""The audit trail: every service change leaves a history row (who, why) and a StateLog row.

Auditors rely on two trails that must agree: simple-history rows of the record
(acting user, change reason, the values) and django-fsm-log rows of the
transition (by, source, target, description). A refused or failed change leaves
neither.
"""

from __future__ import annotations

import datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django_fsm_log.models import StateLog

from billing.services.change_orders import change_order_approve, change_order_submit
from billing.services.milestones import milestone_approve, milestone_complete
from billing.services.work import time_entry_create, work_approve, work_reject, work_reopen, work_submit
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from tests.factories import (
    ChangeOrderFactory,
    ChangeOrderRateFactory,
    ClientFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_history_of_a_time_entry_tells_who_did_what_and_why():
    person = PersonFactory()
    project = ProjectFactory()
    pm = project.project_manager
    entry = time_entry_create(
        person=person, project=project, date=datetime.date(2025, 3, 10), hours="6", user=person.user
    )
    work_submit(item=entry, user=person.user)
    work_reject(item=entry, user=pm, reason="Book the workshop on PRJ-2")
    rows = list(
        entry.history.order_by("history_id").values_list(
            "history_type", "status", "history_user", "history_change_reason"
        )
    )
    assert rows == [
        ("+", "draft", person.user.pk, "Time entry recorded"),
        ("~", "submitted", person.user.pk, "Submitted for approval"),
        ("~", "rejected", pm.pk, "Book the workshop on PRJ-2"),
    ]


def test_statelog_rows_record_by_source_target_and_description():
    entry = TimeEntryFactory(status="submitted")
    pm = entry.project.project_manager
    work_approve(item=entry, user=pm)
    work_reopen(item=entry, user=pm, reason="Client disputes the hours")
    logs = StateLog.objects.filter(content_type=ContentType.objects.get_for_model(entry), object_id=entry.pk).order_by(
        "pk"
    )
    assert [(log.by, log.source_state, log.state, log.transition, log.description) for log in logs] == [
        (pm, "submitted", "approved", "approve", None),
        (pm, "approved", "submitted", "reopen", "Client disputes the hours"),
    ]


def test_change_reason_is_truncated_to_the_history_column_but_kept_whole_on_the_record():
    entry = TimeEntryFactory(status="submitted")
    long_reason = "Hours exceed the agreed daily maximum for this engagement; " * 5
    work_reject(item=entry, user=entry.project.project_manager, reason=long_reason)
    entry.refresh_from_db()
    assert entry.rejection_reason == long_reason.strip()
    assert entry.history.latest().history_change_reason == long_reason.strip()[:100]
    assert StateLog.objects.for_(entry).get().description == long_reason.strip()


def test_refused_changes_leave_no_trail():
    entry = TimeEntryFactory(status="submitted")
    with pytest.raises(PermissionDeniedError):
        work_approve(item=entry, user=UserFactory(groups=["finance_analyst"]))
    with pytest.raises(ApplicationError):
        work_reject(item=entry, user=entry.project.project_manager, reason="")
    assert entry.history.count() == 1
    assert not StateLog.objects.for_(entry).exists()


def test_milestone_and_change_order_trails():
    milestone = MilestoneFactory()
    pm = milestone.project.project_manager
    controller = UserFactory(groups=["finance_controller"])
    milestone_complete(milestone=milestone, user=pm, evidence="Acceptance e-mail")
    milestone_approve(milestone=milestone, user=controller)
    latest = milestone.history.latest()
    assert (latest.status, latest.history_user, latest.history_change_reason) == ("approved", controller, "Approved")

    project = ProjectFactory()
    co = ChangeOrderFactory(contract=project.contract)
    ChangeOrderRateFactory(change_order=co)
    change_order_submit(change_order=co, user=project.project_manager)
    change_order_approve(change_order=co, user=controller, reason="Countersigned")
    assert [(h.status, h.history_user, h.history_change_reason) for h in co.history.order_by("history_id")][1:] == [
        ("submitted", project.project_manager, "Submitted for approval"),
        ("approved", controller, "Countersigned"),
    ]
    applied = co.applied_rates.get().history.get()
    assert (applied.history_user, applied.history_change_reason) == (
        controller,
        f"Applied by approved change order {co.code}",
    )


def test_a_failed_save_rolls_back_the_statelog_written_by_the_transition(monkeypatch):
    """django-fsm-log writes its row at transition time; the service's transaction must undo it."""
    entry = TimeEntryFactory(status="submitted")

    def broken_save(obj, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("billing.services.work.save_audited", broken_save)
    with pytest.raises(RuntimeError):
        work_approve(item=entry, user=entry.project.project_manager)
    entry.refresh_from_db()
    assert entry.status == "submitted"
    assert not StateLog.objects.exists()


def test_save_audited_without_a_user_records_the_reason_only():
    client = ClientFactory()
    client.credit_hold = True
    save_audited(client, user=None, reason="Nightly ERP sync")
    record = client.history.latest()
    assert (record.history_user, record.history_change_reason, record.credit_hold) == (None, "Nightly ERP sync", True)
