"""Cash-forecast backtest (issue #21, ADR 0126): a small history whose answer is worked out by hand.

Client A (contract CA) is invoiced 1,000 every 30 days from Monday 6 Jan 2025 on 30-day terms
and always pays 10 days late. Client B was invoiced 500 on 6 Jan and never paid.
The first cut-off is 13 weeks after the first invoice: Monday 7 Apr 2025. Known then: A's
invoices of 6 Jan, 5 Feb, 7 Mar, 6 Apr and B's; A's payments of 15 Feb and 17 Mar.

- Current forecast (due + the client's average days late, 10 for A, 0 for B without payments):
  A's 7 Mar invoice on 16 Apr, the 6 Apr one on 16 May; B's is past due → "at risk", left out.
- With billing: A's open invoices on the same days (its delays are all 10); B's is later than
  any delay seen, so expected two weeks on (21 Apr); A's cadence (30 days, 1,000) brings
  invoices on 6 May, 5 Jun, 5 Jul, due 30 days later, paid 10 days after: 15 Jun, 15 Jul, 14 Aug.
- Actual: A paid 16 Apr, 16 May, 15 Jun (and 15 Jul, after the 13-week window).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from insights.services import forecast as fc
from tests.factories import ContractFactory
from tests.insights.kpis.factories import issued, pay

D = datetime.date


@pytest.fixture
def history():
    a, b = ContractFactory(code="CA"), ContractFactory(code="CB")
    for issue in (D(2025, 1, 6), D(2025, 2, 5), D(2025, 3, 7), D(2025, 4, 6), D(2025, 5, 6), D(2025, 6, 5)):
        inv = issued(contract=a, issue_date=issue, due_date=issue + datetime.timedelta(days=30))
        pay(inv, "1000.00", inv.due_date + datetime.timedelta(days=10))
    issued(contract=b, total="500.00", issue_date=D(2025, 1, 6), due_date=D(2025, 2, 5))
    return a, b


@pytest.mark.django_db
def test_the_forecasts_at_one_cut_off_only_use_what_was_known(history):
    ledger = fc.load_ledger()
    cut = D(2025, 4, 7)
    assert fc.cutoffs(ledger, D(2025, 4, 20)) == [D(2025, 4, 7), D(2025, 4, 14)]
    current = fc.window(fc.current_forecast(ledger, cut), cut, D(2025, 7, 7))
    assert current == {"EUR": Decimal("2000.00")}
    expected = fc.expected_invoices(ledger, cut, D(2025, 7, 7))
    assert [(e.issue, e.due, e.amount) for e in expected] == [
        (D(2025, 5, 6), D(2025, 6, 5), Decimal("1000.00")),
        (D(2025, 6, 5), D(2025, 7, 5), Decimal("1000.00")),
        (D(2025, 7, 5), D(2025, 8, 4), Decimal("1000.00")),
    ]
    flows = fc.billing_forecast(ledger, cut, D(2025, 7, 7))
    assert fc.window(flows, cut, D(2025, 5, 5)) == {"EUR": Decimal("1500.00")}  # A's 16 Apr + B's 21 Apr
    assert fc.window(flows, cut, D(2025, 7, 7)) == {"EUR": Decimal("3500.00")}
    assert ledger.actual(cut, D(2025, 7, 7)) == {"EUR": Decimal("3000.00")}


@pytest.mark.django_db
def test_backtest_wape_per_horizon(history):
    result = fc.backtest(fc.load_ledger(), end=D(2025, 7, 6))
    h13 = result["horizons"]["13"]
    assert h13["cutoffs"] == 1  # only 7 Apr has its 13 weeks in the past
    assert h13["weeks"] == [{"cutoff": "2025-04-07", "actual": 3000.0, "current": 2000.0, "with_billing": 3500.0}]
    assert h13["wape_current_pct"] == 33.3 and h13["wape_with_billing_pct"] == 16.7
    h4 = result["horizons"]["4"]
    assert h4["weeks"][0] == {"cutoff": "2025-04-07", "actual": 1000.0, "current": 1000.0, "with_billing": 1500.0}
    assert h4["cutoffs"] == 10  # 7 Apr … 9 Jun
    assert set(result["horizons"]) == {"1", "4", "13"}


@pytest.mark.django_db
def test_backtest_weeks_are_each_horizons_own_forecasts(history):
    """The backtest makes a cut-off's forecasts once for all horizons: each week's figures are exactly
    the forecasts made for that horizon alone (`current_forecast`, `billing_forecast` to its end)."""
    ledger = fc.load_ledger()
    result = fc.backtest(ledger, end=D(2025, 7, 6))
    checked = 0
    for h, figures in result["horizons"].items():
        for week in figures["weeks"]:
            cut = D.fromisoformat(week["cutoff"])
            stop = cut + datetime.timedelta(weeks=int(h))
            current = fc.window(fc.current_forecast(ledger, cut), cut, stop)
            with_billing = fc.window(fc.billing_forecast(ledger, cut, stop), cut, stop)
            assert week["current"] == fc._r(sum(current.values(), Decimal(0)))
            assert week["with_billing"] == fc._r(sum(with_billing.values(), Decimal(0)))
            checked += 1
    assert checked == sum(f["cutoffs"] for f in result["horizons"].values()) > 10


@pytest.mark.django_db
def test_a_payment_after_the_cut_off_is_not_known_at_it(history):
    """The forecast at 7 Apr is the same whether or not the later payments exist: no peeking."""
    ledger = fc.load_ledger()
    before = fc.window(fc.billing_forecast(ledger, D(2025, 4, 7), D(2025, 7, 7)), D(2025, 4, 7), D(2025, 7, 7))
    from billing.models import Payment

    Payment.objects.filter(date__gte=D(2025, 4, 7)).delete()
    after = fc.window(fc.billing_forecast(fc.load_ledger(), D(2025, 4, 7), D(2025, 7, 7)), D(2025, 4, 7), D(2025, 7, 7))
    assert before == after


@pytest.mark.django_db
def test_the_dashboard_shows_the_forecast_with_its_measured_error(client, history):
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(groups=["finance_controller"]))
    page = client.get(reverse("insights:dashboard"), {"period_start": "2025-01-01", "period_end": "2025-07-06"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Expected in 13 weeks with invoices to come" in html
    table = html[html.index("Measured error: backtest over the history (WAPE)") :]
    table = table[: table.index("</table>")]
    # The 13-week row: one cut-off (7 Apr), 33.3 % before, 16.7 % after (worked out in the module docstring).
    row = table[table.index("13 weeks") :]
    row = row[: row.index("</tr>")]
    assert [cell for cell in ("33.3 %", "16.7 %") if cell in row] == ["33.3 %", "16.7 %"]


@pytest.mark.django_db
def test_the_live_forecast_expects_invoices_from_approved_unbilled_work_and_schedules():
    """Cut-off 7 Apr 2025: the next run bills March's approved work on 7 Apr (31 Mar + 4 days, past), due 30 days on."""
    from billing.models import Contract
    from tests.factories import (
        ExpenseFactory,
        MilestoneFactory,
        PersonFactory,
        ProjectFactory,
        RateCardLineFactory,
        RoleFactory,
        TimeEntryFactory,
    )

    senior = RoleFactory(code="SENIOR")
    person = PersonFactory(role=senior)
    tm = ContractFactory(code="TM", discount_pct=Decimal("10"), payment_terms_days=30)
    RateCardLineFactory(rate_card=tm.rate_card, role=senior, rate=Decimal("200.0000"))
    project = ProjectFactory(contract=tm)
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 10), hours=Decimal("10.00"), status="approved")
    TimeEntryFactory(project=project, person=person, date=D(2025, 4, 2), hours=Decimal("5.00"), status="approved")
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 11), hours=Decimal("3.00"), status="submitted")
    ExpenseFactory(project=project, person=person, date=D(2025, 3, 12), amount=Decimal("120.00"), status="approved")
    fixed = ContractFactory(code="FF", billing_model=Contract.BillingModel.FIXED_FEE, payment_terms_days=30)
    fixed_project = ProjectFactory(contract=fixed)
    MilestoneFactory(project=fixed_project, amount=Decimal("5000.00"), status="approved", due_date=D(2025, 3, 20))
    MilestoneFactory(project=fixed_project, amount=Decimal("3000.00"), due_date=D(2025, 5, 15))  # planned
    MilestoneFactory(project=fixed_project, amount=Decimal("7000.00"), due_date=D(2025, 9, 15))  # after 13 weeks
    ContractFactory(
        code="RT",
        billing_model=Contract.BillingModel.RETAINER,
        retainer_amount=Decimal("4000.00"),
        payment_terms_days=30,
    )
    # A contract invoiced 34 days before the cut-off (4 days after February ends: the run lag) bills on its
    # cadence instead: not counted twice.
    busy = ContractFactory(code="BUSY", payment_terms_days=30)
    issued(contract=busy, issue_date=D(2025, 3, 4), due_date=D(2025, 4, 3))
    TimeEntryFactory(project=ProjectFactory(contract=busy), person=person, date=D(2025, 3, 25), status="approved")

    ledger = fc.load_ledger()
    got = fc.unbilled_invoices(ledger, D(2025, 4, 7), Contract.objects.all(), D(2025, 7, 7))
    codes = dict(Contract.objects.values_list("pk", "code"))
    assert sorted((codes[e.contract_id], e.issue, e.due, e.amount, e.source) for e in got) == [
        ("FF", D(2025, 4, 7), D(2025, 5, 7), Decimal("5000.00"), "unbilled work"),
        ("FF", D(2025, 5, 15), D(2025, 6, 14), Decimal("3000.00"), "milestone due"),
        ("RT", D(2025, 4, 7), D(2025, 5, 7), Decimal("4000.00"), "unbilled work"),
        # 10 h × 200 less 10 % = 1,800, plus the 120 expense (no markup); the tax ratio of the ledger's one
        # invoice is 1 (its total is its net).
        ("TM", D(2025, 4, 7), D(2025, 5, 7), Decimal("1920.00"), "unbilled work"),
    ]
