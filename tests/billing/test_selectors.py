"""Read models of the billing screens (billing.selectors)."""
from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing import selectors
from billing.models import Invoice, InvoiceLine
from billing.selectors import Money
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_reject
from tests.factories import (
    BillingRunFactory,
    ContractFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)


def test_parse_contract_codes_splits_on_commas_spaces_and_semicolons():
    assert selectors.parse_contract_codes(" C-1, C-2;C-3\nC-1 ") == ["C-1", "C-2", "C-3"]
    assert selectors.parse_contract_codes("") == []


def test_unknown_contract_codes():
    ContractFactory(code="C-KNOWN")
    assert selectors.unknown_contract_codes(["C-KNOWN", "C-NOPE"]) == ["C-NOPE"]


def test_exception_queue_groups_count_an_invoice_once_per_code_and_total_per_currency():
    eur = ContractFactory()
    usd = ContractFactory(currency="USD", rate_card__currency="USD")
    a = InvoiceFactory(contract=eur, status="exception", total=Decimal("1000.00"))
    b = InvoiceFactory(contract=eur, status="exception", total=Decimal("250.50"))
    c = InvoiceFactory(contract=usd, status="exception", total=Decimal("99.00"))
    InvoiceExceptionFactory(invoice=a, code="CAP_EXCEEDED", amount=Decimal("10.00"))
    InvoiceExceptionFactory(invoice=a, code="CAP_EXCEEDED")  # the same code twice: one row, one count
    InvoiceExceptionFactory(invoice=a, code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=b, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=c, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=c, code="LATE_TIME", severity="warning")
    InvoiceExceptionFactory(invoice=c, code="PO_REQUIRED_MISSING", state="resolved")  # closed: not shown
    not_in_queue = InvoiceFactory(contract=eur, status="pending_approval")
    InvoiceExceptionFactory(invoice=not_in_queue, code="CLIENT_ON_CREDIT_HOLD", severity="warning")

    queue = selectors.exception_queue()
    groups = {g.code: g for g in queue.groups}
    assert [g.code for g in queue.groups] == ["CAP_EXCEEDED", "MISSING_RATE", "LATE_TIME"]  # blocking first
    cap = groups["CAP_EXCEEDED"]
    assert cap.invoices == 3
    assert cap.totals == [Money("EUR", Decimal("1250.50")), Money("USD", Decimal("99.00"))]
    assert cap.severity == "blocking" and "write the invoice down" in cap.fix_hint
    assert [r.invoice for r in cap.rows] == [a, b, c]  # oldest first
    assert cap.rows[0].exception.amount == Decimal("10.00")
    assert cap.rows[0].other_codes == ["MISSING_RATE"]
    assert groups["LATE_TIME"].severity == "warning"
    assert queue.invoices == 3 and queue.shown == 3 and not queue.truncated
    assert queue.codes == ["CAP_EXCEEDED", "MISSING_RATE", "LATE_TIME"]


def test_exception_queue_filter_and_limit():
    contract = ContractFactory()
    invoices = [InvoiceFactory(contract=contract, status="exception", total=Decimal(i + 1)) for i in range(4)]
    for invoice in invoices[:3]:
        InvoiceExceptionFactory(invoice=invoice, code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=invoices[3], code="TAX_RULE_MISSING")

    queue = selectors.exception_queue(code="TAX_RULE_MISSING")
    assert [g.code for g in queue.groups] == ["TAX_RULE_MISSING"]
    assert [r.invoice for r in queue.groups[0].rows] == [invoices[3]]
    assert queue.invoices == 1
    assert queue.codes == ["MISSING_RATE", "TAX_RULE_MISSING"]

    queue = selectors.exception_queue(limit=2)
    assert queue.truncated and queue.shown == 2 and queue.invoices == 4
    assert sum(len(g.rows) for g in queue.groups) == 2
    assert queue.groups[0].invoices == 3  # the group figures count every invoice, not only those shown


def test_exception_queue_age_is_days_since_the_draft_was_made():
    invoice = InvoiceFactory(status="exception")
    InvoiceExceptionFactory(invoice=invoice)
    today = timezone.localdate()
    # Midday three calendar days ago: the age counts calendar days, so an hour offset from "now" would cross
    # midnight when the suite runs just after it.
    made = timezone.make_aware(datetime.datetime.combine(today - datetime.timedelta(days=3), datetime.time(12)))
    Invoice.objects.filter(pk=invoice.pk).update(created_at=made)
    assert selectors.exception_queue(today=today).groups[0].rows[0].age_days == 3


def test_invoice_queue_tabs_totals_and_run_filter():
    contract = ContractFactory()
    billing_run = BillingRunFactory()
    InvoiceFactory(contract=contract, status="pending_approval", total=Decimal("100.00"), billing_run=billing_run)
    InvoiceFactory(contract=contract, status="pending_approval", total=Decimal("50.00"))
    warned = InvoiceFactory(contract=contract, status="pending_approval", total=Decimal("5.00"),
                            issue_date=datetime.date(2025, 3, 31))
    InvoiceExceptionFactory(invoice=warned, code="LATE_TIME", severity="warning")
    InvoiceExceptionFactory(invoice=warned, code="ANOMALY", severity="warning", state="resolved")
    InvoiceFactory(contract=contract, status="exception")
    InvoiceFactory(contract=contract, status="posted", number="N-1")
    InvoiceFactory(contract=contract, status="cancelled")

    queue = selectors.invoice_queue()
    assert queue.tab == "pending_approval"
    counts = {key: n for key, _label, n in queue.tabs}
    assert counts == {"pending_approval": 3, "exception": 1, "draft": 0, "issued": 1, "closed": 1, "all": 6}
    assert queue.totals == [Money("EUR", Decimal("155.00"))]
    assert queue.invoices[0] == warned  # oldest issue date first
    assert queue.invoices[0].open_warnings == 1 and queue.invoices[0].open_blocking == 0

    assert selectors.invoice_queue(status="all").tab == "all"
    assert selectors.invoice_queue(status="paid").tab == "issued"
    assert selectors.invoice_queue(status="nonsense").tab == "pending_approval"
    by_run = selectors.invoice_queue(status="all", run_id=billing_run.pk)
    assert [i.billing_run_id for i in by_run.invoices] == [billing_run.pk]
    assert {key: n for key, _label, n in by_run.tabs}["all"] == 1


def test_invoice_line_groups_are_per_project_with_contract_lines_last():
    contract = ContractFactory()
    beta, alpha = ProjectFactory(contract=contract, code="P-BETA"), ProjectFactory(contract=contract, code="P-ALPHA")
    invoice = InvoiceFactory(contract=contract)
    InvoiceLineFactory(invoice=invoice, project=None, kind="discount", quantity=Decimal("1"),
                       unit_price=Decimal("-10"), amount=Decimal("-10.00"))
    InvoiceLineFactory(invoice=invoice, project=beta, quantity=Decimal("2.00"))
    InvoiceLineFactory(invoice=invoice, project=alpha, quantity=Decimal("1.50"))
    InvoiceLineFactory(invoice=invoice, project=alpha, kind="expense", quantity=Decimal("1"),
                       unit_price=Decimal("30"), amount=Decimal("30.00"))

    groups = selectors.invoice_line_groups(selectors.get_invoice(invoice.pk))
    assert [g.project.code if g.project else None for g in groups] == ["P-ALPHA", "P-BETA", None]
    assert groups[0].hours == Decimal("1.50") and groups[0].subtotal == Decimal("180.00")
    assert groups[2].subtotal == Decimal("-10.00") and groups[2].hours == 0


def test_get_invoice_prefetches_the_billed_entries():
    role = RoleFactory(code="CONSULTANT")
    contract = ContractFactory()
    RateCardLineFactory(rate_card=contract.rate_card, role=role)
    project = ProjectFactory(contract=contract)
    person = PersonFactory(role=role, name="Anna Berger")
    for day in (10, 11):
        TimeEntryFactory(project=project, person=person, date=datetime.date(2025, 3, day), status="approved")
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = selectors.get_invoice(Invoice.objects.get().pk)
    line = invoice.lines.all()[0]
    assert line.kind == InvoiceLine.Kind.TIME
    # As the drill-down shows them: person, date, hours, description (plain rows, no models).
    assert [(e.person, e.date) for e in line.billed_entries] == [
        ("Anna Berger", datetime.date(2025, 3, 10)), ("Anna Berger", datetime.date(2025, 3, 11))
    ]


def test_timeline_merges_transitions_and_history_newest_first_with_system_for_no_user():
    role = RoleFactory(code="CONSULTANT")
    contract = ContractFactory()
    RateCardLineFactory(rate_card=contract.rate_card, role=role)
    TimeEntryFactory(project=ProjectFactory(contract=contract), person=PersonFactory(role=role), status="approved")
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get()
    analyst = UserFactory(first_name="Ana", last_name="Lyst", groups=["finance_analyst"])
    invoice_reject(invoice=invoice, user=analyst, reason="Hours look wrong")

    timeline = selectors.invoice_timeline(invoice)
    assert [e.when for e in timeline] == sorted((e.when for e in timeline), reverse=True)
    kinds = {(e.kind, e.title, e.who, e.detail) for e in timeline}
    run_note = f"Billing run {invoice.billing_run_id}: validated"
    assert ("transition", "Draft → Pending approval", "system", run_note) in kinds
    assert ("transition", "Pending approval → Draft", "Ana Lyst", "Hours look wrong") in kinds
    assert ("change", "Changed (status draft)", "Ana Lyst", "Rejected: Hours look wrong") in kinds
    assert any(e.kind == "change" and e.title.startswith("Created") and e.who == "system" for e in timeline)
    # Only this invoice's rows: another object's log with the same id is not mixed in.
    StateLog.objects.create(
        content_type=ContentType.objects.get_for_model(InvoiceLine), object_id=invoice.pk,
        source_state="a", state="b", transition="x",
    )
    assert len(selectors.invoice_timeline(invoice)) == len(timeline)


def test_billing_run_summary_in_display_shape():
    billing_run = BillingRunFactory(
        status="done",
        summary={
            "invoices": 3,
            "by_status": {"exception": 1, "pending_approval": 2},
            "totals_by_currency": {"EUR": "1190.00", "USD": "50.00"},
            "invoices_by_entity_currency": {"DE01 EUR": 2, "US01 USD": 1},
            "exceptions_by_code": {"LATE_TIME": 1, "MISSING_RATE": 1},
            "items_billed": {"time_entries": 4, "expenses": 1, "milestones": 0},
            "skipped": ["C-1: an open draft invoice exists; revalidate or cancel it first."],
        },
    )
    InvoiceFactory(billing_run=billing_run, status="exception")
    summary = selectors.billing_run_summary(billing_run)
    assert summary.invoices == 3
    assert summary.by_entity_currency == [("DE01", "EUR", 2), ("US01", "USD", 1)]
    assert summary.totals == [Money("EUR", Decimal("1190.00")), Money("USD", Decimal("50.00"))]
    assert summary.exceptions == [("LATE_TIME", 1, "warning"), ("MISSING_RATE", 1, "blocking")]
    assert summary.by_status == [("exception", "Exception", 1), ("pending_approval", "Pending approval", 2)]
    assert summary.current_status == [("exception", "Exception", 1)]
    assert summary.skipped and summary.items_billed["time_entries"] == 4
    assert selectors.billing_run_summary(BillingRunFactory()).invoices == 0  # a queued run has no summary yet
