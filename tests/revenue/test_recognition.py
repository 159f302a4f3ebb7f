"""Recognised revenue known to the cent, month by month, for each method (docs/rules/revenue.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Contract, Invoice
from kernel.errors import ApplicationError
from revenue.models import JournalEntry, RevenuePeriod, RevenueSchedule
from revenue.selectors import reconciliation
from revenue.services.close import revenue_close
from tests.factories import FxRateFactory, LegalEntityFactory

from .helpers import D, contract, controller, estimate, issue, milestone, person, policy, work

pytestmark = pytest.mark.django_db


def close(month: str, user=None):
    return revenue_close(period=month, user=user or controller(), lock=True, reason="month end")


def row(c, month: str) -> RevenueSchedule:
    return RevenueSchedule.objects.get(contract=c, period__start=D(int(month[:4]), int(month[5:]), 1))


def figures(c, month: str) -> tuple:
    s = row(c, month)
    return (s.period_revenue, s.cumulative_recognised, s.cumulative_billed, s.wip, s.deferred, s.catch_up)


def M(text: str) -> Decimal:
    return Decimal(text)


def test_time_and_materials_with_the_cap_reached_mid_project():
    c, project = contract(cap=M("2000.00"))
    who = person()
    work(project, D(2026, 10, 5), "8", who=who)
    work(project, D(2026, 11, 5), "10", who=who)
    work(project, D(2026, 12, 5), "5", who=who)
    issue(c, D(2026, 11, 2), "800.00")
    issue(c, D(2026, 12, 2), "1000.00")
    user = controller()
    for month in ("2026-10", "2026-11", "2026-12"):
        close(month, user)
    assert figures(c, "2026-10") == (M("800.00"), M("800.00"), M("0.00"), M("800.00"), M("0.00"), M("0.00"))
    assert figures(c, "2026-11") == (M("1000.00"), M("1800.00"), M("800.00"), M("1000.00"), M("0.00"), M("0.00"))
    # 5 h more would make 2300.00: only 200.00 is recognised, 300.00 is unrecoverable.
    assert figures(c, "2026-12") == (M("200.00"), M("2000.00"), M("1800.00"), M("200.00"), M("0.00"), M("0.00"))
    assert row(c, "2026-12").unrecoverable == M("300.00")
    assert reconciliation(D(2026, 12, 1)).ties


def test_discount_and_expenses_are_priced_as_the_billing_engine_prices_them():
    from tests.factories import ExpenseFactory

    c, project = contract(discount_pct=M("10"), expense_markup_pct=M("5"))
    work(project, D(2026, 10, 5), "7.5")
    ExpenseFactory(project=project, person=person(), date=D(2026, 10, 6), amount=M("99.99"), status="approved")
    close("2026-10")
    # 750.00 − 10 % (75.00) + 99.99 × 1.05 = 104.99 (expenses are not discounted)
    assert row(c, "2026-10").period_revenue == M("779.99")


def test_fixed_fee_percent_complete_with_an_eac_revised_after_a_close():
    c, project = contract(fixed_fee=True)
    milestone(project, "6000.00")
    milestone(project, "4000.00")
    estimate(c, "100", D(2026, 10, 1))
    who = person()
    work(project, D(2026, 10, 10), "20", who=who)
    work(project, D(2026, 11, 10), "30", who=who, billable=False)  # progress counts all approved time
    issue(c, D(2026, 11, 20), "6000.00")  # the first milestone
    close("2026-10")
    close("2026-11")
    assert figures(c, "2026-10") == (M("2000.00"), M("2000.00"), M("0.00"), M("2000.00"), M("0.00"), M("0.00"))
    assert figures(c, "2026-11") == (M("3000.00"), M("5000.00"), M("6000.00"), M("0.00"), M("1000.00"), M("0.00"))
    # After November's close the PM's revised estimate (125 h from 30 Nov) is approved.
    estimate(c, "125", D(2026, 11, 30))
    work(project, D(2026, 12, 3), "10", who=who)
    close("2026-12")
    # 60 h of 125 h = 48 % of 10,000.00; November re-measured at 40 % → catch-up −1,000.00.
    assert figures(c, "2026-12") == (M("-200.00"), M("4800.00"), M("6000.00"), M("0.00"), M("1200.00"), M("-1000.00"))
    assert row(c, "2026-11").cumulative_recognised == M("5000.00")  # the closed month is unchanged
    assert reconciliation(D(2026, 12, 1)).ties


def test_fixed_fee_by_milestone_recognises_on_approval():
    c, project = contract(fixed_fee=True)
    policy(c, "milestone")
    milestone(project, "5000.00", approved_on=D(2026, 10, 15))
    milestone(project, "2500.00", approved_on=D(2026, 11, 1))
    milestone(project, "9999.00")  # planned: nothing yet
    close("2026-10")
    close("2026-11")
    assert row(c, "2026-10").period_revenue == M("5000.00")
    assert row(c, "2026-11").period_revenue == M("2500.00")


def test_quarterly_retainer_fee_in_thirds_with_overage_as_delivered():
    c, project = contract(
        retainer=True,
        retainer_amount=M("10000.00"),
        included_hours=M("80.00"),
        billing_frequency=Contract.Frequency.QUARTERLY,
    )
    policy(c, "straight_line", retainer_start=D(2026, 10, 1))
    who = person()
    work(project, D(2026, 10, 20), "50", who=who)
    work(project, D(2026, 11, 20), "40", who=who)  # 10 h beyond the quarter's 80 included hours
    issue(c, D(2026, 12, 31), "11000.00")  # fee + 10 h overage, billed at the quarter end
    for month in ("2026-10", "2026-11", "2026-12"):
        close(month)
    assert figures(c, "2026-10") == (M("3333.33"), M("3333.33"), M("0.00"), M("3333.33"), M("0.00"), M("0.00"))
    assert figures(c, "2026-11") == (M("4333.34"), M("7666.67"), M("0.00"), M("7666.67"), M("0.00"), M("0.00"))
    assert figures(c, "2026-12") == (M("3333.33"), M("11000.00"), M("11000.00"), M("0.00"), M("0.00"), M("0.00"))


def test_monthly_retainer_billed_in_advance_is_deferred_revenue():
    c, _project = contract(retainer=True, retainer_amount=M("3000.00"), included_hours=M("10.00"))
    policy(c, "straight_line", retainer_start=D(2026, 10, 1))
    issue(c, D(2026, 10, 1), "3000.00")
    issue(c, D(2026, 10, 28), "3000.00")  # November's fee, billed ahead
    close("2026-10")
    assert figures(c, "2026-10") == (M("3000.00"), M("3000.00"), M("6000.00"), M("0.00"), M("3000.00"), M("0.00"))


def test_a_credit_note_after_the_close_lands_in_the_next_period():
    c, project = contract()
    work(project, D(2026, 10, 5), "10")
    invoice = issue(c, D(2026, 10, 31), "1000.00")
    close("2026-10")
    assert figures(c, "2026-10") == (M("1000.00"), M("1000.00"), M("1000.00"), M("0.00"), M("0.00"), M("0.00"))
    issue(c, D(2026, 10, 31), "200.00", kind=Invoice.Kind.CREDIT_NOTE, credit_of=invoice)  # dated in October
    close("2026-11")
    s = row(c, "2026-11")
    assert (s.period_revenue, s.period_billed, s.cumulative_billed, s.wip) == (
        M("0.00"),
        M("-200.00"),
        M("800.00"),
        M("200.00"),
    )
    assert figures(c, "2026-10")[2] == M("1000.00")  # October still shows what was known at its close
    assert reconciliation(D(2026, 11, 1)).ties


def test_a_late_approval_is_a_catch_up_in_the_next_open_period():
    c, project = contract()
    work(project, D(2026, 10, 5), "8")
    late = work(project, D(2026, 10, 20), "2", status="submitted")
    close_with_override = revenue_close(
        period="2026-10", user=controller(), lock=True, override_reason="PM on leave; approved next month"
    )
    assert close_with_override.checklist_override
    assert row(c, "2026-10").period_revenue == M("800.00")
    type(late).objects.filter(pk=late.pk).update(status="approved")  # approved after the close
    close("2026-11")
    s = row(c, "2026-11")
    assert (s.period_revenue, s.catch_up) == (M("200.00"), M("200.00"))


def test_fx_at_the_period_end_rate_in_the_journal():
    entity = LegalEntityFactory(code="DE-FX", currency="EUR")
    c, project = contract(currency="USD", entity=entity)
    FxRateFactory(from_currency="USD", to_currency="EUR", date=D(2026, 10, 15), rate=M("0.80"))
    FxRateFactory(from_currency="USD", to_currency="EUR", date=D(2026, 10, 31), rate=M("0.9123"))
    FxRateFactory(from_currency="USD", to_currency="EUR", date=D(2026, 11, 1), rate=M("0.95"))
    work(project, D(2026, 10, 5), "10")  # 1,000.00 USD
    issue(c, D(2026, 10, 20), "333.33")
    close("2026-10")
    s = row(c, "2026-10")
    assert (s.fx_rate, s.period_revenue_entity, s.period_billed_entity, s.wip_change_entity) == (
        M("0.9123"),
        M("912.30"),
        M("304.10"),
        M("608.20"),
    )
    journal = JournalEntry.objects.get(entity=entity, period__start=D(2026, 10, 1))
    lines = {(line.account, line.debit, line.credit) for line in journal.lines.all()}
    assert lines == {
        ("4000", M("0"), M("912.30")),
        ("4900", M("304.10"), M("0")),
        ("1250", M("608.20"), M("0")),
    }
    assert reconciliation(D(2026, 10, 1)).ties


def test_a_missing_period_end_rate_refuses_the_close():
    entity = LegalEntityFactory(code="DE-NOFX", currency="EUR")
    contract(currency="USD", entity=entity)
    with pytest.raises(ApplicationError, match="No FX rate"):
        close("2026-10")
    assert not RevenueSchedule.objects.exists()


def test_rerunning_a_draft_replaces_it_and_a_closed_period_is_refused():
    c, project = contract()
    work(project, D(2026, 10, 5), "8")
    user = controller()
    revenue_close(period="2026-10", user=user)
    work(project, D(2026, 10, 6), "1")
    period = revenue_close(period="2026-10", user=user)
    assert period.status == RevenuePeriod.Status.DRAFT
    assert RevenueSchedule.objects.get(contract=c).period_revenue == M("900.00")
    close("2026-10", user)
    with pytest.raises(ApplicationError, match="cannot be closed again"):
        close("2026-10", user)
    with pytest.raises(ApplicationError, match="cannot be closed again"):
        revenue_close(period="2026-10", user=user)


def test_periods_close_in_order_and_only_controllers_close():
    from kernel.errors import PermissionDeniedError
    from tests.factories import UserFactory

    contract()
    close("2026-10")
    with pytest.raises(ApplicationError, match="periods close in order"):
        close("2026-12")
    with pytest.raises(PermissionDeniedError):
        revenue_close(period="2026-11", user=UserFactory(groups=["finance_analyst"]), lock=True)
    revenue_close(period="2026-11", user=UserFactory(groups=["finance_analyst"]))  # a draft is fine
    with pytest.raises(PermissionDeniedError):
        revenue_close(period="2026-11", user=UserFactory(groups=["project_manager"]))


def test_the_checklist_must_be_clear_or_overridden():
    contract(fixed_fee=True)  # percent complete, no estimate
    with pytest.raises(ApplicationError, match="checklist is not clear"):
        close("2026-10")
    period = revenue_close(period="2026-10", user=controller(), lock=True, override_reason="EAC due next week")
    assert period.status == RevenuePeriod.Status.CLOSED
    assert period.checklist_override == "EAC due next week"


def test_kpis_gain_revenue_wip_days_and_realisation():
    from insights.selectors import kpis

    c, project = contract(cap=M("2000.00"))
    who = person()
    work(project, D(2026, 10, 5), "8", who=who)
    work(project, D(2026, 11, 5), "10", who=who)
    work(project, D(2026, 12, 5), "5", who=who)
    issue(c, D(2026, 11, 2), "800.00")
    issue(c, D(2026, 12, 2), "1000.00")
    user = controller()
    for month in ("2026-10", "2026-11", "2026-12"):
        close(month, user)
    result = kpis(D(2026, 10, 1), D(2026, 12, 31), metrics=["revenue", "wip_days", "realisation"])
    assert result["revenue"]["total"] == M("2000.00")
    # WIP 200.00 at 31 Dec ÷ 2,000.00 of revenue in the three months × 90
    assert result["wip_days"]["wip_days"] == 9.0
    # billed 1,800.00 ÷ 23 h × 100.00 standard
    assert result["realisation"]["realisation_pct"] == 78.3


def test_standard_value_counts_each_of_alike_entries_rounded():
    """Entries alike in contract, role, day and hours are read as one group; each still counts, rounded."""
    from revenue.selectors import standard_value

    c, project = contract()
    line = c.rate_card.lines.get()
    line.rate = Decimal("100.0050")  # 0.33 h × 100.005 = 33.00165 → 33.00 each
    line.save()
    for who in (person(), person(), person()):
        work(project, D(2026, 10, 5), "0.33", who=who)
    work(project, D(2026, 10, 6), "1", who=person())
    work(project, D(2026, 10, 7), "2", who=person(), status="submitted")  # not approved: not counted
    assert standard_value(D(2026, 10, 1), D(2026, 10, 31), [c.pk]) == {c.pk: M("199.01")}  # 3 × 33.00 + 100.01
