"""Dashboards, drill-down lists and CSV: who sees them, what they show, bounded queries."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from django.urls import reverse

from tests.factories import ClientFactory, ContractFactory, InvoiceExceptionFactory, LegalEntityFactory, UserFactory
from tests.insights.kpis.factories import dispute, issued, pay

pytestmark = pytest.mark.django_db

PERIOD = {"period_start": "2025-01-01", "period_end": "2025-06-30"}
PAGES = ("insights:dashboard", "insights:operations", "insights:workflow_monitor")


def _history(n: int) -> None:
    contract = ContractFactory(entity=LegalEntityFactory(code="DE01"), client=ClientFactory(code="ACME"))
    for k in range(n):
        invoice = issued(contract=contract, issue_date=date(2025, 1 + k % 6, 3), period_end=date(2025, 1, 31),
                         total="1000.00")
        pay(invoice, "400.00", date(2025, 3, 1))
        InvoiceExceptionFactory(invoice=invoice, code="MISSING_RATE", state="resolved")
        if k % 3 == 0:
            dispute(invoice, category=("rate", "hours")[k % 2], opened=date(2025, 3, 2))


def _login(client, *roles):
    user = UserFactory(groups=list(roles))
    client.force_login(user)
    return user


@pytest.mark.parametrize("role", ["finance_analyst", "finance_controller", "auditor"])
def test_finance_and_auditors_see_every_dashboard(client, role):
    _history(3)
    _login(client, role)
    for name in PAGES:
        response = client.get(reverse(name), PERIOD)
        assert response.status_code == 200, name


@pytest.mark.parametrize("role", ["consultant", "project_manager", "collections", "billing_admin"])
def test_other_roles_get_403(client, role):
    _login(client, role)
    for name in (*PAGES, "insights:drilldown"):
        assert client.get(reverse(name)).status_code == 403


def test_leadership_dashboard_shows_definitions_charts_and_drilldown_links(client):
    _history(4)
    _login(client, "finance_controller")
    html = client.get(reverse("insights:dashboard"), PERIOD).content.decode()
    assert "never hit a blocking exception" in html  # the first-pass definition, on the page
    assert "AR balance ÷ credit sales of the last 90 days × 90" in html
    assert html.count("<svg") >= 6
    assert reverse("insights:drilldown") + "?" in html
    assert "Export CSV" in html


def test_dashboard_queries_do_not_grow_with_rows(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _login(client, "finance_analyst")

    def counts() -> dict[str, int]:
        out = {}
        for name in PAGES:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(reverse(name), PERIOD).status_code == 200
            out[name] = len(captured.captured_queries)
        return out

    _history(2)
    small = counts()
    _history(12)
    assert counts() == small
    assert max(small.values()) <= 40


def test_table_export_is_the_table_on_screen(client):
    _history(3)
    _login(client, "finance_analyst")
    # Exception rates count invoices by the day they were drafted (today, in this test).
    drafted = {"period_start": "2025-01-01", "period_end": date.today().isoformat()}
    response = client.get(reverse("insights:operations"), {**drafted, "export": "exception_codes"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["Code", "Severity", "Invoices", "Rate %", "Raised", "Open"]
    assert rows[1][:3] == ["MISSING_RATE", "blocking", "3"]
    assert client.get(reverse("insights:operations"), {**PERIOD, "export": "nope"}).status_code == 404


def test_drilldown_lists_the_records_behind_a_number_and_exports_them(client, django_assert_max_num_queries):
    _history(6)
    _login(client, "auditor")
    url = reverse("insights:drilldown")
    with django_assert_max_num_queries(12):
        response = client.get(url, {**PERIOD, "metric": "disputes", "category": "rate"})
    assert response.status_code == 200
    assert response.content.decode().count("Rate") >= 1
    data = client.get(url, {**PERIOD, "metric": "disputes", "format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(data.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 1 + 2  # header + the two disputes opened (k = 0, 3)
    for metric in ("days_to_invoice", "first_pass_accuracy", "ar_aging", "cash_forecast", "approval_latency",
                   "credit_notes", "exception_rate", "leakage", "dso", "billing_cycle_time"):
        with django_assert_max_num_queries(12):
            assert client.get(url, {**PERIOD, "metric": metric}).status_code == 200, metric
    assert client.get(url, {"metric": "nonsense"}).status_code == 404
    assert client.get(url).status_code == 200  # the list of metrics


def test_filters_narrow_the_dashboard(client):
    _history(3)
    _login(client, "finance_analyst")
    url = reverse("insights:drilldown")
    rows = client.get(url, {**PERIOD, "metric": "days_to_invoice", "entity": "DE01", "format": "csv"})
    assert len(list(csv.reader(io.StringIO(b"".join(rows.streaming_content).decode("utf-8-sig"))))) == 4
    rows = client.get(url, {**PERIOD, "metric": "days_to_invoice", "entity": "XX", "format": "csv"})
    assert len(list(csv.reader(io.StringIO(b"".join(rows.streaming_content).decode("utf-8-sig"))))) == 1


def test_leadership_shows_the_dispute_risk_model_quality(client):
    from insights.models import RiskModel

    RiskModel.objects.create(algorithm="logistic_regression", samples=600, positives=45, roc_auc="0.8123",
                             baseline_auc="0.5000", is_active=True)
    _login(client, "auditor")
    html = client.get(reverse("insights:dashboard"), PERIOD).content.decode()
    assert "Dispute-risk model, ROC AUC (held out)" in html
    assert "0.812" in html and "baseline 0.500" in html
