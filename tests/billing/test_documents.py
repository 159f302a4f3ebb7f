"""Invoice documents: PDF and EN 16931 UBL e-invoices, issued once, validated, downloadable.

Invoices are real: factory work, `run_billing`, then `invoice_approve`. Credit notes
have no service yet, so they are built with factories and numbered directly.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.urls import reverse
from lxml import etree
from pypdf import PdfReader

from billing.documents.content import invoice_content
from billing.documents.pdf import render_pdf
from billing.documents.ubl import render_ubl
from billing.documents.validation import validate_ubl
from billing.models import Invoice, InvoiceDocument
from billing.services.billing_run import bill_period
from billing.services.documents import (
    invoice_document,
    invoice_document_matches_rerender,
    invoice_documents_render,
)
from billing.services.invoices import invoice_approve
from billing.tax_defaults import REVERSE_CHARGE_NOTE
from kernel.errors import ApplicationError
from tests.factories import (
    ClientFactory,
    ContractFactory,
    ExpenseFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    InvoiceTaxFactory,
    LegalEntityFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)
NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}

pytestmark = pytest.mark.django_db


# --- making real invoices ----------------------------------------------------------------------------


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def _roles():
    return RoleFactory(code="CONSULTANT"), RoleFactory(code="SENIOR")


def bill_and_approve(contract, user) -> Invoice:
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    invoice = Invoice.objects.get(contract=contract, kind=Invoice.Kind.INVOICE)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL, list(invoice.exceptions.values_list("code", flat=True))
    invoice = invoice_approve(invoice=invoice, user=user)
    for _step in range(2):  # larger (or unconvertible) amounts: one or two more steps, by other controllers
        if invoice.status == Invoice.Status.PENDING_APPROVAL:
            invoice = invoice_approve(invoice=invoice, user=UserFactory(groups=["finance_controller"]))
    assert invoice.number
    return invoice


def time_contract(*, rate="100.00", currency="EUR", **contract_kwargs):
    consultant, senior = _roles()
    contract = ContractFactory(currency=currency, **contract_kwargs)
    RateCardLineFactory(rate_card=contract.rate_card, role=consultant, rate=Decimal(rate))
    RateCardLineFactory(rate_card=contract.rate_card, role=senior, rate=Decimal(rate) * 2)
    return contract, consultant, senior


def book(project, role, hours, day=10):
    TimeEntryFactory(
        project=project,
        person=PersonFactory(role=role),
        hours=Decimal(hours),
        date=datetime.date(2025, 3, day),
        status="approved",
    )


@pytest.fixture
def multi_project_invoice(analyst):
    """Two projects with consultant and senior time, a converted expense, and a 5 % discount."""
    contract, consultant, senior = time_contract(discount_pct=Decimal("5"))
    alpha = ProjectFactory(contract=contract, code="ALPHA", name="Finance transformation")
    beta = ProjectFactory(contract=contract, code="BETA", name="Data platform")
    book(alpha, consultant, "8.00", 10)
    book(alpha, consultant, "4.50", 11)
    book(alpha, senior, "6.00", 12)
    book(beta, consultant, "7.25", 13)
    ExpenseFactory(project=beta, amount=Decimal("120.00"), description="Train Berlin–München", status="approved")
    return bill_and_approve(contract, analyst)


@pytest.fixture
def reverse_charge_invoice(analyst):
    """A German entity bills a French business with a valid VAT id: AE, 0 %, reverse-charge note."""
    client = ClientFactory(
        legal_name="Société Exemple SA",
        country="FR",
        vat_id="FR40303265045",
        address_line1="10 rue de la Paix",
        city="Paris",
        postal_code="75002",
    )
    contract, consultant, _senior = time_contract(client=client)
    project = ProjectFactory(contract=contract, code="PARIS", name="Audit readiness")
    book(project, consultant, "10.00")
    return bill_and_approve(contract, analyst)


@pytest.fixture
def credit_note(multi_project_invoice):
    """A partial credit of the multi-project invoice: 2 h consultant time of ALPHA at 100.00 plus 19 % VAT."""
    original = multi_project_invoice
    note = InvoiceFactory(
        contract=original.contract,
        kind=Invoice.Kind.CREDIT_NOTE,
        credit_of=original,
        issue_date=datetime.date(2025, 4, 15),
        due_date=datetime.date(2025, 4, 15),
        po_number=original.po_number,
        subtotal=Decimal("200.00"),
        tax_total=Decimal("38.00"),
        total=Decimal("238.00"),
    )
    alpha_line = original.lines.filter(project__code="ALPHA", role__code="CONSULTANT").get()
    InvoiceLineFactory(
        invoice=note,
        kind="credit",
        project=alpha_line.project,
        description="Hours booked twice on 11 March",
        quantity=Decimal("2.00"),
        unit_price=Decimal("100.0000"),
        amount=Decimal("200.00"),
        credited_line=alpha_line,
    )
    InvoiceTaxFactory(invoice=note, category="S", rate=Decimal("19"), base=Decimal("200.00"))
    # No credit-note service yet: number and post it the way approval would.
    Invoice.objects.filter(pk=note.pk).update(
        number=f"{original.entity.number_prefix}-CN-2025-000001",
        status=Invoice.Status.POSTED,
        approved_at=original.approved_at,
    )
    note.refresh_from_db()
    return note


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    return " ".join(text.split())


def xml_of(document: InvoiceDocument) -> etree._Element:
    return etree.fromstring(bytes(document.content))


def amount(root: etree._Element, path: str) -> Decimal:
    return Decimal(root.findtext(path, namespaces=NS))


def assert_valid(xml: bytes) -> None:
    report = validate_ubl(xml)
    assert report.xsd_errors == []
    assert report.failures == [], "\n".join(report.summary())
    assert report.is_valid


def assert_totals_match(root: etree._Element, invoice: Invoice) -> None:
    totals = "cac:LegalMonetaryTotal/cbc:"
    assert amount(root, totals + "TaxExclusiveAmount") == invoice.subtotal
    assert amount(root, totals + "TaxInclusiveAmount") == invoice.total
    assert amount(root, totals + "PayableAmount") == invoice.total
    assert amount(root, "cac:TaxTotal/cbc:TaxAmount") == invoice.tax_total
    line_total = sum((line.amount for line in invoice.lines.all() if line.amount >= 0), Decimal(0))
    assert amount(root, totals + "LineExtensionAmount") == line_total
    subtotals = root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)
    taxes = sorted(invoice.taxes.all(), key=lambda t: t.category)
    assert len(subtotals) == len(taxes)
    for subtotal, tax in zip(subtotals, taxes, strict=True):
        assert subtotal.findtext("cac:TaxCategory/cbc:ID", namespaces=NS) == tax.category
        assert Decimal(subtotal.findtext("cbc:TaxableAmount", namespaces=NS)) == tax.base
        assert Decimal(subtotal.findtext("cbc:TaxAmount", namespaces=NS)) == tax.amount


# --- PDF --------------------------------------------------------------------------------------------


def test_pdf_of_a_multi_project_invoice_carries_the_legal_content(multi_project_invoice):
    invoice = multi_project_invoice
    document = invoice_document(invoice=invoice, kind="pdf")
    data = bytes(document.content)
    assert data.startswith(b"%PDF-")
    text = flat(pdf_text(data))
    entity, client = invoice.entity, invoice.client
    for expected in (
        "INVOICE",
        invoice.number,
        entity.name,
        "Friedrichstraße 100",
        f"VAT ID {entity.vat_id}",
        client.legal_name,
        "Marienplatz 1",
        f"VAT ID {client.vat_id}",
        f"Customer no. {client.code}",
        "Issue date 1 April 2025",
        "Due date 1 May 2025",
        "Service period 1 Mar 2025 – 31 Mar 2025",
        f"PO number {invoice.po_number}",
        f"Contract {invoice.contract.code}",
        "Project ALPHA · Finance transformation",
        "Project BETA · Data platform",
        "CONSULTANT time 10 Mar 2025 – 11 Mar 2025 12.50 h 100.00 1,250.00",  # with its service period
        "SENIOR time 12 Mar 2025 6.00 h 200.00 1,200.00",
        "Subtotal project ALPHA 18.50 h 2,450.00",
        "Train Berlin–München · Expense 10 Mar 2025 120.00",
        "Discount 5 % of fees (time, milestones, retainer) of 3,175.00 EUR; expenses are not discounted −158.75",
        "S · Standard rate 19 % 3,136.25 595.89",
        "Net amount 3,136.25",
        "Total due 3,732.14 EUR",
        "Payable within 30 days, by 2025-05-01",
        "IBAN DE89 3704 0044 0532 0130 00",
        "BIC COBADEFFXXX",
        "Commerzbank",
        f"Reference {invoice.number}",
        "Page 1 of 1",
    ):
        assert expected in text, expected
    assert invoice.subtotal == Decimal("3136.25") and invoice.total == Decimal("3732.14")
    reader = PdfReader(io.BytesIO(data))
    assert reader.metadata.title == f"Invoice {invoice.number}"
    assert reader.metadata.creation_date.replace(microsecond=0) == invoice.approved_at.replace(microsecond=0)
    width, height = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    assert (round(width), round(height)) == (595, 842)  # A4 in points


def test_pdf_of_a_reverse_charge_invoice_prints_the_legal_note(reverse_charge_invoice):
    invoice = reverse_charge_invoice
    text = flat(pdf_text(bytes(invoice_document(invoice=invoice, kind="pdf").content)))
    assert REVERSE_CHARGE_NOTE in text
    assert "AE · Reverse charge 0 % 1,000.00 0.00" in text
    assert "VAT ID FR40303265045" in text
    assert "Société Exemple SA" in text and "France" in text
    assert "Total due 1,000.00 EUR" in text


def test_pdf_of_a_credit_note_names_the_original_invoice(credit_note, multi_project_invoice):
    text = flat(pdf_text(bytes(invoice_document(invoice=credit_note, kind="pdf").content)))
    original = multi_project_invoice.number
    assert "CREDIT NOTE" in text
    assert credit_note.number in text
    assert f"Credits invoice {original} of 1 April 2025" in text
    assert f"This credit note refers to invoice {original}" in text
    # The line says what it credits: the original line, its hours and amount, and how much of it.
    assert (f"Hours booked twice on 11 March · Credit Credits line 1 of invoice {original} (CONSULTANT time; "
            "12.5 h, 1,250.00 EUR), 200.00 EUR of it. 200.00") in text
    assert "Total credited 238.00 EUR" in text
    assert "Due date" not in text  # nothing to pay
    # Bank details and the reference on credit notes too (a refund or a set-off quotes them).
    assert "IBAN DE89 3704 0044 0532 0130 00" in text and f"Reference {credit_note.number}" in text


def test_us_entities_print_on_letter_and_every_layout_fits_both_sizes(analyst):
    entity = LegalEntityFactory(
        code="US01", name="Billable Consulting Inc.", country="US", currency="USD", vat_id="",
        address_line1="350 Fifth Avenue", city="New York", postal_code="10118", iban="", bic="", bank_name="",
    )  # fmt: skip
    client = ClientFactory(country="US", vat_id="", currency="USD", city="Boston", postal_code="02110")
    contract, consultant, _ = time_contract(currency="USD", entity=entity, client=client)
    book(ProjectFactory(contract=contract), consultant, "3.00")
    invoice = bill_and_approve(contract, analyst)
    data = bytes(invoice_document(invoice=invoice, kind="pdf").content)
    page = PdfReader(io.BytesIO(data)).pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == (612, 792)
    assert "No VAT charged." in flat(pdf_text(data))
    content = invoice_content(invoice)
    for paper in ("A4", "letter"):
        assert len(PdfReader(io.BytesIO(render_pdf(content, paper=paper))).pages) == 1


def test_long_invoices_break_pages_with_numbered_pages(analyst):
    contract, consultant, senior = time_contract()
    for index in range(14):
        project = ProjectFactory(contract=contract, code=f"P{index:02d}", name=f"Workstream {index}")
        book(project, consultant, "8.00", 3 + index)
        book(project, senior, "2.00", 3 + index)
    invoice = bill_and_approve(contract, analyst)
    reader = PdfReader(io.BytesIO(bytes(invoice_document(invoice=invoice, kind="pdf").content)))
    pages = len(reader.pages)
    assert pages >= 2
    last = flat(reader.pages[-1].extract_text())
    assert f"Page {pages} of {pages}" in last
    assert "Total due" in last


# --- UBL --------------------------------------------------------------------------------------------


def test_ubl_of_a_multi_project_invoice_is_valid_and_its_totals_are_the_invoice(multi_project_invoice):
    invoice = multi_project_invoice
    document = invoice_document(invoice=invoice, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    assert etree.QName(root).localname == "Invoice"
    assert root.findtext("cbc:CustomizationID", namespaces=NS).startswith("urn:cen.eu:en16931:2017")
    assert root.findtext("cbc:ID", namespaces=NS) == invoice.number
    assert root.findtext("cbc:InvoiceTypeCode", namespaces=NS) == "380"
    assert root.findtext("cbc:IssueDate", namespaces=NS) == "2025-04-01"
    assert root.findtext("cbc:DueDate", namespaces=NS) == "2025-05-01"
    assert root.findtext("cbc:BuyerReference", namespaces=NS) == invoice.po_number
    assert root.findtext("cac:OrderReference/cbc:ID", namespaces=NS) == invoice.po_number
    seller = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    assert seller.find("cbc:EndpointID", NS).get("schemeID") == "9930"
    assert seller.findtext("cac:PartyTaxScheme/cbc:CompanyID", namespaces=NS) == invoice.entity.vat_id
    buyer = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    assert buyer.findtext("cac:PartyTaxScheme/cbc:CompanyID", namespaces=NS) == invoice.client.vat_id
    assert root.findtext("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", namespaces=NS) == invoice.entity.iban
    assert_totals_match(root, invoice)
    # The discount is a document-level allowance (an item price may not be negative).
    allowance = root.find("cac:AllowanceCharge", NS)
    assert allowance.findtext("cbc:ChargeIndicator", namespaces=NS) == "false"
    assert allowance.findtext("cbc:AllowanceChargeReasonCode", namespaces=NS) == "95"
    assert amount(allowance, "cbc:Amount") == Decimal("158.75")
    lines = root.findall("cac:InvoiceLine", NS)
    assert len(lines) == invoice.lines.filter(amount__gte=0).count() == 4
    hours = [line for line in lines if line.find("cbc:InvoicedQuantity", NS).get("unitCode") == "HUR"]
    assert sum(Decimal(line.findtext("cbc:InvoicedQuantity", namespaces=NS)) for line in hours) == Decimal("25.75")


def test_ubl_of_a_reverse_charge_invoice_is_category_ae_with_its_exemption_reason(reverse_charge_invoice):
    document = invoice_document(invoice=reverse_charge_invoice, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    category = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert category.findtext("cbc:ID", namespaces=NS) == "AE"
    assert category.findtext("cbc:Percent", namespaces=NS) == "0"
    assert category.findtext("cbc:TaxExemptionReasonCode", namespaces=NS) == "VATEX-EU-AE"
    assert category.findtext("cbc:TaxExemptionReason", namespaces=NS) == REVERSE_CHARGE_NOTE
    buyer = root.find("cac:AccountingCustomerParty/cac:Party", NS)
    assert buyer.findtext("cac:PartyTaxScheme/cbc:CompanyID", namespaces=NS) == "FR40303265045"
    assert buyer.find("cbc:EndpointID", NS).get("schemeID") == "9957"
    assert_totals_match(root, reverse_charge_invoice)


def test_ubl_of_a_credit_note_references_the_original_invoice(credit_note, multi_project_invoice):
    document = invoice_document(invoice=credit_note, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    assert etree.QName(root).localname == "CreditNote"
    assert root.findtext("cbc:CreditNoteTypeCode", namespaces=NS) == "381"
    reference = root.find("cac:BillingReference/cac:InvoiceDocumentReference", NS)
    assert reference.findtext("cbc:ID", namespaces=NS) == multi_project_invoice.number
    assert reference.findtext("cbc:IssueDate", namespaces=NS) == "2025-04-01"
    assert len(root.findall("cac:CreditNoteLine", NS)) == 1
    assert_totals_match(root, credit_note)


def test_ubl_outside_the_scope_of_vat_sends_no_vat_ids(analyst):
    client = ClientFactory(country="US", vat_id="", city="Boston", postal_code="02110", peppol_id="9959:041234567")
    contract, consultant, _ = time_contract(client=client)
    book(ProjectFactory(contract=contract), consultant, "5.00")
    invoice = bill_and_approve(contract, analyst)
    document = invoice_document(invoice=invoice, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    assert root.find(".//cac:PartyTaxScheme", NS) is None  # BR-O-02
    category = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert category.findtext("cbc:ID", namespaces=NS) == "O"
    assert category.find("cbc:Percent", NS) is None
    assert category.findtext("cbc:TaxExemptionReasonCode", namespaces=NS) == "VATEX-EU-O"
    endpoint = root.find("cac:AccountingCustomerParty/cac:Party/cbc:EndpointID", NS)
    assert (endpoint.get("schemeID"), endpoint.text) == ("9959", "041234567")  # the client's US EIN, never EM
    assert_totals_match(root, invoice)


def test_ubl_amounts_follow_the_currency_minor_unit(analyst):
    client = ClientFactory(currency="JPY")
    contract, consultant, _ = time_contract(rate="15333", currency="JPY", client=client)
    book(ProjectFactory(contract=contract), consultant, "7.25")  # 111,164.25 → 111,164
    invoice = bill_and_approve(contract, analyst)
    document = invoice_document(invoice=invoice, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    payable = root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS)
    assert payable == "132285"  # 111,164 + 19 % (21,121.16 → 21,121), no decimals
    # 7.25 h × 15,333 = 111,164.25 is billed as 111,164: the price sent is the line over the quantity, so that
    # quantity × price meets the line amount within Peppol's 0.02 (PEPPOL-EN16931-R120).
    line = root.find("cac:InvoiceLine", NS)
    price = Decimal(line.findtext("cac:Price/cbc:PriceAmount", namespaces=NS))
    assert price == Decimal("15332.965517")
    line_amount = Decimal(line.findtext("cbc:LineExtensionAmount", namespaces=NS))
    assert abs(Decimal("7.25") * price - line_amount) <= Decimal("0.02")
    assert_totals_match(root, invoice)
    text = flat(pdf_text(bytes(invoice_document(invoice=invoice, kind="pdf").content)))
    assert "Total due 132,285 JPY" in text


def test_ubl_of_a_milestone_invoice_is_valid(analyst):
    contract = ContractFactory(fixed_fee=True)
    MilestoneFactory(project=ProjectFactory(contract=contract), name="Go-live", status="approved")
    invoice = bill_and_approve(contract, analyst)
    document = invoice_document(invoice=invoice, kind="ubl")
    assert_valid(bytes(document.content))
    root = xml_of(document)
    line = root.find("cac:InvoiceLine", NS)
    assert line.findtext("cac:Item/cbc:Name", namespaces=NS) == "Go-live"
    assert line.find("cbc:InvoicedQuantity", NS).get("unitCode") == "C62"
    assert_totals_match(root, invoice)
    pdf = bytes(invoice_document(invoice=invoice, kind="pdf").content)
    assert "Go-live · Milestone 5,000.00" in flat(pdf_text(pdf))


def test_the_validator_reports_failed_rules_of_a_broken_document(multi_project_invoice):
    xml = bytes(invoice_document(invoice=multi_project_invoice, kind="ubl").content)
    broken = re.sub(rb'(<cbc:PayableAmount currencyID="EUR">)[0-9.]+<', rb"\g<1>1.00<", xml)
    report = validate_ubl(broken)
    assert not report.is_valid
    assert report.xsd_errors == []
    assert "BR-CO-16" in {f.rule for f in report.fatal}
    not_ubl = validate_ubl(b"<Invoice/>")
    assert not not_ubl.is_valid and not_ubl.xsd_errors


# --- stored once ------------------------------------------------------------------------------------


def test_documents_are_rendered_once_and_served_as_stored(multi_project_invoice, analyst):
    invoice = multi_project_invoice
    first = invoice_documents_render(invoice=invoice, user=analyst)
    assert set(first) == {"pdf", "ubl"}
    for document in first.values():
        data = bytes(document.content)
        assert document.sha256 == hashlib.sha256(data).hexdigest()
        assert document.size == len(data)
        assert document.created_by == analyst
    again = invoice_documents_render(invoice=invoice)
    assert {k: (d.pk, d.sha256) for k, d in again.items()} == {k: (d.pk, d.sha256) for k, d in first.items()}
    assert InvoiceDocument.objects.filter(invoice=invoice).count() == 2
    # A re-render reproduces the stored bytes (fixed dates and file id), though the stored ones are served.
    assert invoice_document_matches_rerender(document=first["pdf"])
    assert invoice_document_matches_rerender(document=first["ubl"])


def test_a_concurrent_first_download_keeps_the_document_stored_first(multi_project_invoice, monkeypatch):
    from billing.services import documents as service

    real_render = service._render
    winner: list[InvoiceDocument] = []

    def render_while_another_request_stores(kind, content):
        data, generator = real_render(kind, content)
        winner.append(
            InvoiceDocument.objects.create(
                invoice=content.invoice, kind=kind, content=data, sha256=hashlib.sha256(data).hexdigest(),
                size=len(data), generator="the other request",
            )
        )  # fmt: skip
        return data + b"\n", generator  # our render differs: it must not win

    monkeypatch.setattr(service, "_render", render_while_another_request_stores)
    document = invoice_document(invoice=multi_project_invoice, kind="ubl")
    assert document.pk == winner[0].pk and document.generator == "the other request"
    assert InvoiceDocument.objects.filter(invoice=multi_project_invoice).count() == 1


def test_an_e_invoice_that_fails_the_rules_is_not_issued(multi_project_invoice, monkeypatch):
    from billing.services import documents as service

    def render_with_wrong_total(content):
        xml = render_ubl(content)
        return re.sub(rb'(<cbc:PayableAmount currencyID="EUR">)[0-9.]+<', rb"\g<1>1.00<", xml)

    monkeypatch.setattr(service, "render_ubl", render_with_wrong_total)
    with pytest.raises(ApplicationError, match="BR-CO-16"):
        invoice_document(invoice=multi_project_invoice, kind="ubl")
    assert not InvoiceDocument.objects.filter(kind="ubl").exists()
    assert invoice_document(invoice=multi_project_invoice, kind="pdf").kind == "pdf"  # the PDF does not depend on it


def test_no_documents_before_the_invoice_is_numbered(analyst):
    contract, consultant, _ = time_contract()
    book(ProjectFactory(contract=contract), consultant, "1.00")
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    draft = Invoice.objects.get(contract=contract)
    with pytest.raises(ApplicationError, match="no number yet"):
        invoice_document(invoice=draft, kind="pdf")
    with pytest.raises(ApplicationError, match="Unknown document kind"):
        invoice_document(invoice=draft, kind="docx")
    assert not InvoiceDocument.objects.exists()


@pytest.mark.postgres
def test_the_database_refuses_to_change_or_delete_an_issued_document(multi_project_invoice):
    document = invoice_document(invoice=multi_project_invoice, kind="ubl")
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        InvoiceDocument.objects.filter(pk=document.pk).update(content=b"<forged/>")
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        InvoiceDocument.objects.filter(pk=document.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceDocument.objects.create(
            invoice=multi_project_invoice, kind="ubl", content=b"x", sha256="0" * 64, size=1
        )  # one per kind
    draft = InvoiceFactory()
    with pytest.raises(IntegrityError, match="numbered invoices only"), transaction.atomic():
        InvoiceDocument.objects.create(invoice=draft, kind="pdf", content=b"x", sha256="0" * 64, size=1)


# --- downloads --------------------------------------------------------------------------------------


def test_finance_and_auditors_download_the_stored_bytes(client, multi_project_invoice):
    invoice = multi_project_invoice
    client.force_login(UserFactory(groups=["auditor"]))
    response = client.get(reverse("billing:invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in response["Content-Disposition"]
    stored = InvoiceDocument.objects.get(invoice=invoice, kind="pdf")
    assert response.content == bytes(stored.content)
    assert response["ETag"] == f'"{stored.sha256}"'

    client.force_login(UserFactory(groups=["finance_analyst"]))
    again = client.get(reverse("billing:invoice_pdf", args=[invoice.pk]))
    assert again.content == response.content
    xml = client.get(reverse("billing:invoice_ubl", args=[invoice.pk]))
    assert xml.status_code == 200
    assert xml["Content-Type"] == "application/xml"
    assert xml["Content-Disposition"].startswith("attachment")
    assert xml.content == bytes(InvoiceDocument.objects.get(invoice=invoice, kind="ubl").content)

    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk]))
    assert reverse("billing:invoice_pdf", args=[invoice.pk]) in page.content.decode()
    assert reverse("billing:invoice_ubl", args=[invoice.pk]) in page.content.decode()


def test_downloads_are_refused_to_other_roles_and_for_drafts(client, multi_project_invoice):
    client.force_login(UserFactory(groups=["project_manager"]))
    assert client.get(reverse("billing:invoice_pdf", args=[multi_project_invoice.pk])).status_code == 403
    assert not InvoiceDocument.objects.exists()
    client.force_login(UserFactory(groups=["finance_analyst"]))
    draft = InvoiceFactory()
    assert client.get(reverse("billing:invoice_ubl", args=[draft.pk])).status_code == 404
    assert client.get(reverse("billing:invoice_pdf", args=[999_999])).status_code == 404


# --- commands ---------------------------------------------------------------------------------------


def test_render_invoice_command_writes_the_stored_documents(multi_project_invoice, tmp_path, capsys):
    number = multi_project_invoice.number
    pdf, xml = tmp_path / "out.pdf", tmp_path / "out.xml"
    call_command("render_invoice", number, "--pdf", str(pdf), "--ubl", str(xml), "--verify")
    output = capsys.readouterr().out
    assert "re-render identical" in output
    stored = {d.kind: bytes(d.content) for d in InvoiceDocument.objects.filter(invoice=multi_project_invoice)}
    assert pdf.read_bytes() == stored["pdf"]
    assert xml.read_bytes() == stored["ubl"]
    with pytest.raises(CommandError, match="No invoice"):
        call_command("render_invoice", "NOPE-1")


def test_validate_einvoice_command_prints_the_failed_rules(multi_project_invoice, tmp_path, capsys):
    good = tmp_path / "good.xml"
    call_command("render_invoice", multi_project_invoice.number, "--ubl", str(good))
    call_command("validate_einvoice", str(good))
    assert "valid Invoice" in capsys.readouterr().out
    bad = tmp_path / "bad.xml"
    bad.write_bytes(good.read_bytes().replace(b"<cbc:InvoiceTypeCode>380<", b"<cbc:InvoiceTypeCode>999<"))
    with pytest.raises(CommandError, match="1 of 1 file"):
        call_command("validate_einvoice", str(bad))
    output = capsys.readouterr().out
    assert "BR-CL-01" in output
    assert "[EN 16931 fatal] BR-CL-01" in output


def test_validate_einvoice_issued_checks_every_numbered_document_and_its_total(
    credit_note, multi_project_invoice, capsys
):
    call_command("validate_einvoice", "--issued")
    output = capsys.readouterr().out
    assert "2 issued document(s) checked (1 invoices, 1 credit notes): 2 valid with totals equal, 0 failed." in output
    assert "Peppol BIS 3.0: 2 checked, 0 with a fatal finding" in output
    assert "XRechnung: 0 checked" in output and "Factur-X: 0 checked" in output
    with pytest.raises(CommandError, match="not both"):
        call_command("validate_einvoice", "x.xml", "--issued")


# --- the same PDF bytes on any machine: vendored fonts only (issue 13) ---------------------------------------------

RENDER_IN_A_CHILD = """
import sys, django
django.setup()
from billing.documents.pdf import pdf_from_html
sys.stdout.buffer.write(pdf_from_html(sys.stdin.read(), identifier=b"INV-FONTS"))
"""


def embedded_font_families(data: bytes) -> set[str]:
    """Full font names (name table ID 4: family and style) of the font files embedded in the pages."""
    from fontTools.ttLib import TTFont

    families = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            descendant = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            descriptor = descendant["/FontDescriptor"].get_object()
            stream = next(descriptor[key] for key in ("/FontFile2", "/FontFile3", "/FontFile") if key in descriptor)
            embedded = TTFont(io.BytesIO(stream.get_object().get_data()))
            families.add(str(embedded["name"].getDebugName(4)))  # full name: family and style
    return families


def test_pdf_embeds_the_vendored_fonts_only(multi_project_invoice):
    families = embedded_font_families(render_pdf(invoice_content(multi_project_invoice)))
    assert families == {"IBM Plex Sans Cond", "IBM Plex Sans Cond Bold", "IBM Plex Sans Cond Italic", "IBM Plex Mono"}


def test_pdf_bytes_do_not_depend_on_the_fonts_of_the_machine(multi_project_invoice, tmp_path):
    """A machine without a single system font (fontconfig configured with no font directory) renders the same bytes."""
    import os
    import shutil
    import subprocess
    import sys

    from django.conf import settings

    from billing.documents.pdf import pdf_from_html, render_html

    html = render_html(invoice_content(multi_project_invoice))
    here = pdf_from_html(html, identifier=b"INV-FONTS")
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n<fontconfig/>\n')
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE, "FONTCONFIG_FILE": str(empty),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if shutil.which("fc-list"):  # the child really sees no font at all
        listed = subprocess.run(["fc-list"], env=env, capture_output=True, text=True, check=True)  # noqa: S607
        assert listed.stdout.strip() == ""
    child = subprocess.run(  # noqa: S603 (this interpreter, a fixed script)
        [sys.executable, "-c", RENDER_IN_A_CHILD], input=html.encode(), env=env, cwd=settings.BASE_DIR,
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    assert child.stdout.startswith(b"%PDF-")
    assert hashlib.sha256(child.stdout).hexdigest() == hashlib.sha256(here).hexdigest()


def test_the_renderer_fetches_the_vendored_fonts_and_nothing_else():
    from billing.documents.pdf import _font_fetcher, fonts_dir

    fetcher = _font_fetcher()
    font = fonts_dir() / "IBMPlexSansCondensed-Regular.woff2"
    assert fetcher(font.as_uri()).read()[:4] == b"\x00\x01\x00\x00"  # TrueType, decompressed from the WOFF2
    refused = [
        "file:///etc/passwd",
        (fonts_dir() / "LICENSE.txt").as_uri(),
        f"{fonts_dir().as_uri()}/../../../../billing/models/__init__.py",
        f"{fonts_dir().as_uri()}/../../../../../../etc/hostname.woff2",
        "http://127.0.0.1:9/font.woff2",
        "data:font/woff2;base64,d09GMg==",
    ]
    for url in refused:
        with pytest.raises(ValueError, match="fetch no resource but the vendored fonts"):
            fetcher(url)
