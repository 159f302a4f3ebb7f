"""Each KPI of docs/rules/kpis.md on a small history whose value is known exactly."""

from __future__ import annotations

import datetime
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from billing.models import InvoiceException, InvoiceLine
from insights import selectors as kpi
from insights.selectors import KpiFilters, percentile
from tests.factories import (
    ClientFactory,
    ContractFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    LegalEntityFactory,
    MilestoneFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)
from tests.insights.kpis.factories import at, credit_note, decision, dispute, issued, log, pay

pytestmark = pytest.mark.django_db

APRIL = KpiFilters(date(2025, 4, 1), date(2025, 4, 30), today=date(2025, 11, 1))


@pytest.fixture
def contract():
    return ContractFactory(entity=LegalEntityFactory(code="DE01"), client=ClientFactory(code="ACME"))


@pytest.fixture
def project(contract):
    return ProjectFactory(contract=contract, business_unit="Advisory")


def test_percentile_interpolates_like_percentile_cont():
    assert percentile([2, 3, 5, 11], 0.5) == 4.0
    assert percentile([2, 3, 5, 11], 0.9) == pytest.approx(9.2)
    assert percentile([7], 0.9) == 7.0
    assert percentile([], 0.5) is None


def test_days_to_invoice_from_period_end_and_from_milestone_approval(contract):
    for day in (2, 5, 11):
        issued(contract=contract, issue_date=date(2025, 4, day), period_end=date(2025, 3, 31))
    fixed = ContractFactory(fixed_fee=True, entity=contract.entity, client=contract.client)
    milestone = MilestoneFactory(project=ProjectFactory(contract=fixed), status="approved",
                                 approved_at=at(date(2025, 4, 20)))
    invoice = InvoiceFactory(contract=fixed, issue_date=date(2025, 4, 23), period_end=date(2025, 4, 30))
    line = InvoiceLineFactory(invoice=invoice, kind=InvoiceLine.Kind.MILESTONE)
    type(milestone).objects.filter(pk=milestone.pk).update(invoice_line=line, status="invoiced")
    invoice.__class__.objects.filter(pk=invoice.pk).update(number="T-MS-1", status="posted")
    # Not counted: a draft, a credit note, an invoice issued in May.
    InvoiceFactory(contract=contract, issue_date=date(2025, 4, 3), period_end=date(2025, 3, 31))
    first = issued(contract=contract, issue_date=date(2025, 5, 2), period_end=date(2025, 4, 30))
    credit_note(first, total="10.00", issue_date=date(2025, 4, 15))

    result = kpi.days_to_invoice(APRIL)

    assert result["n"] == 4  # 2, 5, 11 days after 31 March; 3 days after the milestone's approval
    assert result["median"] == 4.0
    assert result["p90"] == 9.2
    assert result["mean"] == 5.2
    assert result["by_month"] == [{"month": "2025-04", "n": 4, "mean": 5.2, "median": 4.0, "p90": 9.2}]


def test_billing_cycle_time_from_the_transition_log(contract):
    invoice = issued(contract=contract, issue_date=date(2025, 4, 3), period_end=date(2025, 3, 31))
    invoice.__class__.objects.filter(pk=invoice.pk).update(created_at=at(date(2025, 4, 2), 0),
                                                           approved_at=at(date(2025, 4, 4), 0))
    log(invoice, "mark_posted", "posted", at(date(2025, 4, 4), 12))
    log(invoice, "mark_sent", "sent", at(date(2025, 4, 6), 0))

    stages = {s["stage"]: s for s in kpi.billing_cycle_time(APRIL)["stages"]}

    assert stages["period_end_to_draft"]["median"] == 2.0
    assert stages["draft_to_approved"]["median"] == 2.0
    assert stages["approved_to_posted"]["median"] == 0.5
    assert stages["posted_to_sent"]["median"] == 1.5
    assert stages["total"]["median"] == 6.0


def test_approval_latency_median_p90_per_step_and_approver_and_sla_breaches(contract):
    carl = UserFactory(username="carl", first_name="Carl", last_name="Richter", groups=["finance_controller"])
    opened = at(date(2025, 4, 7), 8)
    for hours in (2, 4, 10):
        invoice = issued(contract=contract, issue_date=date(2025, 4, 8))
        decision(invoice, opened=opened, hours=hours, approver=carl, sla_hours=5)
    other = issued(contract=ContractFactory(), issue_date=date(2025, 4, 8))
    decision(other, opened=opened, hours=30, sla_hours=48)  # another entity and client

    everything = kpi.approval_latency(APRIL)
    assert everything["n"] == 4
    assert everything["sla_breaches"] == 1  # 10 h against an SLA of 5 h; 30 h is within 48 h

    result = kpi.approval_latency(KpiFilters(APRIL.period_start, APRIL.period_end, entity="DE01"))
    assert (result["n"], result["median"], result["p90"]) == (3, 4.0, 8.8)
    assert result["by_step"] == [{"subject_type": "invoice", "step": 1, "n": 3, "mean": 5.3, "median": 4.0,
                                  "p90": 8.8}]
    assert result["by_approver"][0]["approver"] == "Carl Richter"
    assert result["by_approver"][0]["median"] == 4.0


def test_first_pass_accuracy(contract):
    def invoice():
        return issued(contract=contract, issue_date=date(2025, 4, 10))

    invoice()  # clean
    late_dispute = invoice()
    dispute(late_dispute, opened=date(2025, 4, 10) + timedelta(days=61))  # outside 60 days: still clean
    blocked = invoice()
    InvoiceExceptionFactory(invoice=blocked, state=InvoiceException.State.OVERRIDDEN)
    warned = invoice()
    InvoiceExceptionFactory(invoice=warned, code="LATE_TIME", severity="warning")  # a warning does not count
    rejected = invoice()
    log(rejected, "reject", "draft", at(date(2025, 4, 9)))
    credited = invoice()
    credit_note(credited, total="100.00", issue_date=date(2025, 5, 30))
    disputed = invoice()
    dispute(disputed, opened=date(2025, 4, 20))

    result = kpi.first_pass_accuracy(APRIL)

    assert (result["issued"], result["clean"]) == (7, 3)
    assert result["pct"] == pytest.approx(42.9)
    assert (result["blocking"], result["rejected"], result["credited"], result["disputed"]) == (1, 1, 1, 1)


def test_exception_rate_by_code_over_invoices_drafted_in_the_period(contract):
    invoices = [InvoiceFactory(contract=contract) for _ in range(4)]
    InvoiceExceptionFactory(invoice=invoices[0], code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=invoices[0], code="MISSING_RATE", state="resolved")
    InvoiceExceptionFactory(invoice=invoices[1], code="MISSING_RATE", state="resolved")
    InvoiceExceptionFactory(invoice=invoices[2], code="LATE_TIME", severity="warning")
    today = datetime.date.today()

    result = kpi.exception_rate(KpiFilters(today, today))

    assert result["drafted"] == 4
    rows = {r["code"]: r for r in result["by_code"]}
    assert (rows["MISSING_RATE"]["invoices"], rows["MISSING_RATE"]["raised"], rows["MISSING_RATE"]["open"]) == (
        2, 3, 1)
    assert rows["MISSING_RATE"]["rate_pct"] == 50.0
    assert rows["LATE_TIME"]["rate_pct"] == 25.0


def test_disputes_frequency_causes_aging(contract):
    invoices = [issued(contract=contract, issue_date=date(2025, 4, d)) for d in (1, 2, 3, 4)]
    dispute(invoices[0], category="rate", opened=date(2025, 4, 25), amount="100.00")
    dispute(invoices[1], category="rate", opened=date(2025, 4, 5), amount="50.00", status="resolved",
            resolved=date(2025, 4, 15))
    dispute(invoices[2], category="hours", opened=date(2025, 4, 10), amount="70.00")

    result = kpi.disputes(APRIL)

    assert (result["opened"], result["invoices_issued"], result["frequency_pct"]) == (3, 4, 75.0)
    assert [(c["category"], c["count"], c["amounts"][0]["amount"]) for c in result["causes"]] == [
        ("rate", 2, Decimal("150.00")), ("hours", 1, Decimal("70.00"))]
    # Live on 30 April: opened 25 April (5 days) and 10 April (20 days); the resolved one is not.
    assert [a["count"] for a in result["aging"]] == [1, 1, 0, 0]
    assert result["resolution_days"]["median"] == 10.0


def test_credit_note_volume(contract):
    invoice = issued(contract=contract, issue_date=date(2025, 4, 2), total="1000.00")
    credit_note(invoice, total="250.00", issue_date=date(2025, 4, 20))

    result = kpi.credit_notes(APRIL)

    assert result["count"] == 1
    assert result["by_currency"] == [{"currency": "EUR", "count": 1, "amount": Decimal("250.00"),
                                      "invoiced": Decimal("1000.00"), "share_pct": 25.0}]


def test_dso_and_ar_aging(contract):
    a = issued(contract=contract, issue_date=date(2025, 3, 1), due_date=date(2025, 3, 31), total="1000.00")
    pay(a, "400.00", date(2025, 3, 20))
    pay(a, "600.00", date(2025, 4, 2))  # after the as-of date: still open on 31 March
    issued(contract=contract, issue_date=date(2024, 11, 15), due_date=date(2024, 12, 15), total="500.00")
    march = KpiFilters(date(2025, 3, 1), date(2025, 3, 31), today=date(2025, 11, 1))

    result = kpi.dso(march)
    assert (result["ar"], result["sales_90d"]) == (Decimal("1100.00"), Decimal("1000.00"))
    assert result["dso"] == 99.0  # 1100 / 1000 × 90

    aging = kpi.ar_aging(march)["by_currency"][0]
    amounts = {b["bucket"]: b["amount"] for b in aging["buckets"]}
    assert amounts == {"current": Decimal("600.00"), "1-30": 0, "31-60": 0, "61-90": 0, "90+": Decimal("500.00")}


def test_leakage_unbilled_by_age_write_downs_and_late_time(project, contract):
    as_of = KpiFilters(date(2025, 3, 1), date(2025, 3, 31), today=date(2025, 11, 1))
    for day in (date(2025, 1, 15), date(2025, 2, 10), date(2024, 12, 10), date(2025, 3, 10)):
        TimeEntryFactory(project=project, date=day, hours=Decimal("8.00"), status="approved")
    TimeEntryFactory(project=project, date=date(2025, 2, 11), hours=Decimal("1.00"), status="approved",
                     billable=False)
    draft_line = InvoiceLineFactory(invoice=InvoiceFactory(contract=contract))
    TimeEntryFactory(project=project, date=date(2025, 2, 12), hours=Decimal("2.00"), status="invoiced",
                     invoice_line=draft_line)
    done = InvoiceFactory(contract=contract, issue_date=date(2025, 3, 5))
    done_line = InvoiceLineFactory(invoice=done)
    InvoiceLineFactory(invoice=done, kind=InvoiceLine.Kind.WRITE_DOWN, quantity=1, unit_price=Decimal("-250"),
                       amount=Decimal("-250.00"))
    TimeEntryFactory(project=project, date=date(2025, 2, 13), hours=Decimal("4.00"), status="invoiced",
                     invoice_line=done_line)
    done.__class__.objects.filter(pk=done.pk).update(number="T-WD-1", status="posted")
    # Late time: March entries submitted before and after the cut-off (2 days after month end, 00:00 UTC).
    TimeEntryFactory(project=project, date=date(2025, 3, 11), hours=Decimal("3.00"), status="submitted",
                     submitted_at=at(date(2025, 4, 2), 23))
    TimeEntryFactory(project=project, date=date(2025, 3, 12), hours=Decimal("5.00"), status="submitted",
                     submitted_at=at(date(2025, 4, 3), 1))

    with override_settings(INSIGHTS_LEAKAGE_DAYS=15, BILLING_TIMESHEET_CUTOFF_DAYS=2):
        result = kpi.leakage(as_of)

    buckets = {b["bucket"]: (b["hours"], b["count"]) for b in result["unbilled_time"]["buckets"]}
    assert buckets == {"0-30": (0, 0), "31-60": (Decimal("18.00"), 3), "61-90": (Decimal("8.00"), 1),
                       "90+": (0, 0)}
    assert result["write_downs"] == [{"currency": "EUR", "count": 1, "amount": Decimal("-250.00")}]
    late = result["late_time"]
    assert (late["entries_late"], late["hours_late"]) == (1, Decimal("5.00"))


def test_cash_forecast_and_its_error(contract):
    late_payer = contract
    paid_1 = issued(contract=late_payer, issue_date=date(2024, 12, 10), due_date=date(2025, 1, 10), total="200.00")
    pay(paid_1, "200.00", date(2025, 1, 20))
    paid_2 = issued(contract=late_payer, issue_date=date(2025, 1, 2), due_date=date(2025, 2, 1), total="1000.00")
    pay(paid_2, "1000.00", date(2025, 2, 11))  # 10 days late, like the first
    issued(contract=late_payer, issue_date=date(2025, 3, 5), due_date=date(2025, 4, 5), total="800.00")
    issued(contract=late_payer, issue_date=date(2025, 2, 8), due_date=date(2025, 3, 10), total="500.00")
    newcomer = ContractFactory(entity=contract.entity)
    issued(contract=newcomer, issue_date=date(2025, 3, 2), due_date=date(2025, 4, 1), total="300.00")
    as_of = KpiFilters(date(2025, 3, 1), date(2025, 3, 31), today=date(2025, 11, 1))  # a Monday

    result = kpi.cash_forecast(as_of)

    weeks = [w["total"] for w in result["weeks"]]
    assert weeks[0] == Decimal("300.00")  # no history: on its due date, 1 April
    assert weeks[2] == Decimal("800.00")  # due 5 April + 10 days = 15 April, the week of 14 April
    assert sum(weeks) == Decimal("1100.00")
    assert result["at_risk"] == Decimal("500.00")  # due 10 March + 10 days: past its expected date
    errors = {e["week"]: e for e in result["error_weeks"]}
    assert errors[date(2025, 2, 10)]["forecast"] == errors[date(2025, 2, 10)]["actual"] == Decimal("1000.00")
    assert errors[date(2025, 3, 17)]["error"] == Decimal("500.00")  # expected on 20 March, not paid
    assert result["mape_pct"] == 0.0


def test_filters_entity_client_business_unit(project, contract):
    issued(contract=contract, project=project, issue_date=date(2025, 4, 2), period_end=date(2025, 3, 31))
    other = ProjectFactory(business_unit="Technology")
    issued(contract=other.contract, project=other, issue_date=date(2025, 4, 9), period_end=date(2025, 3, 31))
    lines_only = ContractFactory(entity=contract.entity, client=contract.client)
    issued(contract=lines_only, issue_date=date(2025, 4, 5), period_end=date(2025, 3, 31),
           lines=[{"project": ProjectFactory(contract=lines_only, business_unit="Advisory")}])

    def n(**filters):
        return kpi.days_to_invoice(KpiFilters(APRIL.period_start, APRIL.period_end, **filters))["n"]

    assert n() == 3
    assert n(entity="DE01") == 2
    assert n(client="ACME") == 2
    assert n(business_unit="Advisory") == 2  # its project, or a line's project
    assert n(business_unit="Technology") == 1
    assert n(entity="DE01", business_unit="Technology") == 0


def test_kpis_has_one_key_per_metric_and_bounded_queries(contract, django_assert_max_num_queries):
    for d in range(1, 6):
        invoice = issued(contract=contract, issue_date=date(2025, 4, d))
        pay(invoice, "100.00", date(2025, 4, 20))
    with django_assert_max_num_queries(40):
        result = kpi.kpis(date(2025, 4, 1), date(2025, 4, 30), today=date(2025, 11, 1))
    assert set(result) == {"filters", *kpi.METRICS}
    assert all(kpi.DEFINITIONS[k] for k in kpi.METRICS)
