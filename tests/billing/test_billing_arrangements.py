"""Billing frequency, service periods, proforma previews and the settled readings (docs/rules/billing.md §12, §13).

Real stack: factories, `run_billing`, the finance pages over HTTP, the documents as rendered.
"""

from __future__ import annotations

import datetime
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pypdf import PdfReader

from billing.documents.content import invoice_content
from billing.documents.ubl import render_ubl
from billing.documents.validation import validate_ubl
from billing.models import Client, Contract, Expense, Invoice, InvoiceDocument, InvoiceLine, TimeEntry
from billing.services.billing_frequency import billing_period, is_quarter_end, quarter_of
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_approve
from kernel.money import minor_unit, round_money
from tests.factories import (
    ClientFactory,
    ContractFactory,
    ExpenseFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
D = datetime.date


def month(year: int, number: int) -> tuple[datetime.date, datetime.date]:
    start = D(year, number, 1)
    end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - datetime.timedelta(days=1)
    return start, end


def run_month(year: int, number: int, **kwargs):
    start, end = month(year, number)
    return bill_period(period_start=start, period_end=end, run_date=end + datetime.timedelta(days=1), **kwargs)


@pytest.fixture
def firm(db):
    role = RoleFactory(code="SENIOR")
    card = RateCardFactory()
    RateCardLineFactory(rate_card=card, role=role, rate=Decimal("150.00"), effective_from=D(2024, 1, 1))
    entity = LegalEntityFactory()
    person = PersonFactory(role=role)

    def contract(**kwargs) -> tuple[Contract, object]:
        c = ContractFactory(rate_card=card, entity=entity, **kwargs)
        return c, ProjectFactory(contract=c)

    return contract, person


# --- the calendar ------------------------------------------------------------------------------------


def test_quarters():
    assert quarter_of(D(2026, 8, 14)) == (D(2026, 7, 1), D(2026, 9, 30))
    assert quarter_of(D(2026, 2, 28)) == (D(2026, 1, 1), D(2026, 3, 31))
    assert [is_quarter_end(d) for d in (D(2026, 3, 31), D(2026, 6, 30), D(2026, 12, 31), D(2026, 11, 30))] == [
        True,
        True,
        True,
        False,
    ]
    assert billing_period("quarterly", D(2026, 9, 1), D(2026, 9, 30)) == (D(2026, 7, 1), D(2026, 9, 30))
    assert billing_period("monthly", D(2026, 9, 1), D(2026, 9, 30)) == (D(2026, 9, 1), D(2026, 9, 30))


# --- billing frequency -------------------------------------------------------------------------------


def test_a_quarterly_contract_waits_in_other_months_and_is_listed_as_not_due(firm):
    contract, person = firm
    quarterly, q_project = contract(billing_frequency="quarterly")
    monthly, m_project = contract()
    for project in (q_project, m_project):
        TimeEntryFactory(project=project, person=person, date=D(2026, 7, 10), hours=Decimal("5"), status="approved")

    july = run_month(2026, 7)
    assert list(Invoice.objects.values_list("contract__code", flat=True)) == [monthly.code]
    assert july.summary["not_due"] == [
        {
            "contract": quarterly.code,
            "frequency": "quarterly",
            "next_due": "2026-09-30",
            "reason": "Bills quarterly: next due in the run ending 2026-09-30 (the quarter end); its items wait. "
            "Use a run for named contracts to bill it now.",
        }
    ]
    assert TimeEntry.objects.get(project=q_project).invoice_line is None  # it waits

    september = run_month(2026, 9)
    invoice = Invoice.objects.get(contract=quarterly)
    assert invoice.billing_run == september and september.summary["not_due"] == []
    assert (invoice.period_start, invoice.period_end) == (D(2026, 7, 1), D(2026, 9, 30))
    assert (invoice.service_start, invoice.service_end) == (D(2026, 7, 10), D(2026, 7, 10))


def test_a_bill_now_run_ignores_the_frequency_and_bills_the_quarter(firm):
    contract, person = firm
    quarterly, project = contract(billing_frequency="quarterly")
    TimeEntryFactory(project=project, person=person, date=D(2026, 8, 3), hours=Decimal("2"), status="approved")
    run = run_month(2026, 8, contracts=[quarterly.code])
    invoice = Invoice.objects.get(contract=quarterly)
    assert run.summary["not_due"] == []
    assert (invoice.period_start, invoice.period_end) == (D(2026, 7, 1), D(2026, 9, 30))


def test_on_milestone_is_refused_outside_fixed_fee(firm):
    contract, _person = firm
    with pytest.raises(IntegrityError), transaction.atomic():
        contract(billing_frequency="on_milestone")
    tm = ContractFactory.build(billing_frequency="on_milestone", client=ClientFactory(), entity=LegalEntityFactory())
    with pytest.raises(ValidationError, match="fixed-fee contracts only"):
        tm.validate_constraints()


# --- the four settled readings ------------------------------------------------------------------------


def test_minor_units_come_from_iso_4217_not_cash_rounding():
    assert [minor_unit(c) for c in ("HUF", "IDR", "COP", "MGA", "JPY", "EUR")] == [2, 2, 2, 2, 0, 2]
    assert round_money(Decimal("96805.234"), "HUF") == Decimal("96805.23")


@pytest.mark.django_db
@pytest.mark.parametrize("currency", ["KWD", "BHD", "JOD", "OMR", "TND", "IQD"])
def test_three_decimal_currencies_are_refused_at_entry(currency):
    client = ClientFactory.build(currency=currency)
    with pytest.raises(ValidationError) as excinfo:
        client.full_clean(exclude=["code", "legal_name"])
    assert f"{currency} has 3 decimal places" in str(excinfo.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        ClientFactory(currency=currency)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExpenseFactory(currency=currency)
    assert not Client.objects.filter(currency=currency).exists()
    assert not Expense.objects.filter(currency=currency).exists()


def test_an_unpriced_entry_of_an_on_hold_project_raises_both_codes(firm):
    contract, _person = firm
    tm, project = contract()
    type(project).objects.filter(pk=project.pk).update(status="on_hold")  # its FSM field is protected
    partner = PersonFactory(role=RoleFactory(code="PARTNER"))  # no rate for PARTNER anywhere
    TimeEntryFactory(project=project, person=partner, date=D(2025, 3, 5), status="approved")
    bill_period(period_start=D(2025, 3, 1), period_end=D(2025, 3, 31), run_date=D(2025, 4, 1))
    invoice = Invoice.objects.get(contract=tm)
    assert set(invoice.exceptions.values_list("code", flat=True)) == {"MISSING_RATE", "PROJECT_NOT_BILLABLE"}


def test_fixed_fee_contracts_raise_no_unapproved_time_warning(firm):
    from tests.factories import MilestoneFactory

    contract, person = firm
    fixed, project = contract(fixed_fee=True)
    MilestoneFactory(project=project, status="approved", amount=Decimal("1000.00"))
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 5), status="submitted")
    bill_period(period_start=D(2025, 3, 1), period_end=D(2025, 3, 31), run_date=D(2025, 4, 1))
    invoice = Invoice.objects.get(contract=fixed)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    assert not invoice.exceptions.exists()


# --- invoice page, run page, proforma, UBL -------------------------------------------------------------


@pytest.fixture
def analyst(db):
    return UserFactory(groups=["finance_analyst"])


def test_the_run_page_lists_the_contracts_not_due(firm, analyst, client):
    contract, person = firm
    quarterly, project = contract(billing_frequency="quarterly")
    TimeEntryFactory(project=project, person=person, date=D(2026, 10, 5), status="approved")
    run = run_month(2026, 10)
    client.force_login(analyst)
    page = client.get(reverse("billing:run_detail", args=[run.pk])).content.decode()
    assert "Not due in this run" in page
    assert quarterly.code in page and "next due in the run ending 2026-12-31" in page


def test_proforma_of_a_pending_invoice_is_watermarked_unnumbered_and_not_stored(firm, analyst, client):
    contract, person = firm
    tm, project = contract()
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 4), status="approved")
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 20), status="approved")
    bill_period(period_start=D(2025, 3, 1), period_end=D(2025, 3, 31), run_date=D(2025, 4, 1))
    invoice = Invoice.objects.get(contract=tm)
    client.force_login(analyst)
    detail = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert reverse("billing:invoice_proforma", args=[invoice.pk]) in detail
    assert "4 Mar 2025 – 20 Mar 2025" in detail  # the service period

    response = client.get(reverse("billing:invoice_proforma", args=[invoice.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    text = " ".join(text.split())
    assert "PROFORMA — not a tax invoice" in text
    assert "Service period 4 Mar 2025 – 20 Mar 2025" in text
    invoice.refresh_from_db()
    assert invoice.number is None and invoice.status == Invoice.Status.PENDING_APPROVAL
    assert not InvoiceDocument.objects.exists()

    numbered = invoice_approve(invoice=invoice, user=analyst)
    if numbered.number:  # an issued invoice has its own PDF: no proforma
        assert client.get(reverse("billing:invoice_proforma", args=[invoice.pk])).status_code == 303


def test_ubl_carries_the_service_period_and_line_periods_where_they_differ(firm, analyst):
    contract, person = firm
    tm, project = contract()
    TimeEntryFactory(project=project, person=person, date=D(2025, 2, 26), status="approved")  # caught up
    TimeEntryFactory(project=project, person=person, date=D(2025, 3, 12), status="approved")
    ExpenseFactory(project=project, date=D(2025, 3, 7), status="approved")
    bill_period(period_start=D(2025, 3, 1), period_end=D(2025, 3, 31), run_date=D(2025, 4, 1))
    invoice = invoice_approve(invoice=Invoice.objects.get(contract=tm), user=analyst)
    for _ in range(2):
        if invoice.status == Invoice.Status.PENDING_APPROVAL:
            invoice = invoice_approve(invoice=invoice, user=UserFactory(groups=["finance_controller"]))
    xml = render_ubl(invoice_content(invoice))
    report = validate_ubl(xml)  # UBL 2.1 XSD, EN 16931 and Peppol rules: line periods in their place
    assert report.is_valid, "\n".join(report.summary())
    root = etree.fromstring(xml)
    assert root.findtext("cac:InvoicePeriod/cbc:StartDate", namespaces=NS) == "2025-02-26"
    assert root.findtext("cac:InvoicePeriod/cbc:EndDate", namespaces=NS) == "2025-03-12"
    periods = {
        line.findtext("cac:Item/cbc:Name", namespaces=NS): (
            line.findtext("cac:InvoicePeriod/cbc:StartDate", namespaces=NS),
            line.findtext("cac:InvoicePeriod/cbc:EndDate", namespaces=NS),
        )
        for line in root.findall("cac:InvoiceLine", namespaces=NS)
    }
    assert ("2025-03-07", "2025-03-07") in periods.values()  # the expense differs from the header
    assert (None, None) in periods.values()  # the time line spans the invoice's period: no line period


# --- invariants (hypothesis) ---------------------------------------------------------------------------

HYPOTHESIS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(months=st.lists(st.integers(1, 12), min_size=1, max_size=7), days=st.lists(st.integers(0, 364), max_size=8))
def test_a_quarterly_contract_is_billed_once_per_quarter_whatever_the_monthly_runs(firm, months, days):
    contract, person = firm
    with transaction.atomic():
        retainer, _r_project = contract(
            billing_frequency="quarterly", retainer=True, retainer_amount=Decimal("900.00"), included_hours=Decimal("4")
        )
        tm, t_project = contract(billing_frequency="quarterly")
        for offset in days:
            TimeEntryFactory(project=t_project, person=person, date=D(2026, 1, 1) + datetime.timedelta(days=offset),
                             hours=Decimal("1.5"), status="approved")
        for number in months:
            run_month(2026, number)

        ran_quarter_ends = {quarter_of(D(2026, n, 1))[0] for n in months if n % 3 == 0}
        fees = list(
            InvoiceLine.objects.filter(invoice__contract=retainer, kind="retainer").values_list(
                "invoice__retainer_period", flat=True
            )
        )
        assert sorted(fees) == sorted(ran_quarter_ends)  # once per quarter whose end was run, never twice
        periods = list(Invoice.objects.filter(contract=tm).values_list("period_start", "period_end"))
        assert len(periods) == len(set(periods))  # at most one invoice per quarter
        assert all(start.day == 1 and start.month % 3 == 1 and is_quarter_end(end) for start, end in periods)
        # Every item is billed at most once, and only by the run of a quarter end on or after its date.
        for entry in TimeEntry.objects.filter(project=t_project).select_related("invoice_line__invoice"):
            if entry.invoice_line is not None:
                assert entry.date <= entry.invoice_line.invoice.period_end
        transaction.set_rollback(True)


item_strategy = st.lists(
    st.tuples(st.sampled_from(["time", "expense"]), st.integers(-60, 30)), min_size=1, max_size=10
)


@HYPOTHESIS
@given(items=item_strategy)
def test_the_service_period_covers_exactly_the_items_billed(firm, items):
    contract, person = firm
    with transaction.atomic():
        tm, project = contract()
        for kind, offset in items:
            day = D(2026, 10, 1) + datetime.timedelta(days=offset)
            factory = TimeEntryFactory if kind == "time" else ExpenseFactory
            extra = {"hours": Decimal("1.00")} if kind == "time" else {}
            factory(project=project, person=person, date=day, status="approved", **extra)
        run_month(2026, 10)
        invoice = Invoice.objects.get(contract=tm)
        dates = []
        for line in invoice.lines.all():
            line_dates = [e.date for e in line.time_entries.all()] + [e.date for e in line.expenses.all()]
            assert (line.service_start, line.service_end) == (min(line_dates), max(line_dates))
            dates += line_dates
        assert (invoice.service_start, invoice.service_end) == (min(dates), max(dates))
        transaction.set_rollback(True)
