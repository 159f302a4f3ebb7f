"""The legal content of invoice documents per entity country (DE, GB, US), from master data, not templates.

Real invoices (factory work → billing run → approval) rendered to PDF (text read back with pypdf) and
UBL (validated against XSD, EN 16931 and Peppol BIS 3.0 on issue).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from billing.documents.ubl import NS_CAC, NS_CBC
from billing.services.documents import invoice_document
from tests.billing.test_documents import bill_and_approve, book, flat, pdf_text, time_contract
from tests.factories import ClientFactory, LegalEntityFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
NS = {"cac": NS_CAC, "cbc": NS_CBC}


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def issue(analyst, *, entity, client, currency="EUR", **contract):
    contract_, consultant, _ = time_contract(currency=currency, entity=entity, client=client, **contract)
    book(ProjectFactory(contract=contract_), consultant, "10.00")
    invoice = bill_and_approve(contract_, analyst)
    text = flat(pdf_text(bytes(invoice_document(invoice=invoice, kind="pdf").content)))
    ubl = etree.fromstring(bytes(invoice_document(invoice=invoice, kind="ubl").content))  # validated on issue
    return invoice, text, ubl


def test_german_entity_prints_register_court_number_and_managing_directors(analyst):
    entity = LegalEntityFactory(code="NWX", name="Nordwind Beratung GmbH", city="Hamburg",
                                register_court="Amtsgericht Hamburg", register_number="HRB 187342",
                                managing_directors="Dr. Jana Petersen, Malte Ohlsen")
    _invoice, text, ubl = issue(analyst, entity=entity, client=ClientFactory())
    assert "Register court Amtsgericht Hamburg, HRB 187342" in text
    assert "Registered office Hamburg" in text
    assert "Managing directors: Dr. Jana Petersen, Malte Ohlsen" in text
    assert "IBAN DE89 3704 0044 0532 0130 00" in text
    legal = ubl.find("cac:AccountingSupplierParty/cac:Party/cac:PartyLegalEntity", NS)
    assert legal.findtext("cbc:CompanyID", namespaces=NS) == "HRB 187342"
    assert "Managing directors: Dr. Jana Petersen" in legal.findtext("cbc:CompanyLegalForm", namespaces=NS)


def test_british_entity_prints_company_number_and_registered_office(analyst):
    entity = LegalEntityFactory(
        code="TLX", name="Thames Ledger Ltd", country="GB", currency="GBP", vat_id="GB980780684",
        address_line1="1 Paternoster Lane", city="London", postal_code="EC4M 7BQ", iban="GB29NWBK60161331926819",
        bic="NWBKGB2L", register_court="Registered in England and Wales", register_number="09876543",
        registered_office="10 Fleet Street, London EC4Y 1AA",
    )
    client = ClientFactory(country="GB", vat_id="GB434031494", currency="GBP", city="Leeds", postal_code="LS1 4DY")
    _invoice, text, _ubl = issue(analyst, entity=entity, client=client, currency="GBP")
    assert "Registered in England and Wales · Company number 09876543" in text
    assert "Registered office: 10 Fleet Street, London EC4Y 1AA" in text
    assert "Register court" not in text and "Managing directors" not in text


def test_us_invoice_has_bank_remittance_sales_tax_statement_and_us_address_order(analyst):
    entity = LegalEntityFactory(
        code="HUX", name="Hudson Advisory Inc", country="US", currency="USD", vat_id="", peppol_id="9959:041234567",
        address_line1="350 Fifth Avenue", city="New York, NY", postal_code="10118", iban="", bic="",
        bank_name="First Hudson Bank", bank_account_number="483920174415", bank_routing_number="021000021",
        remittance_address="Remittance advice to ar@hudson.example; checks to PO Box 4410, New York, NY 10163",
        sales_tax_statement="Consulting services are not subject to New York State sales tax.",
    )
    client = ClientFactory(country="US", vat_id="", currency="USD", address_line1="1 Federal Street",
                           city="Boston, MA", postal_code="02110", peppol_id="9959:042345678")
    invoice, text, ubl = issue(analyst, entity=entity, client=client, currency="USD")
    assert "1 Federal Street Boston, MA 02110 UNITED STATES" in text
    assert "Account number 483920174415" in text and "ABA routing number 021000021" in text
    assert "Bank First Hudson Bank" in text and f"Reference {invoice.number}" in text
    assert "Remittance advice to ar@hudson.example; checks to PO Box 4410" in text
    assert "Sales tax" in text and "Consulting services are not subject to New York State sales tax." in text
    assert "VAT RATE" not in text and "No VAT charged" not in text
    means = ubl.find("cac:PaymentMeans", NS)
    assert means.findtext("cbc:PaymentMeansCode", namespaces=NS) == "30"
    assert means.findtext("cac:PayeeFinancialAccount/cbc:ID", namespaces=NS) == "483920174415"
    assert means.findtext("cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID",
                          namespaces=NS) == "021000021"


def test_a_client_that_is_not_vat_registered_is_told_why_it_pays_the_sellers_vat(analyst):
    client = ClientFactory(country="AT", vat_id="", city="Wien", postal_code="1070", not_vat_registered=True,
                           peppol_id="0088:4000001000005")
    assert client.master_data_problems() == []
    _invoice, text, ubl = issue(analyst, entity=LegalEntityFactory(), client=client)
    note = "The customer is not registered for VAT (private person or public body): Germany VAT is charged."
    assert note in text and "Not registered for VAT" in text
    assert note in ubl.findtext("cbc:Note", namespaces=NS)
    assert ubl.findtext("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID", namespaces=NS) == "S"
    # Without the flag the master data is incomplete: a business needs its VAT id.
    client.not_vat_registered = False
    assert any("not VAT-registered" in problem for problem in client.master_data_problems())


def test_the_discount_allowance_states_its_base_and_percentage(analyst):
    _invoice, text, ubl = issue(analyst, entity=LegalEntityFactory(), client=ClientFactory(),
                                discount_pct=Decimal("3"))
    assert "Discount 3 % of fees (time, milestones, retainer) of 1,000.00 EUR" in text
    allowance = ubl.find("cac:AllowanceCharge", NS)
    assert allowance.findtext("cbc:MultiplierFactorNumeric", namespaces=NS) == "3"
    assert allowance.findtext("cbc:BaseAmount", namespaces=NS) == "1000.00"
    assert allowance.findtext("cbc:Amount", namespaces=NS) == "30.00"
