"""Consolidated invoices per client (docs/rules/billing.md §13, ADR 0069): one invoice for the client's contracts,
per-contract rules kept, revalidation over every contract, credit notes by line, documents grouped by contract."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from lxml import etree

from billing.documents.content import invoice_content
from billing.documents.ubl import render_ubl
from billing.models import Invoice, RateCardLine, Role
from billing.services.billing_run import bill_period
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_revalidate
from tests.billing.po_helpers import END, RUN_DATE, START, bill_hours, client, po_contract
from tests.disputes.factories import approve_fully
from tests.factories import (
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def consolidating():
    """Client CONS with three T&M contracts: B splits per project (ignored), C has a 10 % discount and 45 days."""
    the_client = client(code="CONS", consolidate_invoices=True, payment_terms_days=30)
    same = {"client": the_client, "po_number": "4500012345", "entity": LegalEntityFactory()}
    a = po_contract("C-CONS-A", None, **same)
    b = po_contract("C-CONS-B", None, invoice_per_project=True, **same)
    c = po_contract("C-CONS-C", None, discount_pct=Decimal("10"), payment_terms_days=45, **same)
    ProjectFactory(contract=b, code="P-C-CONS-B2")
    bill_hours(a, "3.33")  # 333.00
    bill_hours(b, "2.00")  # 200.00
    second = b.projects.get(code="P-C-CONS-B2")
    TimeEntryFactory(project=second, person=PersonFactory(role=RoleFactory(code="CONSULTANT")),
                     date=datetime.date(2025, 3, 11), hours=Decimal("1.00"), status="approved")
    bill_hours(c, "1.11")  # 111.00, discount −11.10
    return the_client, a, b, c


def test_one_invoice_for_the_clients_contracts_with_per_contract_lines(consolidating):
    the_client, a, _b, _c = consolidating
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(client=the_client)
    assert invoice.consolidated and invoice.contract == a  # the first contract by code
    lines = list(invoice.lines.order_by("position").values_list("contract__code", "project__code", "kind", "amount"))
    assert lines == [
        ("C-CONS-A", "P-C-CONS-A", "time", Decimal("333.00")),
        ("C-CONS-B", "P-C-CONS-B", "time", Decimal("200.00")),
        ("C-CONS-B", "P-C-CONS-B2", "time", Decimal("100.00")),  # invoice_per_project is ignored
        ("C-CONS-C", "P-C-CONS-C", "time", Decimal("111.00")),
        ("C-CONS-C", None, "discount", Decimal("-11.10")),  # C's discount on C's lines only
    ]
    assert invoice.subtotal == Decimal("732.90")
    # Tax once on the subtotal (19 % DE): 139.251 → 139.25, not the sum of per-contract roundings.
    assert invoice.tax_total == Decimal("139.25")
    assert invoice.due_date == RUN_DATE + datetime.timedelta(days=45)  # the longest terms
    assert invoice.po_number == "4500012345"


def test_revalidation_reprices_every_contract_of_the_invoice(consolidating):
    the_client, _a, b, _c = consolidating
    senior = RoleFactory(code="SENIOR")
    TimeEntryFactory(project=b.projects.get(code="P-C-CONS-B"), person=PersonFactory(role=senior),
                     date=datetime.date(2025, 3, 12), hours=Decimal("2.00"), status="approved")
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(client=the_client)
    assert invoice.status == Invoice.Status.EXCEPTION
    missing = invoice.exceptions.get(code="MISSING_RATE")
    assert "C-CONS-B" in missing.message  # the exception names its contract
    RateCardLine.objects.create(rate_card=b.rate_card, role=Role.objects.get(code="SENIOR"), rate=Decimal("150"),
                                effective_from=datetime.date(2020, 1, 1))
    invoice = invoice_revalidate(invoice=invoice, user=UserFactory(groups=["finance_analyst"]))
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    assert invoice.subtotal == Decimal("1032.90")
    assert set(invoice.lines.values_list("contract__code", flat=True)) == {"C-CONS-A", "C-CONS-B", "C-CONS-C"}
    assert Invoice.objects.filter(client=the_client).exclude(status="cancelled").count() == 1


def test_credit_notes_work_on_its_lines_and_caps_see_each_contracts_part(consolidating):
    the_client, a, _b, _c = consolidating
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = approve_fully(Invoice.objects.get(client=the_client), UserFactory(groups=["finance_analyst"]))
    assert invoice.number
    line_a = invoice.lines.get(contract=a)
    note = credit_note_create(invoice=invoice, user=UserFactory(groups=["finance_analyst"]), reason="Rate error",
                              lines=[(line_a, Decimal("33.00"))])
    assert list(note.lines.values_list("contract__code", flat=True)) == ["C-CONS-A"]
    assert note.consolidated

    # A's cap sees only A's own lines on the consolidated invoice (333.00, less the 33.00 credited), not the
    # whole subtotal; as for any invoice, a credit note counts from its creation (docs/rules/billing.md §8).
    from billing.services.run_loading import load_contexts

    contexts, _open = load_contexts([a.pk], START, END)
    assert contexts[0].prior_net_invoiced == Decimal("300.00")
    contexts, _open = load_contexts([_b.pk], START, END)
    assert contexts[0].prior_net_invoiced == Decimal("300.00")  # B: 200.00 + 100.00


def test_documents_group_by_contract_then_project_and_name_each_lines_contract(consolidating):
    the_client, *_ = consolidating
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = approve_fully(Invoice.objects.get(client=the_client), UserFactory(groups=["finance_analyst"]))
    content = invoice_content(invoice)
    assert [(g.contract_code, g.project_code) for g in content.groups] == [
        ("C-CONS-A", "P-C-CONS-A"), ("C-CONS-B", "P-C-CONS-B"), ("C-CONS-B", "P-C-CONS-B2"),
        ("C-CONS-C", "P-C-CONS-C"), ("C-CONS-C", ""),
    ]
    assert content.contract_code == "C-CONS-A, C-CONS-B, C-CONS-C"
    xml = etree.fromstring(render_ubl(content))
    ns = {"cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    # One document: four charge lines; C's discount is a document-level allowance (EN 16931).
    assert len(xml.findall(".//cac:InvoiceLine", ns)) == 4
    notes = [n.text for n in xml.findall(".//cac:InvoiceLine/cbc:Note", ns)]
    assert notes[0] == "Contract C-CONS-A, PO 4500012345" and notes[-1] == "Contract C-CONS-C, PO 4500012345"
