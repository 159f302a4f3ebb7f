"""Inbound sync of time entries and expenses: per-record results, all or nothing, partial, the domain rules."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_fsm_log.models import StateLog

from approvals.models import ApprovalRequest
from billing.models import Expense, TimeEntry
from integrations.models import ImportBatch
from integrations.services.inbound import MAX_BULK_RECORDS, Result, upsert_record, upsert_records
from kernel.errors import ApplicationError
from tests.factories import InvoiceLineFactory, ProjectFactory, TimeEntryFactory

pytestmark = pytest.mark.django_db

DAY = "2025-03-10"


def entry(ext: str, **overrides) -> dict:
    record = {"external_id": ext, "person_external_id": "psa-anna", "project_code": "PRJ-A", "date": DAY,
              "hours": "2.5", "description": "Workshop", "billable": "true"}
    record.update(overrides)
    return record


def upsert(records, user, **kwargs):
    return upsert_records(resource="time_entries", records=records, user=user, source="psa", **kwargs)


def test_new_time_arrives_submitted_routed_and_audited(world, psa_user):
    outcome = upsert([entry("t1"), entry("t2", person_email="BEN@billable.example", person_external_id="")],
                     psa_user)

    assert [r.result for r in outcome.results] == [Result.CREATED, Result.CREATED]
    assert outcome.saved and outcome.batch.status == ImportBatch.Status.DONE
    t1 = TimeEntry.objects.get(source="psa", external_id="t1")
    assert (t1.status, t1.hours, t1.person, t1.billable) == ("submitted", Decimal("2.50"), world["person"], True)
    assert TimeEntry.objects.get(external_id="t2").person == world["other"]
    # audited with the acting user; the submission is a logged transition; the PM's approval is requested
    created = t1.history.get()
    assert (created.history_user, created.history_type, created.status) == (psa_user, "+", "submitted")
    assert created.history_change_reason == "Inbound sync from psa"
    assert StateLog.objects.filter(object_id=t1.pk, transition="submit", by=psa_user).exists()
    assert ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(TimeEntry), object_id=t1.pk, status="pending"
    ).exists()
    batch = outcome.batch
    assert (batch.kind, batch.resource, batch.rows_created, batch.submitted_by) == (
        "api_bulk", "time_entries", 2, psa_user)


def test_resend_is_unchanged_and_a_change_is_an_update(world, psa_user):
    upsert([entry("t1"), entry("t2")], psa_user)
    again = upsert([entry("t1"), entry("t2", hours="3", description="Workshop (long)")], psa_user)

    assert [r.result for r in again.results] == [Result.UNCHANGED, Result.UPDATED]
    t2 = TimeEntry.objects.get(external_id="t2")
    assert (t2.hours, t2.description, t2.status) == (Decimal("3.00"), "Workshop (long)", "submitted")
    assert TimeEntry.objects.get(external_id="t1").history.count() == 1  # nothing written for the unchanged one
    assert TimeEntry.objects.get(external_id="t2").history.first().history_user == psa_user
    # "2.50" and 2.5 are the same hours
    assert upsert([entry("t1", hours=2.5)], psa_user).results[0].result == Result.UNCHANGED


def test_all_or_nothing_keeps_nothing_and_reports_every_record(world, psa_user):
    before = (TimeEntry.objects.count(), ApprovalRequest.objects.count())
    outcome = upsert([entry("t1"), entry("t2", hours="abc"), entry("t3", project_code="NOPE")], psa_user)

    assert [r.result for r in outcome.results] == [Result.CREATED, Result.ERROR, Result.ERROR]
    assert "hours" in outcome.results[1].field_errors
    assert outcome.results[2].field_errors == {"project_code": ["Not found."]}
    assert outcome.results[2].code == "unknown_reference"
    assert not outcome.saved
    assert (TimeEntry.objects.count(), ApprovalRequest.objects.count()) == before
    batch = ImportBatch.objects.get(pk=outcome.batch.pk)
    assert (batch.status, batch.rows_failed, batch.rows_created) == ("failed", 2, 1)
    assert [e["external_id"] for e in batch.errors] == ["t2", "t3"]


def test_partial_keeps_the_good_records(world, psa_user):
    outcome = upsert([entry("t1"), entry("t2", hours="30"), entry("t3")], psa_user, partial=True)

    assert [r.result for r in outcome.results] == [Result.CREATED, Result.ERROR, Result.CREATED]
    assert set(TimeEntry.objects.values_list("external_id", flat=True)) == {"t1", "t3"}
    assert outcome.batch.status == ImportBatch.Status.PARTIAL
    assert ApprovalRequest.objects.filter(status="pending").count() == 2


def test_dry_run_saves_nothing(world, psa_user):
    outcome = upsert([entry("t1"), entry("t2")], psa_user, dry_run=True)
    assert [r.result for r in outcome.results] == [Result.CREATED, Result.CREATED]
    assert TimeEntry.objects.count() == 0 and outcome.batch.status == ImportBatch.Status.DRY_RUN


def test_invoiced_time_is_never_changed(world, psa_user):
    line = InvoiceLineFactory(invoice__contract=world["project"].contract)
    TimeEntryFactory(person=world["person"], project=world["project"], date=datetime.date(2025, 3, 10),
                     hours=Decimal("2.50"), description="Workshop", source="psa", external_id="t1",
                     status="invoiced", invoice_line=line)

    same = upsert([entry("t1", status="draft")], psa_user)
    assert same.results[0].result == Result.UNCHANGED
    changed = upsert([entry("t1", hours="4")], psa_user)
    result = changed.results[0]
    assert (result.result, result.code) == (Result.ERROR, "already_invoiced")
    assert "credit note" in result.message and result.field_errors == {"hours": ["Invoiced: cannot change."]}
    assert TimeEntry.objects.get(external_id="t1").hours == Decimal("2.50")


def test_approved_time_changed_at_the_source_is_approved_again(world, psa_user):
    TimeEntryFactory(person=world["person"], project=world["project"], date=datetime.date(2025, 3, 10),
                     hours=Decimal("2.50"), description="Workshop", source="psa", external_id="t1",
                     status="approved")
    assert upsert([entry("t1")], psa_user).results[0].result == Result.UNCHANGED
    assert upsert([entry("t1", hours="3")], psa_user).results[0].result == Result.UPDATED
    entry_row = TimeEntry.objects.get(external_id="t1")
    assert entry_row.status == "submitted" and entry_row.approved_by is None
    assert StateLog.objects.filter(object_id=entry_row.pk, transition="reopen").exists()


def test_approved_status_is_refused(world, psa_user):
    result = upsert([entry("t1", status="approved")], psa_user).results[0]
    assert (result.result, result.code) == (Result.ERROR, "invalid_status")


def test_24_hours_a_day_over_the_database_and_the_batch(world, psa_user):
    TimeEntryFactory(person=world["person"], project=world["project"], date=datetime.date(2025, 3, 10),
                     hours=Decimal("20"))
    outcome = upsert([entry("t1", hours="4"), entry("t2", hours="0.5"),
                      entry("t3", hours="10", person_external_id="psa-ben"),
                      entry("t4", hours="14.5", person_external_id="psa-ben")], psa_user, partial=True)
    assert [r.result for r in outcome.results] == [Result.CREATED, Result.ERROR, Result.CREATED, Result.ERROR]
    assert outcome.results[1].code == "daily_hours_exceeded"
    assert outcome.results[1].field_errors == {"hours": ["At most 0.00 h left on 2025-03-10."]}
    # an update replaces the entry's own hours instead of adding to them
    assert upsert([entry("t1", hours="3.5")], psa_user).results[0].result == Result.UPDATED


def test_work_needs_an_active_project(world, psa_user):
    ProjectFactory(code="PRJ-HOLD", status="on_hold")
    result = upsert([entry("t1", project_code="PRJ-HOLD")], psa_user).results[0]
    assert (result.result, result.code) == (Result.ERROR, "project_not_active")


def test_record_shape_errors(world, psa_user):
    outcome = upsert([entry("t1"), entry("t1"), {"hours": "1"}, entry("t4", colour="red"), "nope",
                      entry("t6", source="crm")], psa_user)
    codes = [r.code for r in outcome.results]
    assert codes == ["", "duplicate_external_id", "required", "unknown_field", "invalid", "invalid"]
    assert outcome.results[3].field_errors == {"colour": ["Unknown field."]}
    assert TimeEntry.objects.count() == 0


def test_too_many_records_and_a_source_are_required(psa_user):
    with pytest.raises(ApplicationError, match="at most 1000"):
        upsert([entry(str(i)) for i in range(MAX_BULK_RECORDS + 1)], psa_user)
    with pytest.raises(ApplicationError, match="source"):
        upsert_records(resource="time_entries", records=[], user=psa_user, source=" ")


def test_expenses(world, psa_user):
    record = {"external_id": "e1", "person_code": "P-ANNA", "project_code": "PRJ-A", "date": DAY,
              "amount": "42.10", "currency": "eur", "category": "travel", "description": "Train"}
    first = upsert_records(resource="expenses", records=[record], user=psa_user, source="psa")
    assert first.results[0].result == Result.CREATED
    expense = Expense.objects.get(external_id="e1")
    assert (expense.currency, expense.amount, expense.status) == ("EUR", Decimal("42.10"), "submitted")
    bad = upsert_records(resource="expenses", records=[{**record, "amount": "-1", "category": "yacht"}],
                         user=psa_user, source="psa")
    assert bad.results[0].result == Result.ERROR and "category" in bad.results[0].field_errors


def test_single_record_is_not_recorded_as_an_import(world, psa_user):
    result = upsert_record(resource="time_entries", record=entry("t1"), user=psa_user, source="psa")
    assert result.result == Result.CREATED and result.id
    assert ImportBatch.objects.count() == 0


def _queries(records, user) -> int:
    with CaptureQueriesContext(connection) as ctx:
        outcome = upsert(records, user)
    assert not outcome.errors
    return len(ctx.captured_queries)


def test_bulk_queries_grow_only_by_the_writes_of_each_record(world, psa_user):
    """Reads are per batch: q(n) = a + b·n with b the writes of one record (savepoint, rows, history, log)."""
    days = [datetime.date(2025, 4, 1) + datetime.timedelta(days=i) for i in range(60)]
    q10 = _queries([entry(f"a{i}", date=days[i].isoformat()) for i in range(10)], psa_user)
    q20 = _queries([entry(f"b{i}", date=days[i].isoformat()) for i in range(20)], psa_user)
    q30 = _queries([entry(f"c{i}", date=days[i].isoformat()) for i in range(30)], psa_user)
    per_record = (q30 - q20) / 10
    assert q20 - q10 == q30 - q20, (q10, q20, q30)
    assert per_record <= 8, per_record
    # re-sending unchanged records costs no query per record at all
    q_same = _queries([entry(f"c{i}", date=days[i].isoformat()) for i in range(30)], psa_user)
    q_same_small = _queries([entry(f"c{i}", date=days[i].isoformat()) for i in range(10)], psa_user)
    assert q_same == q_same_small, (q_same, q_same_small)


def test_a_full_bulk_of_1000_new_entries_costs_a_bounded_number_of_queries(world, psa_user):
    """The limit of one call: 1,000 new entries of 50 people over 20 days, in well under 200 queries."""
    from tests.factories import PersonFactory

    for i in range(50):
        PersonFactory(role=world["role"], source="psa", external_id=f"psa-p{i}", user=None)
    records = [entry(f"full-{i}", person_external_id=f"psa-p{i % 50}",
                     date=(datetime.date(2025, 5, 1) + datetime.timedelta(days=i // 50)).isoformat(), hours="4")
               for i in range(MAX_BULK_RECORDS)]
    with CaptureQueriesContext(connection) as queries:
        outcome = upsert(records, psa_user)
    count = len(queries)
    assert outcome.summary()["created"] == 1000 and not outcome.errors
    assert count < 200, count
    assert TimeEntry.objects.filter(external_id__startswith="full-", status="submitted").count() == 1000
    assert ApprovalRequest.objects.filter(status="pending").count() == 1000


@pytest.mark.postgres  # SQLite has no row locks: Django drops FOR UPDATE there
def test_rows_of_a_batch_are_locked_against_a_concurrent_approval(world, psa_user):
    """The batch reads its existing rows FOR UPDATE, so an approval cannot slip in between read and save."""
    upsert([entry("t1")], psa_user)
    with CaptureQueriesContext(connection) as queries:
        upsert([entry("t1", hours="3")], psa_user)
    assert any("FOR UPDATE" in q["sql"] and "billing_timeentry" in q["sql"] for q in queries.captured_queries)


def test_rejected_time_corrected_at_the_source_goes_back_to_the_pm(world, psa_user):
    TimeEntryFactory(person=world["person"], project=world["project"], date=datetime.date(2025, 3, 10),
                     hours=Decimal("2.50"), description="Workshop", source="psa", external_id="t1",
                     status="rejected", rejection_reason="Wrong project")
    assert upsert([entry("t1")], psa_user).results[0].result == Result.UNCHANGED
    assert upsert([entry("t1", hours="2")], psa_user).results[0].result == Result.UPDATED
    row = TimeEntry.objects.get(external_id="t1")
    assert (row.status, row.hours, row.rejection_reason) == ("submitted", Decimal("2.00"), "")
    logged = StateLog.objects.filter(content_type=ContentType.objects.get_for_model(TimeEntry), object_id=row.pk)
    assert list(logged.order_by("pk").values_list("transition", flat=True)) == ["redraft", "submit"]


def test_expense_changes_are_written_with_their_history(world, psa_user):
    record = {"external_id": "e1", "person_code": "P-ANNA", "project_code": "PRJ-A", "date": DAY,
              "amount": "42.10", "currency": "EUR", "category": "travel", "description": "Train"}
    upsert_records(resource="expenses", records=[record], user=psa_user, source="psa")
    changed = upsert_records(resource="expenses", records=[{**record, "amount": "45", "category": "meals"}],
                             user=psa_user, source="psa")
    assert changed.results[0].result == Result.UPDATED
    expense = Expense.objects.get(external_id="e1")
    assert (expense.amount, expense.category, expense.status) == (Decimal("45.00"), "meals", "submitted")
    latest = expense.history.first()
    assert (latest.history_type, latest.history_user, latest.amount) == ("~", psa_user, Decimal("45.00"))


def test_an_expense_whose_amount_changes_is_routed_again(world, psa_user):
    record = {"external_id": "e1", "person_code": "P-ANNA", "project_code": "PRJ-A", "date": DAY,
              "amount": "42.10", "currency": "EUR", "category": "travel"}
    upsert_records(resource="expenses", records=[record], user=psa_user, source="psa")
    expense = Expense.objects.get(external_id="e1")
    requests = ApprovalRequest.objects.filter(content_type=ContentType.objects.get_for_model(Expense),
                                              object_id=expense.pk)
    first = requests.get()
    assert first.amount == Decimal("42.10")
    upsert_records(resource="expenses", records=[{**record, "amount": "4200"}], user=psa_user, source="psa")
    first.refresh_from_db()
    assert first.status == "cancelled" and "routed again" in first.outcome_reason
    assert requests.get(status="pending").amount == Decimal("4200.00")
