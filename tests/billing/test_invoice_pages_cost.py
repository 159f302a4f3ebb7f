"""The invoice review queue and the invoice page: everything still shown, in queries that do not grow with rows.

The queue's rows and the drill-down's billed entries are rendered in one `format_html_join` each
(billing/templatetags/invoice_rows.py); these tests pin the cells they must still carry.
"""
from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing import selectors
from billing.models import InvoiceLine
from tests.factories import (
    ContractFactory,
    ExpenseFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def controller():
    return UserFactory(username="conny", first_name="Conny", last_name="Troll", groups=["finance_controller"])


def _queries(client, url: str, data: dict | None = None) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, data or {})
    assert response.status_code == 200
    return len(captured.captured_queries), response.content.decode()


def _pending(n: int, *, preparer=None, project=None) -> list:
    invoices = []
    for _ in range(n):
        invoice = InvoiceFactory(status="pending_approval", total=Decimal("100.00"), prepared_by=preparer)
        if project is not None:
            invoice.project = ProjectFactory(contract=invoice.contract)
            invoice.save(update_fields=["project"])
        InvoiceExceptionFactory(invoice=invoice, code="LATE_TIME", severity="warning")
        invoices.append(invoice)
    return invoices


def test_the_review_queue_costs_the_same_queries_for_3_and_30_rows(client, controller):
    preparer = UserFactory(first_name="Pia", last_name="Preparer", groups=["finance_analyst"])
    _pending(2, preparer=preparer, project=True)
    _pending(1)
    client.force_login(controller)
    url = reverse("billing:invoice_list")
    client.get(url)  # warm the session and content types
    few, html = _queries(client, url)
    assert html.count('<tr><th scope="row">') == 3
    _pending(17, preparer=preparer, project=True)
    _pending(10)
    many, html = _queries(client, url)
    assert html.count('<tr><th scope="row">') == 30
    assert many <= few
    many_by_priority, html = _queries(client, url, {"sort": "priority"})
    assert html.count('<tr><th scope="row">') == 30 and "Expected cash impact" in html
    assert many_by_priority <= few + 1


def test_a_queue_row_carries_every_cell(client, controller):
    preparer = UserFactory(first_name="Pia", last_name="Preparer", groups=["finance_analyst"])
    contract = ContractFactory(code="C-ROW")
    project = ProjectFactory(contract=contract, code="P-ROW")
    mine = InvoiceFactory(contract=contract, project=project, status="pending_approval", prepared_by=controller,
                          total=Decimal("1234.50"), issue_date=datetime.date(2025, 4, 1))
    credited = InvoiceFactory(contract=contract, status="posted", number="INV-ROW-1", total=Decimal("100.00"))
    theirs = InvoiceFactory(contract=contract, status="pending_approval", prepared_by=preparer,
                            kind="credit_note", credit_of=credited, total=Decimal("10.00"))
    unprepared = InvoiceFactory(contract=contract, status="pending_approval")
    InvoiceExceptionFactory(invoice=mine, code="LATE_TIME", severity="warning")
    InvoiceExceptionFactory(invoice=mine, code="ANOMALY", severity="warning")
    InvoiceExceptionFactory(invoice=mine, code="MISSING_RATE", severity="blocking")
    InvoiceExceptionFactory(invoice=theirs, code="LATE_TIME", severity="warning")
    InvoiceExceptionFactory(invoice=theirs, code="ANOMALY", severity="warning", state="resolved")

    client.force_login(controller)
    html = client.get(reverse("billing:invoice_list")).content.decode()
    detail = reverse("billing:invoice_detail", args=[mine.pk])
    assert f'<a href="{detail}">{mine.display_number}</a>' in html
    assert f"{contract.client.legal_name}<div class=\"muted small\">{contract.client.code}</div>" in html
    assert 'C-ROW<div class="muted small">P-ROW</div>' in html
    assert "<td>Mar 2025</td><td>1 Apr 2025</td><td>1 May 2025</td>" in html
    assert '<span class="badge badge-todo">Pending approval</span>' in html
    assert '<span class="badge badge-error">1 blocking</span> <span class="badge badge-todo">2 warnings</span>' in html
    assert '<span class="badge badge-todo">1 warning</span>' in html  # the resolved one is not counted
    assert 'title="You prepared it; someone else approves it">You</span>' in html
    assert "<td>Pia Preparer</td>" in html
    assert '<span class="muted">system</span>' in html
    assert ' <span class="badge badge-info">Credit note</span>' in html
    assert '<td class="num">0 d</td>' in html
    assert "1,234.50" in html
    assert html.count('<tr><th scope="row">') == 3 and unprepared.display_number in html


def _invoice_with_lines(entries: int):
    contract = ContractFactory()
    project = ProjectFactory(contract=contract)
    person = PersonFactory(name="Anna Berger")
    invoice = InvoiceFactory(contract=contract, status="pending_approval")
    time_line = InvoiceLineFactory(invoice=invoice, project=project, kind=InvoiceLine.Kind.TIME)
    for i in range(entries):
        TimeEntryFactory(project=project, person=person, status="invoiced", invoice_line=time_line,
                         date=datetime.date(2025, 3, 1 + i % 28), hours=Decimal("1.25"),
                         description=f"Work <{i}>")
    expense_line = InvoiceLineFactory(invoice=invoice, project=project, kind=InvoiceLine.Kind.EXPENSE,
                                      description="Travel")
    ExpenseFactory(project=project, person=person, status="invoiced", invoice_line=expense_line)
    milestone_line = InvoiceLineFactory(invoice=invoice, project=project, kind=InvoiceLine.Kind.MILESTONE)
    MilestoneFactory(project=project, name="Go-live", status="invoiced", invoice_line=milestone_line)
    return invoice


def test_the_invoice_page_costs_the_same_queries_for_2_and_40_billed_entries(client, controller):
    small, large = _invoice_with_lines(2), _invoice_with_lines(40)
    client.force_login(controller)
    client.get(reverse("billing:invoice_detail", args=[small.pk]))
    few, html = _queries(client, reverse("billing:invoice_detail", args=[small.pk]))
    assert "(2 entries)" in html and html.count("Work &lt;") == 2
    many, html = _queries(client, reverse("billing:invoice_detail", args=[large.pk]))
    assert "(40 entries)" in html and html.count("Work &lt;") == 40
    assert many <= few
    # The drill-down keeps its columns: person, date, hours, description (escaped).
    assert ('<tr><td>Anna Berger</td><td>Sat 1 Mar 2025</td><td class="num">1.25</td>'
            '<td class="muted">Work &lt;0&gt;</td></tr>') in html
    assert "Go-live" in html and "Travel" in html


def test_an_invoice_without_time_lines_reads_no_entries():
    invoice = InvoiceFactory(status="pending_approval")
    InvoiceLineFactory(invoice=invoice, kind=InvoiceLine.Kind.DISCOUNT, quantity=Decimal("1"),
                       unit_price=Decimal("-10"), amount=Decimal("-10.00"))
    with CaptureQueriesContext(connection) as captured:
        loaded = selectors.get_invoice(invoice.pk)
    tables = " ".join(q["sql"] for q in captured.captured_queries)
    assert "billing_timeentry" not in tables and "billing_expense" not in tables and "billing_milestone" not in tables
    assert [line.kind for line in loaded.lines.all()] == [InvoiceLine.Kind.DISCOUNT]
