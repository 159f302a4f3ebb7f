"""XRechnung (German CIUS on UBL) for German public buyers, validated with KoSIT's official rules (ADR 0072)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from lxml import etree

from billing.documents.ubl import NS_CAC, NS_CBC, XRECHNUNG_CUSTOMIZATION_ID
from billing.documents.validation import EN16931, PEPPOL, XRECHNUNG, validate_ubl
from billing.services.documents import invoice_document
from tests.billing.test_documents import bill_and_approve, book, time_contract
from tests.factories import ClientFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
NS = {"cac": NS_CAC, "cbc": NS_CBC}
LEITWEG = "991-33333TEST-33"


@pytest.fixture
def xrechnung():
    client = ClientFactory(leitweg_id=LEITWEG, legal_name="Freie und Hansestadt Hamburg, Finanzbehörde")
    contract, consultant, _ = time_contract(client=client, po_number="PO-4711")
    book(ProjectFactory(contract=contract), consultant, "8.00")
    invoice = bill_and_approve(contract, UserFactory(groups=["finance_analyst"]))
    return bytes(invoice_document(invoice=invoice, kind="ubl").content)


def _mutated(xml: bytes, xpath: str) -> bytes:
    root = etree.fromstring(xml)
    for element in root.xpath(xpath, namespaces=NS):
        element.getparent().remove(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_german_public_buyer_gets_an_xrechnung_that_passes_all_four_layers(xrechnung):
    root = etree.fromstring(xrechnung)
    assert root.findtext("cbc:CustomizationID", namespaces=NS) == XRECHNUNG_CUSTOMIZATION_ID
    assert root.findtext("cbc:BuyerReference", namespaces=NS) == LEITWEG
    assert root.findtext("cac:OrderReference/cbc:ID", namespaces=NS) == "PO-4711"
    report = validate_ubl(xrechnung)
    assert report.is_valid, report.summary()
    assert report.layers == (EN16931, PEPPOL, XRECHNUNG)
    assert report.counts()[XRECHNUNG] == (0, 0)


@pytest.mark.parametrize(("xpath", "rule"), [
    ("/*/cbc:BuyerReference", "BR-DE-15"),  # no Leitweg-ID
    ("/*/cac:PaymentMeans", "BR-DE-1"),  # no payment instructions
    ("/*/cac:AccountingSupplierParty/cac:Party/cac:Contact/cbc:Telephone", "BR-DE-6"),  # seller contact phone
])
def test_the_xrechnung_rules_catch_what_the_german_cius_requires(xrechnung, xpath, rule):
    report = validate_ubl(_mutated(xrechnung, xpath))
    assert not report.is_valid
    assert rule in {f.rule for f in report.fatal if f.layer == XRECHNUNG}, report.summary()


def test_the_leitweg_id_is_checked_in_master_data():
    client = ClientFactory.build(leitweg_id="991-33333TEST-34")
    with pytest.raises(ValidationError) as error:
        client.full_clean()
    assert "check digits" in str(error.value.message_dict["leitweg_id"])
    client = ClientFactory.build(leitweg_id=LEITWEG, country="AT", vat_id="ATU13585627")
    with pytest.raises(ValidationError) as error:
        client.full_clean()
    assert "leitweg_id" in error.value.message_dict
