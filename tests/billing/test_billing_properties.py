"""Invariants of the billing run, checked on generated work (hypothesis)."""

from __future__ import annotations

import datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Invoice, InvoiceLine, TimeEntry
from billing.services.billing_run import run_billing
from tests.factories import (
    ContractFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 2)

entry_strategy = st.fixed_dictionaries(
    {
        "project": st.integers(0, 2),
        "person": st.integers(0, 2),
        "day": st.integers(-20, 40),  # before, inside and after the period
        "quarter_hours": st.integers(1, 40),
        "billable": st.booleans(),
        "status": st.sampled_from(["approved", "approved", "approved", "submitted", "draft"]),
    }
)


@pytest.fixture
def firm(db):
    roles = [RoleFactory(code=code) for code in ("SENIOR", "CONSULTANT", "ANALYST")]
    card = RateCardFactory()
    # A rate change inside the period: the same role bills at two rates.
    for role, rate in zip(roles, ("187.35", "123.45", "99.99"), strict=True):
        RateCardLineFactory(rate_card=card, role=role, rate=Decimal(rate), effective_to=datetime.date(2025, 3, 15))
        RateCardLineFactory(
            rate_card=card, role=role, rate=Decimal(rate) + Decimal("10.01"), effective_from=datetime.date(2025, 3, 16)
        )
    entity = LegalEntityFactory()
    projects = [ProjectFactory(contract=ContractFactory(rate_card=card, entity=entity)) for _ in range(3)]
    people = [PersonFactory(role=role) for role in roles]
    return projects, people


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(entry_strategy, max_size=25))
def test_billing_invariants(firm, entries):
    projects, people = firm
    with transaction.atomic():
        for spec in entries:
            TimeEntry.objects.create(
                project=projects[spec["project"]],
                person=people[spec["person"]],
                date=START + datetime.timedelta(days=spec["day"]),
                hours=Decimal(spec["quarter_hours"]) / 4,
                billable=spec["billable"],
                status=spec["status"],
            )
        due = TimeEntry.objects.filter(status="approved", billable=True, date__lte=END)
        due_hours = sum((e.hours for e in due), Decimal(0))
        due_ids = set(due.values_list("id", flat=True))

        run_billing(period_start=START, period_end=END, run_date=RUN_DATE)

        lines = list(InvoiceLine.objects.filter(kind="time"))
        # Σ billed hours = Σ approved billable hours up to the period end.
        assert sum((line.quantity for line in lines), Decimal(0)) == due_hours
        # Each due item is billed, exactly once; nothing else is.
        billed = TimeEntry.objects.filter(invoice_line__isnull=False)
        assert set(billed.values_list("id", flat=True)) == due_ids
        for line in lines:
            # Lines round as specified, and group exactly their entries' hours.
            assert line.amount == _round(line.quantity * line.unit_price)
            assert sum(e.hours for e in line.time_entries.all()) == line.quantity
        for invoice in Invoice.objects.prefetch_related("lines", "taxes"):
            assert invoice.subtotal == sum(line.amount for line in invoice.lines.all())
            assert invoice.total == invoice.subtotal + sum(tax.amount for tax in invoice.taxes.all())
            assert invoice.tax_total == sum(tax.amount for tax in invoice.taxes.all())

        # A repeated run changes nothing.
        snapshot = (Invoice.objects.count(), InvoiceLine.objects.count(), billed.count())
        run_billing(period_start=START, period_end=END, run_date=RUN_DATE)
        assert (Invoice.objects.count(), InvoiceLine.objects.count(), billed.count()) == snapshot
        transaction.set_rollback(True)
