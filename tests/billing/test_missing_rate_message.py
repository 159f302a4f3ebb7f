"""MISSING_RATE says which role lacks a rate, on how many entries and days, between which dates — once per role.

Before: one sentence per unpriced entry (27 lines on one demo invoice). Through the real billing run.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from billing.models import Invoice
from billing.services.billing_engine import TimeItem, missing_rate_message
from billing.services.billing_run import bill_period
from tests.factories import (
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
)

pytestmark = pytest.mark.django_db

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)


def test_one_sentence_per_missing_role_with_counts_days_dates_and_people():
    consultant, senior, analyst = (RoleFactory(code=c) for c in ("CONSULTANT", "SENIOR", "ANALYST"))
    contract = ContractFactory()
    RateCardLineFactory(rate_card=contract.rate_card, role=consultant, rate=Decimal("100.00"))
    project = ProjectFactory(contract=contract)
    ada, bob = PersonFactory(role=senior, name="Ada Senior"), PersonFactory(role=senior, name="Bob Senior")
    cy = PersonFactory(role=analyst, name="Cy Analyst")
    priced = PersonFactory(role=consultant, name="Dee Consultant")
    senior_days = [datetime.date(2025, 3, d) for d in (3, 3, 4, 12, 12, 12, 20)]
    for i, day in enumerate(senior_days):
        TimeEntryFactory(project=project, person=(ada, bob)[i % 2], date=day, hours=Decimal("2.50"), status="approved")
    TimeEntryFactory(project=project, person=cy, date=datetime.date(2025, 3, 7), hours=Decimal("4.00"),
                     status="approved")
    TimeEntryFactory(project=project, person=priced, date=datetime.date(2025, 3, 7), hours=Decimal("8.00"),
                     status="approved")

    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)

    invoice = Invoice.objects.get()
    assert invoice.status == Invoice.Status.EXCEPTION
    exception = invoice.exceptions.get(code="MISSING_RATE")
    message = exception.message
    assert message.count("No rate for role") == 2, message  # one per role, not one per entry (8 before)
    assert (
        "No rate for role SENIOR: 7 time entries (17.50 h) on 4 days between 2025-03-03 and 2025-03-20, "
        "by Ada Senior, Bob Senior." in message
    ), message
    assert "No rate for role ANALYST: 1 time entry (4.00 h) on 2025-03-07, by Cy Analyst." in message, message
    assert "CONSULTANT" not in message


def test_many_people_are_summarised():
    items = [
        TimeItem(id=i, person_id=i, role_id=1, project_id=1, date=datetime.date(2025, 3, 1 + i), hours=Decimal("1"),
                 person_name=f"Person {i}")
        for i in range(5)
    ]
    assert missing_rate_message("PARTNER", items) == (
        "No rate for role PARTNER: 5 time entries (5.00 h) on 5 days between 2025-03-01 and 2025-03-05, "
        "by Person 0, Person 1, Person 2 and 2 more."
    )
