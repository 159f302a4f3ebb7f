"""Invoice anomaly score: robust statistics against the client's own history, explained."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from approvals.models import ApprovalRequest
from billing.models import Invoice, InvoiceException
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_revalidate
from insights.features import InvoiceStats
from insights.models import InvoiceScore
from insights.services.anomaly import assess, robust_z
from insights.services.scoring import score_invoices
from tests.factories import (
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)
from tests.insights.assist.factories import issued_invoice, monthly_history

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 4)


def _stats(pk, net, hours, lines=1, day=datetime.date(2025, 1, 1)):
    return InvoiceStats(pk, 1, "EUR", day, Decimal(net), Decimal(hours), Decimal(net), lines)


# --- the statistics (no database) ---------------------------------------------------------------------


def test_robust_z_is_the_modified_z_score():
    z, median, mad = robust_z(20.0, [10.0, 11.0, 9.0, 10.0, 12.0, 8.0])
    assert median == 10.0
    assert mad == 1.0  # |deviations| 0,1,1,0,2,2 → median 1
    assert z == pytest.approx(0.6745 * 10)


def test_a_flat_history_floors_the_mad_at_ten_percent_of_the_median():
    z, _median, mad = robust_z(10_100.0, [10_000.0] * 6)
    assert mad == pytest.approx(1000.0)
    assert z == pytest.approx(0.6745 * 100 / 1000)  # 1 % more is no anomaly
    assert robust_z(14_000.0, [10_000.0] * 6)[0] < 3.5  # +40 %: still a normal month
    assert robust_z(16_000.0, [10_000.0] * 6)[0] > 3.5  # +60 %: worth a second look


def test_too_little_history_gives_no_score_but_says_why():
    history = [_stats(i, "8000", "80") for i in range(3)]
    result = assess(_stats(99, "80000", "800"), history)
    assert result.score is None
    assert not result.flagged
    assert "Not enough history" in result.note and "3 earlier" in result.note and "needs 4" in result.note


def test_score_is_the_largest_deviation_and_every_feature_is_explained():
    history = [_stats(i, str(8000 + 100 * i), str(80 + i)) for i in range(6)]
    result = assess(_stats(99, "48200", "482"), history)
    assert result.flagged
    features = {r["feature"] for r in result.reasons}
    assert features == {"net", "hours", "avg_rate", "lines"}
    assert result.score == pytest.approx(max(abs(r["z"]) for r in result.reasons), abs=1e-3)
    net = next(r for r in result.reasons if r["feature"] == "net")
    assert net["text"].startswith("net amount 48,200.00 EUR is ")
    assert "MADs above this client's median 8,250.00 EUR" in net["text"]
    assert "Unusual for this client: " in result.message() and "net amount" in result.message()


def test_a_usual_invoice_scores_low_and_is_not_flagged():
    history = [_stats(i, str(8000 + 100 * i), str(80 + i)) for i in range(6)]
    result = assess(_stats(99, "8300", "83"), history)
    assert 0 <= result.score < 3.5
    assert not result.flagged
    assert result.message() == ""


def test_a_much_smaller_invoice_is_an_anomaly_too():
    history = [_stats(i, str(8000 + 100 * i), str(80 + i)) for i in range(6)]
    result = assess(_stats(99, "800", "8"), history)
    assert result.flagged
    assert "below" in result.reasons[0]["text"]


# --- through the billing run ---------------------------------------------------------------------------


@pytest.fixture
def setup(db):
    role = RoleFactory(code="CONSULTANT")
    contract = ContractFactory()
    RateCardLineFactory(rate_card=contract.rate_card, role=role, rate=Decimal("100.00"))
    project = ProjectFactory(contract=contract)
    person = PersonFactory(role=role)
    return contract, project, person


def _approved_hours(project, person, total_hours: int):
    days = [datetime.date(2025, 3, d) for d in range(3, 29) if datetime.date(2025, 3, d).weekday() < 5]
    left = total_hours
    for day in days:
        if left <= 0:
            break
        h = min(8, left)
        TimeEntryFactory(project=project, person=person, date=day, hours=Decimal(h), status="approved")
        left -= h


def test_an_anomalous_draft_gets_the_warning_and_the_extra_controller_step(setup):
    contract, project, person = setup
    monthly_history(contract, months=6, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    # ~20 h a month is usual; this month 160 h (16,000 EUR against ~2,000)
    other = PersonFactory(role=person.role)
    _approved_hours(project, person, 80)
    _approved_hours(project, other, 80)
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)

    invoice = Invoice.objects.get(billing_run=run)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    warning = invoice.exceptions.get(code="ANOMALY")
    assert warning.severity == InvoiceException.Severity.WARNING and warning.state == InvoiceException.State.OPEN
    assert "net amount 16,000.00 EUR is" in warning.message and "above this client's median" in warning.message
    request = ApprovalRequest.objects.get(object_id=invoice.pk, subject_type="invoice")
    assert request.policy.requires_warning == "ANOMALY"
    assert [s.role for s in request.policy.steps.order_by("order")] == [
        "finance_analyst", "finance_controller", "finance_controller"
    ]
    assert run.summary["exceptions_by_code"].get("ANOMALY") == 1
    score = InvoiceScore.objects.get(invoice=invoice)
    assert score.anomaly_score > Decimal("3.5")
    assert score.anomaly_reasons[0]["feature"] in {"net", "hours"}


def test_a_usual_draft_routes_normally_and_is_scored(setup):
    contract, project, person = setup
    monthly_history(contract, months=6, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    _approved_hours(project, person, 20)
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(billing_run=run)
    assert not invoice.exceptions.filter(code="ANOMALY").exists()
    request = ApprovalRequest.objects.get(object_id=invoice.pk, subject_type="invoice")
    assert request.policy.requires_warning == ""
    score = InvoiceScore.objects.get(invoice=invoice)
    assert Decimal("0") <= score.anomaly_score < Decimal("3.5")


def test_a_new_client_is_not_scored_and_says_so(setup):
    contract, project, person = setup
    issued_invoice(contract, datetime.date(2025, 2, 4), hours="20.00")
    _approved_hours(project, person, 160)
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(billing_run=run)
    assert not invoice.exceptions.filter(code="ANOMALY").exists()
    score = InvoiceScore.objects.get(invoice=invoice)
    assert score.anomaly_score is None
    assert "Not enough history: 1 earlier issued invoice" in score.note


def test_cancelled_drafts_and_other_clients_are_not_history(setup):
    contract, project, person = setup
    monthly_history(contract, months=3, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    stranger = ContractFactory()
    monthly_history(stranger, months=6, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    # an unnumbered (cancelled) invoice of the same client does not count either
    from tests.factories import InvoiceFactory

    InvoiceFactory(contract=contract, issue_date=datetime.date(2025, 2, 10), status=Invoice.Status.CANCELLED,
                   subtotal=Decimal("2000.00"), total=Decimal("2000.00"))
    _approved_hours(project, person, 160)
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    score = InvoiceScore.objects.get(invoice__billing_run=run)
    assert score.anomaly_score is None and "3 earlier" in score.note


@override_settings(INSIGHTS_ANOMALY_THRESHOLD=1000)
def test_the_threshold_is_a_setting(setup):
    contract, project, person = setup
    monthly_history(contract, months=6, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    _approved_hours(project, person, 160)
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(billing_run=run)
    assert not invoice.exceptions.filter(code="ANOMALY").exists()


def test_revalidation_rescored_and_the_warning_comes_back_open(setup):
    contract, project, person = setup
    monthly_history(contract, months=6, last_issue=datetime.date(2025, 3, 4), hours="20.00")
    _approved_hours(project, person, 160)
    contract.client.vat_id = "DE136695977"  # invalid: the draft is blocked, so it can be revalidated
    contract.client.save()
    run = bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(billing_run=run)
    assert invoice.status == Invoice.Status.EXCEPTION
    contract.client.vat_id = "DE274158609"
    contract.client.save()
    invoice = invoice_revalidate(invoice=invoice, user=UserFactory(groups=["finance_analyst"]))
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    assert invoice.exceptions.filter(code="ANOMALY", state="open").count() == 1
    assert invoice.exceptions.filter(code="ANOMALY", state="resolved").count() == 1
    request = ApprovalRequest.objects.get(object_id=invoice.pk, subject_type="invoice", status="pending")
    assert request.policy.requires_warning == "ANOMALY"


def test_scoring_a_batch_takes_a_fixed_number_of_queries(db, django_assert_max_num_queries):
    drafts = []
    for _i in range(3):
        c = ContractFactory()
        monthly_history(c, months=5, last_issue=datetime.date(2025, 3, 4))
        drafts.append(issued_invoice(c, datetime.date(2025, 4, 4), status=Invoice.Status.PENDING_APPROVAL))
    few = list(Invoice.objects.filter(pk__in=[drafts[0].pk]))
    many = list(Invoice.objects.filter(pk__in=[d.pk for d in drafts]))
    with django_assert_max_num_queries(10) as one:
        score_invoices(few)
    with django_assert_max_num_queries(10) as three:
        score_invoices(many)
    assert len(three.captured_queries) == len(one.captured_queries)
