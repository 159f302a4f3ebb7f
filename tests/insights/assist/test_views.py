"""The score panel on the invoice page, the model page, and the queue ordered by expected cash impact."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest
from billing import selectors
from billing.models import Invoice
from insights.models import InvoiceScore, RiskModel
from insights.services.priority import annotate_cash_impact, urgency_today
from tests.factories import ContractFactory, InvoiceFactory, UserFactory
from tests.insights.assist.factories import issued_invoice, monthly_history

pytestmark = pytest.mark.django_db


def _render_panel(invoice, user):
    request = RequestFactory().get("/")
    request.user = user
    return Template("{% load score_panels %}{% score_panel invoice %}").render(
        Context({"invoice": invoice, "request": request})
    )


def test_the_panel_shows_risk_with_its_top_reasons_and_the_anomaly_reasons(django_assert_num_queries):
    invoice = InvoiceFactory(status="pending_approval")
    InvoiceScore.objects.create(
        invoice=invoice, anomaly_score=Decimal("6.100"), risk_score=Decimal("0.4200"),
        anomaly_reasons=[{"feature": "net", "z": 6.1, "text": "net amount 48,200.00 EUR is 9.0 MADs above this "
                          "client's median 12,400.00 EUR (robust z +6.1)"}],
        risk_reasons=[
            {"feature": "late_time", "label": "Time submitted after the cut-off", "value": 1, "contribution": 1.2},
            {"feature": "po_missing", "label": "Required PO missing", "value": 1, "contribution": 0.8},
            {"feature": "log_amount", "label": "Amount (log)", "value": 9.1, "contribution": -0.3},
        ],
    )
    user = UserFactory(groups=["finance_analyst"])
    with django_assert_num_queries(1):
        html = _render_panel(invoice, user)
    assert "42 %" in html
    assert "Time submitted after the cut-off" in html and "Required PO missing" in html
    assert "Amount (log)" not in html  # only what raised the risk
    assert "48,200.00 EUR is 9.0 MADs above" in html and "above 3.5" in html


def test_the_panel_says_not_enough_history_and_no_model():
    invoice = InvoiceFactory(status="pending_approval")
    InvoiceScore.objects.create(
        invoice=invoice, note="Not enough history: 1 earlier issued invoice of this client in EUR; the anomaly "
        "score needs 4. No dispute-risk model is active (none trained yet)."
    )
    html = _render_panel(invoice, UserFactory(groups=["auditor"]))
    assert "not enough history" in html and "no score" in html and "No dispute-risk model is active" in html


def test_the_invoice_page_shows_the_panel(client):
    contract = ContractFactory()
    monthly_history(contract, months=5, last_issue=datetime.date(2025, 3, 4))
    draft = issued_invoice(contract, datetime.date(2025, 4, 4), hours="800.00", status="pending_approval")
    from insights.services.scoring import score_invoices

    score_invoices([draft], flag=False)
    client.force_login(UserFactory(groups=["finance_controller"]))
    html = client.get(reverse("billing:invoice_detail", args=[draft.pk])).content.decode()
    assert "Anomaly score" in html and "MADs above this client&#x27;s median" in html


def test_the_model_page_reports_quality_against_the_baseline(client):
    client.force_login(UserFactory(groups=["collections"]))
    html = client.get(reverse("insights:model")).content.decode()
    assert "No dispute-risk model is active" in html
    RiskModel.objects.create(
        algorithm="logistic_regression", samples=400, positives=40, roc_auc=Decimal("0.8100"),
        baseline_auc=Decimal("0.6200"), is_active=True, features=["late_time"],
        parameters={"features": ["late_time"], "coef": [1.3], "mean": [0], "scale": [1], "intercept": -2},
    )
    html = client.get(reverse("insights:model")).content.decode()
    assert "0.8100" in html and "0.6200" in html and "raises risk" in html
    client.force_login(UserFactory(groups=["consultant"]))
    assert client.get(reverse("insights:model")).status_code == 403


# --- priority -----------------------------------------------------------------------------------------


def _pending(total, risk=None, issue_date=None):
    invoice = InvoiceFactory(
        status="pending_approval", total=Decimal(total), subtotal=Decimal(total),
        issue_date=issue_date or timezone.localdate(),
    )
    if risk is not None:
        InvoiceScore.objects.create(invoice=invoice, risk_score=Decimal(risk))
    return invoice


def test_urgency_grows_towards_month_end():
    first, last, start_of_month = urgency_today(datetime.date(2026, 11, 1))
    assert (first, last) == (datetime.date(2026, 11, 1), datetime.date(2026, 11, 30))
    assert start_of_month == pytest.approx(Decimal(1) + Decimal(1) / 30)
    assert urgency_today(datetime.date(2026, 11, 30))[2] == 2


def test_the_queue_orders_by_expected_cash_impact():
    today = timezone.localdate()
    risky_big = _pending("10000.00", risk="0.9000")  # 1,000 × u
    safe_small = _pending("5000.00", risk="0.0000")  # 5,000 × u
    unscored = _pending("4000.00")  # no model: risk 0 → 4,000 × u
    last_month = _pending("3000.00", risk="0.0000", issue_date=today.replace(day=1) - datetime.timedelta(days=3))
    queue = selectors.invoice_queue(status="pending_approval", sort="priority")
    order = [i.pk for i in queue.invoices]
    u = urgency_today(today)[2]
    expected = sorted(
        [(risky_big.pk, 1000 * u), (safe_small.pk, 5000 * u), (unscored.pk, 4000 * u), (last_month.pk, 6000)],
        key=lambda p: -p[1],
    )
    assert order == [pk for pk, _ in expected]
    impacts = {i.pk: i.cash_impact for i in queue.invoices}
    assert impacts[risky_big.pk] == pytest.approx(Decimal("1000") * u, rel=Decimal("1e-4"))
    assert impacts[last_month.pk] == Decimal("6000")


def test_the_amount_is_the_approval_requests_entity_currency_amount():
    invoice = _pending("1000.00")
    from approvals.services import approval_requests_open_bulk

    approval_requests_open_bulk(subjects=[invoice], user=None)
    request = ApprovalRequest.objects.get(object_id=invoice.pk, subject_type="invoice")
    ApprovalRequest.objects.filter(pk=request.pk).update(entity_amount=Decimal("1170.00"))
    row = annotate_cash_impact(Invoice.objects.filter(pk=invoice.pk)).get()
    assert row.entity_amount_est == Decimal("1170.00")


def test_the_priority_queue_page_takes_a_fixed_number_of_queries(client, django_assert_max_num_queries):
    client.force_login(UserFactory(groups=["finance_analyst"]))
    url = reverse("billing:invoice_list") + "?status=pending_approval&sort=priority"
    _pending("100.00", risk="0.1")
    client.get(url)
    with django_assert_max_num_queries(30) as few:
        response = client.get(url)
    assert "Expected cash impact" in response.content.decode()
    for i in range(8):
        _pending(f"{200 + i}.00", risk="0.2")
    with django_assert_max_num_queries(30) as many:
        client.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)
