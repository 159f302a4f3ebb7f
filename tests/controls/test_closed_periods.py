"""A closed revenue period, its schedules and its journals never change — enforced by the database.

Each test is one attempt to change what a close locked: through the close service (re-closing),
the ORM (`save()`, `QuerySet.update()`, `delete()`, `bulk_create` into the period) and raw SQL.
PostgreSQL triggers (revenue/migrations/0002) refuse every write; the attempts are marked
`postgres`. Control: `closed-periods` in docs/controls.md.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection

from kernel.errors import ApplicationError
from revenue.models import JournalEntry, JournalLine, RevenuePeriod, RevenueSchedule
from revenue.services.close import revenue_close
from tests.controls.conftest import attempt
from tests.revenue.helpers import contract, controller, issue, work

pytestmark = [pytest.mark.django_db, pytest.mark.control("closed-periods")]


@pytest.fixture
def closed():
    """October 2026 closed by the real service: one T&M contract with WIP, a journal with lines."""
    c, project = contract()
    work(project, datetime.date(2026, 10, 5), "8")
    issue(c, datetime.date(2026, 10, 30), "300.00")
    period = revenue_close(period="2026-10", user=controller(), lock=True, reason="month end")
    assert period.status == RevenuePeriod.Status.CLOSED
    schedule = RevenueSchedule.objects.get(period=period)
    journal = JournalEntry.objects.get(period=period)
    assert journal.lines.count() == 3
    return period, schedule, journal


def _unchanged(period, schedule, journal):
    schedule_after = RevenueSchedule.objects.get(pk=schedule.pk)
    assert (schedule_after.period_revenue, schedule_after.wip) == (Decimal("800.00"), Decimal("500.00"))
    assert sorted(JournalLine.objects.filter(entry=journal).values_list("debit", "credit")) == sorted(
        journal.lines.values_list("debit", "credit")
    )
    assert RevenuePeriod.objects.get(pk=period.pk).status == RevenuePeriod.Status.CLOSED


def test_reclosing_through_the_service_is_refused(closed):
    period, schedule, journal = closed
    refusal = attempt(lambda: revenue_close(period="2026-10", user=controller(), lock=True))
    assert isinstance(refusal, ApplicationError)
    refusal = attempt(lambda: revenue_close(period="2026-10", user=controller()))  # a "draft" re-run too
    assert isinstance(refusal, ApplicationError)
    _unchanged(period, schedule, journal)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "write",
    [
        "schedule_save",
        "schedule_update",
        "schedule_delete",
        "schedule_insert",
        "journal_update",
        "journal_delete",
        "line_update",
        "line_delete",
        "line_insert",
        "period_reopen",
        "period_delete",
    ],
)
def test_orm_writes_to_a_closed_period_are_refused(closed, write):
    period, schedule, journal = closed
    line = journal.lines.first()

    def schedule_save():
        schedule.period_revenue = Decimal("1.00")
        schedule.save()

    def schedule_insert():
        other, _ = contract()
        RevenueSchedule.objects.bulk_create(
            [
                RevenueSchedule(
                    **{
                        **{
                            f.attname: getattr(schedule, f.attname)
                            for f in RevenueSchedule._meta.concrete_fields
                            if f.attname != "id"
                        },
                        "contract_id": other.pk,
                    }
                )
            ]
        )

    writes = {
        "schedule_save": schedule_save,
        "schedule_update": lambda: RevenueSchedule.objects.filter(pk=schedule.pk).update(wip=Decimal("0")),
        "schedule_delete": lambda: RevenueSchedule.objects.filter(pk=schedule.pk).delete(),
        "schedule_insert": schedule_insert,
        "journal_update": lambda: JournalEntry.objects.filter(pk=journal.pk).update(reference="FORGED"),
        "journal_delete": lambda: JournalLine.objects.filter(entry=journal).delete() or journal.delete(),
        "line_update": lambda: JournalLine.objects.filter(pk=line.pk).update(credit=Decimal("1.00")),
        "line_delete": lambda: JournalLine.objects.filter(pk=line.pk).delete(),
        "line_insert": lambda: JournalLine.objects.create(entry=journal, account="9999", label="x", debit=1),
        "period_reopen": lambda: RevenuePeriod.objects.filter(pk=period.pk).update(status="draft"),
        "period_delete": lambda: RevenuePeriod.objects.filter(pk=period.pk).delete(),
    }
    refusal = attempt(writes[write])
    assert refusal is not None, f"{write} went through"
    _unchanged(period, schedule, journal)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE revenue_revenueschedule SET period_revenue = 0 WHERE period_id = %s",
        "DELETE FROM revenue_revenueschedule WHERE period_id = %s",
        "UPDATE revenue_journalline SET debit = debit + 1 WHERE entry_id IN "
        "(SELECT id FROM revenue_journalentry WHERE period_id = %s)",
        "DELETE FROM revenue_journalline WHERE entry_id IN (SELECT id FROM revenue_journalentry WHERE period_id = %s)",
        "UPDATE revenue_revenueperiod SET status = 'open' WHERE id = %s",
    ],
)
def test_raw_sql_cannot_change_a_closed_period(closed, sql):
    period, schedule, journal = closed

    def run():
        with connection.cursor() as cursor:
            cursor.execute(sql, [period.pk])

    assert attempt(run) is not None
    _unchanged(period, schedule, journal)


@pytest.mark.postgres
def test_only_the_erp_status_of_a_closed_journal_moves(closed):
    _period, _schedule, journal = closed
    assert attempt(lambda: JournalEntry.objects.filter(pk=journal.pk).update(erp_status="posted", erp_id="J-1")) is None
    journal.refresh_from_db()
    assert (journal.erp_status, journal.erp_id) == ("posted", "J-1")
