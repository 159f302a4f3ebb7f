"""Foreign-currency WIP and deferred revenue are carried at each period-end rate (ADR 0120).

A USD contract of a EUR entity: the month's revenue and billing are converted at the month-end rate, and
the balances carried from the previous close are revalued at it; the difference is an FX line on the
entity's configured account, and a balance that returns to zero in USD returns to zero in EUR.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from revenue.models import EntityAccounts, JournalEntry, RevenueSchedule
from revenue.selectors import reconciliation
from revenue.services.close import revenue_close
from tests.factories import FxRateFactory, LegalEntityFactory

from .helpers import D, contract, controller, issue, work

pytestmark = pytest.mark.django_db
M = Decimal


def _rates(*pairs: tuple) -> None:
    for day, rate in pairs:
        FxRateFactory(from_currency="USD", to_currency="EUR", date=day, rate=M(rate))


def _lines(entity, month: int) -> set[tuple[str, Decimal, Decimal]]:
    journal = JournalEntry.objects.get(entity=entity, period__start=D(2026, month, 1))
    return {(line.account, line.debit, line.credit) for line in journal.lines.all()}


def _close(month: int) -> None:
    revenue_close(period=f"2026-{month:02d}", user=controller(), lock=True)
    assert reconciliation(D(2026, month, 1)).ties


def test_wip_in_usd_is_revalued_each_month_end_and_clears_to_zero_in_eur():
    entity = LegalEntityFactory(code="DE-REVAL", currency="EUR")
    EntityAccounts.objects.create(entity=entity, fx_revaluation="7960")
    c, project = contract(currency="USD", entity=entity)
    _rates((D(2026, 9, 30), "0.90"), (D(2026, 10, 31), "0.95"), (D(2026, 11, 30), "0.92"))
    work(project, D(2026, 9, 7), "10")  # 1,000.00 USD delivered, not billed

    _close(9)
    assert _lines(entity, 9) == {("4000", M("0"), M("900.00")), ("1250", M("900.00"), M("0"))}

    _close(10)  # nothing happens in October but the dollar: the WIP is worth 950.00 EUR now
    s = RevenueSchedule.objects.get(contract=c, period__start=D(2026, 10, 1))
    assert (s.wip, s.wip_entity, s.wip_change_entity, s.fx_revaluation_entity) == (
        M("1000.00"),
        M("950.00"),
        M("50.00"),
        M("50.00"),
    )
    assert _lines(entity, 10) == {("1250", M("50.00"), M("0")), ("7960", M("0"), M("50.00"))}  # a gain

    issue(c, D(2026, 11, 10), "1000.00")  # billed in November at 0.92: 920.00 EUR
    _close(11)
    assert _lines(entity, 11) == {
        ("4900", M("920.00"), M("0")),
        ("1250", M("0"), M("950.00")),  # the WIP leaves the books at what it was carried at
        ("7960", M("30.00"), M("0")),  # a loss against October's rate
    }
    carried = sum(s.wip_change_entity for s in RevenueSchedule.objects.filter(contract=c))
    assert carried == M("0.00")


def test_deferred_revenue_in_usd_is_revalued_too():
    entity = LegalEntityFactory(code="DE-REVAL2", currency="EUR")
    c, project = contract(currency="USD", entity=entity)
    _rates((D(2026, 9, 30), "0.90"), (D(2026, 10, 31), "1.00"))
    issue(c, D(2026, 9, 15), "500.00")  # billed ahead: 450.00 EUR of deferred revenue

    _close(9)
    assert _lines(entity, 9) == {("4900", M("450.00"), M("0")), ("2450", M("0"), M("450.00"))}
    work(project, D(2026, 10, 5), "5")  # 500.00 USD delivered: the deferred revenue is released
    _close(10)
    s = RevenueSchedule.objects.get(contract=c, period__start=D(2026, 10, 1))
    assert (s.deferred, s.deferred_entity, s.period_revenue_entity, s.fx_revaluation_entity) == (
        M("0.00"),
        M("0.00"),
        M("500.00"),
        M("-50.00"),
    )
    # Revenue at October's rate (500.00), the deferred balance released at what it was carried at (450.00):
    # the liability grew with the dollar before it was released — a loss of 50.00.
    assert _lines(entity, 10) == {
        ("4000", M("0"), M("500.00")),
        ("2450", M("450.00"), M("0")),
        ("7950", M("50.00"), M("0")),
    }


def test_a_contract_in_the_entity_currency_never_has_an_fx_line():
    c, project = contract()
    work(project, D(2026, 9, 7), "8")
    issue(c, D(2026, 9, 20), "1000.00")
    _close(9)
    work(project, D(2026, 10, 7), "8")
    _close(10)
    assert not RevenueSchedule.objects.exclude(fx_revaluation_entity=0).exists()
    assert not JournalEntry.objects.filter(lines__account="7950").exists()


def test_the_reconciliation_names_a_journal_movement_that_does_not_reach_the_carried_balance():
    entity = LegalEntityFactory(code="DE-REVAL3", currency="EUR")
    c, project = contract(currency="USD", entity=entity)
    _rates((D(2026, 9, 30), "0.90"), (D(2026, 10, 31), "0.95"))
    work(project, D(2026, 9, 7), "10")
    _close(9)
    revenue_close(period="2026-10", user=controller(), lock=False)  # a draft: its rows may still change
    assert reconciliation(D(2026, 10, 1)).ties
    RevenueSchedule.objects.filter(contract=c, period__start=D(2026, 10, 1)).update(wip_change_entity=M("40.00"))

    differences = reconciliation(D(2026, 10, 1)).differences
    assert any(f"{c.code}: journals carry WIP 940.00" in d and "950.00" in d for d in differences), differences
