"""For any sequence of approvals, billing, credit notes, estimate changes, draft runs and closes:
the reconciliation ties to the cent and a closed period never changes (docs/rules/revenue.md)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Contract, Invoice
from revenue.models import Estimate, JournalLine, RevenuePeriod, RevenueSchedule
from revenue.selectors import reconciliation
from revenue.services.close import revenue_close
from tests.factories import FxRateFactory, LegalEntityFactory

from .helpers import contract, controller, issue, milestone, person, policy

pytestmark = pytest.mark.django_db

MONTHS = [datetime.date(2026, 10, 1), datetime.date(2026, 11, 1), datetime.date(2026, 12, 1), datetime.date(2027, 1, 1)]


@pytest.fixture
def firm(db):
    entity = LegalEntityFactory(code="INV-DE", currency="EUR")
    FxRateFactory(from_currency="USD", to_currency="EUR", date=datetime.date(2026, 9, 30), rate=Decimal("0.91234567"))
    tm, tm_project = contract(entity=entity, cap=Decimal("3000.00"), discount_pct=Decimal("3"))
    usd, usd_project = contract(entity=entity, currency="USD")
    ff, ff_project = contract(entity=entity, fixed_fee=True)
    milestone(ff_project, "7777.77")
    Estimate.objects.create(contract=ff, hours=Decimal("60"), as_of=MONTHS[0], status="approved")
    rt, rt_project = contract(
        entity=entity,
        retainer=True,
        retainer_amount=Decimal("1000.00"),
        included_hours=Decimal("6"),
        billing_frequency=Contract.Frequency.QUARTERLY,
    )
    policy(rt, "straight_line", retainer_start=MONTHS[0])
    return {
        "contracts": [tm, usd, ff, rt],
        "projects": [tm_project, usd_project, ff_project, rt_project],
        "person": person(),
        "controller": controller(),
    }


step = st.one_of(
    st.tuples(st.just("work"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 28), st.integers(1, 32)),
    st.tuples(st.just("invoice"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 28), st.integers(1, 300000)),
    st.tuples(st.just("credit"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 28), st.integers(1, 50000)),
    st.tuples(st.just("eac"), st.just(2), st.integers(0, 3), st.just(1), st.integers(10, 200)),
    st.tuples(st.just("draft"), st.just(0), st.just(0), st.just(1), st.just(0)),
    st.tuples(st.just("close"), st.just(0), st.just(0), st.just(1), st.just(0)),
)


def _snapshot(period: RevenuePeriod) -> tuple:
    schedules = tuple(
        RevenueSchedule.objects.filter(period=period)
        .order_by("contract_id")
        .values_list("contract_id", "cumulative_recognised", "cumulative_billed", "wip", "deferred", "period_revenue")
    )
    lines = tuple(
        JournalLine.objects.filter(entry__period=period).order_by("id").values_list("account", "debit", "credit")
    )
    return schedules, lines


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, max_size=16))
def test_reconciliation_ties_and_closed_periods_never_change(firm, steps):
    user = firm["controller"]
    with transaction.atomic():
        frozen: dict[int, tuple] = {}
        next_month = 0
        for kind, which, month, day, amount in steps:
            c, project = firm["contracts"][which], firm["projects"][which]
            when = MONTHS[month].replace(day=day)
            if kind == "work":
                # Approved at any time: dated in a closed month, it is a late approval.
                from tests.factories import TimeEntryFactory

                hours = Decimal(amount) / 4
                TimeEntryFactory(project=project, person=firm["person"], date=when, hours=hours, status="approved")
            elif kind == "invoice":
                issue(c, when, str(Decimal(amount) / 100))
            elif kind == "credit":
                original = Invoice.objects.filter(contract=c, kind=Invoice.Kind.INVOICE).last()
                if original is not None:
                    issue(c, when, str(Decimal(amount) / 100), kind=Invoice.Kind.CREDIT_NOTE, credit_of=original)
            elif kind == "eac":
                Estimate.objects.create(contract=c, hours=Decimal(amount), as_of=when, status="approved")
            elif next_month < len(MONTHS):
                label = f"{MONTHS[next_month]:%Y-%m}"
                period = revenue_close(period=label, user=user, lock=kind == "close", override_reason="property test")
                report = reconciliation(period.start)
                assert report.ties, report.differences
                if kind == "close":
                    frozen[period.pk] = _snapshot(period)
                    next_month += 1
            for pk, snapshot in frozen.items():
                assert _snapshot(RevenuePeriod.objects.get(pk=pk)) == snapshot
        for period in RevenuePeriod.objects.exclude(status=RevenuePeriod.Status.OPEN):
            assert reconciliation(period.start).ties
        transaction.set_rollback(True)
