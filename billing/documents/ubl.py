"""UBL 2.1 e-invoices: Peppol BIS Billing 3.0 on the EN 16931 core.

An invoice becomes an `Invoice` (type 380), a credit note a `CreditNote` (381).
Mapping decisions (EN 16931 business terms in brackets):

- Lines with a negative amount (contract discount, cap write-down) are sent as
  document-level allowances [BG-20] with their VAT category: an item net price
  may not be negative [BR-27]. Every other line is an invoice line [BG-25];
  hours are `HUR`, everything else one unit (`C62`).
- The VAT breakdown [BG-23] is the invoice's tax rows; every line and allowance
  carries the invoice's one VAT category. AE, E and O carry an exemption reason
  [BT-120, BT-121 VATEX-EU-AE / VATEX-EU-O]; S and Z carry none [BR-S-10, BR-Z-10].
- Category O ("not subject to VAT") forbids the seller's and buyer's VAT ids
  [BR-O-02]: the seller is then identified by its VAT number as seller
  identifier [BT-29] (or its entity code), which BR-CO-26 needs.
- Electronic addresses [BT-34, BT-49] from Peppol's Electronic Address Scheme
  code list (`billing.peppol`): the party's Peppol participant id, else its VAT
  number under its country's scheme (e.g. 9930 for DE); never e-mail (`EM` fails
  PEPPOL-EN16931-CL008). A party with neither gets no e-invoice (ADR 0056).
- A client with a Leitweg-ID (German public buyer) gets an XRechnung 3.0: the German CIUS's
  CustomizationID and the Leitweg-ID as buyer reference [BT-10] (BR-DE-15); validated with KoSIT's
  XRechnung rules instead of Peppol's BIS rules (ADR 0072).
- Otherwise the buyer reference [BT-10] is the PO number, else the contract number; the PO is
  also the order reference [BT-13] and the contract the contract reference [BT-12].
- Amounts carry the currency's minor unit (JPY none, EUR two).
"""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from billing.documents.content import InvoiceContent
from billing.peppol import endpoint_for, vat_id_with_prefix
from kernel.errors import ApplicationError
from kernel.money import quantum

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
# XRechnung 3.0 (the German CIUS) for German public buyers: sent over Peppol with the Peppol billing profile.
XRECHNUNG_CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
GENERATOR = "billable ubl 1 (UBL 2.1, Peppol BIS Billing 3.0 / EN 16931)"

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NS_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


# VATEX exemption reason codes [BT-121] for the categories that have one standard code.
VATEX_CODES = {"AE": "VATEX-EU-AE", "O": "VATEX-EU-O"}

# UN/ECE Recommendation 20 units.
UNIT_HOUR, UNIT_ONE = "HUR", "C62"
ALLOWANCE_DISCOUNT = "95"  # UNCL 5189: discount

SEPA_CREDIT_TRANSFER, CREDIT_TRANSFER = "58", "30"  # UNCL 4461


def _cbc(parent: etree._Element, name: str, text: object, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS_CBC}}}{name}", attrs)
    element.text = str(text)
    return element


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{NS_CAC}}}{name}")


class UblWriter:
    def __init__(self, content: InvoiceContent) -> None:
        self.c = content
        if not content.taxes:
            raise ApplicationError(
                f"{content.number} has no VAT breakdown (no tax rule applied): it cannot be issued as an e-invoice.",
                code="einvoice_impossible",
            )
        if len(content.taxes) > 1:
            raise ApplicationError(
                f"{content.number} has {len(content.taxes)} VAT categories; lines carry no category of their own, "
                "so the e-invoice cannot assign them.",
                code="einvoice_impossible",
            )
        self.tax = content.taxes[0]
        self.credit_note = content.is_credit_note
        self.quantum = quantum(content.currency)

    # --- formatting ---------------------------------------------------------------------------

    def amount(self, value: Decimal) -> str:
        return f"{Decimal(value).quantize(self.quantum):f}"

    def price(self, value: Decimal) -> str:
        """Unit price: as precise as stored, at least the currency's minor unit."""
        value = Decimal(value)
        normalized = value.normalize()
        if normalized.as_tuple().exponent > self.quantum.as_tuple().exponent:
            return f"{value.quantize(self.quantum):f}"
        return f"{normalized:f}"

    @staticmethod
    def number(value: Decimal) -> str:
        normalized = Decimal(value).normalize()
        if normalized.as_tuple().exponent > 0:
            normalized = normalized.quantize(Decimal(1))
        return f"{normalized:f}"

    def money(self, parent: etree._Element, name: str, value: Decimal) -> etree._Element:
        return _cbc(parent, name, self.amount(value), currencyID=self.c.currency)

    # --- document -----------------------------------------------------------------------------

    def build(self) -> etree._Element:
        c = self.c
        root_ns = NS_CREDIT_NOTE if self.credit_note else NS_INVOICE
        root = etree.Element(
            f"{{{root_ns}}}{'CreditNote' if self.credit_note else 'Invoice'}",
            nsmap={None: root_ns, "cac": NS_CAC, "cbc": NS_CBC},
        )
        _cbc(root, "CustomizationID", XRECHNUNG_CUSTOMIZATION_ID if c.leitweg_id else CUSTOMIZATION_ID)
        _cbc(root, "ProfileID", PROFILE_ID)
        _cbc(root, "ID", c.number)
        _cbc(root, "IssueDate", c.issue_date.isoformat())
        if self.credit_note:
            _cbc(root, "CreditNoteTypeCode", "381")
        else:
            _cbc(root, "DueDate", c.due_date.isoformat())
            _cbc(root, "InvoiceTypeCode", "380")
        notes = []  # one document note at most (PEPPOL-EN16931-R002)
        if self.credit_note and c.original_number:
            notes.append(f"Credit note for invoice {c.original_number} of {c.original_issue_date:%Y-%m-%d}.")
        if c.vat_charged_note:
            notes.append(c.vat_charged_note)
        if notes:
            _cbc(root, "Note", " ".join(notes))
        _cbc(root, "DocumentCurrencyCode", c.currency)
        # BT-10: an XRechnung's buyer reference is the Leitweg-ID (BR-DE-15); the PO stays the order reference.
        _cbc(root, "BuyerReference", c.leitweg_id or c.po_number or c.contract_code)
        # BG-14: the service period (the dates the invoice bills), else the billing period.
        _invoice_period(root, c.service_start or c.period_start, c.service_end or c.period_end)
        if c.po_number:
            _cbc(_cac(root, "OrderReference"), "ID", c.po_number)
        if self.credit_note and c.original_number:
            reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
            _cbc(reference, "ID", c.original_number)
            if c.original_issue_date:
                _cbc(reference, "IssueDate", c.original_issue_date.isoformat())
        _cbc(_cac(root, "ContractDocumentReference"), "ID", c.contract_code)
        if c.project_code and not self.credit_note:
            _cbc(_cac(root, "ProjectReference"), "ID", c.project_code)
        self.seller(_cac(_cac(root, "AccountingSupplierParty"), "Party"))
        self.buyer(_cac(_cac(root, "AccountingCustomerParty"), "Party"))
        self.payment(root)
        for line in c.allowance_lines:
            self.allowance(root, line)
        self.tax_total(root)
        self.monetary_total(root)
        for line in c.charge_lines:
            self.line(root, line)
        return root

    # --- parties ------------------------------------------------------------------------------

    @property
    def vat_ids_allowed(self) -> bool:
        return self.tax.category != "O"  # BR-O-02

    def endpoint(self, party_el: etree._Element, party, role: str) -> None:
        endpoint = endpoint_for(peppol_id=party.peppol_id, vat_id=party.vat_id, country=party.country)
        if endpoint is None:
            raise ApplicationError(
                f"The e-invoice needs the {role}'s Peppol electronic address: a Peppol participant id "
                f"(e.g. 0088 GLN, 9959 US EIN) or a VAT id of a Peppol country on {party.name}.",
                code="einvoice_impossible",
            )
        _cbc(party_el, "EndpointID", endpoint.value, schemeID=endpoint.scheme)

    def address(self, party_el: etree._Element, party) -> None:
        address = _cac(party_el, "PostalAddress")
        if party.street:
            _cbc(address, "StreetName", party.street)
        if party.additional_street:
            _cbc(address, "AdditionalStreetName", party.additional_street)
        if party.city:
            _cbc(address, "CityName", party.city)
        if party.postal_code:
            _cbc(address, "PostalZone", party.postal_code)
        _cbc(_cac(address, "Country"), "IdentificationCode", party.country)

    def vat_scheme(self, party_el: etree._Element, vat_id: str, country: str) -> None:
        scheme = _cac(party_el, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", vat_id_with_prefix(vat_id, country))
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")

    def seller(self, party_el: etree._Element) -> None:
        seller = self.c.seller
        self.endpoint(party_el, seller, "seller")
        if not (seller.vat_id and self.vat_ids_allowed):
            # BR-CO-26: some seller identifier; the VAT number itself may not be sent as such under O.
            _cbc(_cac(party_el, "PartyIdentification"), "ID", seller.vat_id or seller.code)
        self.address(party_el, seller)
        if seller.vat_id and self.vat_ids_allowed:
            self.vat_scheme(party_el, seller.vat_id, seller.country)
        legal = _cac(party_el, "PartyLegalEntity")
        _cbc(legal, "RegistrationName", seller.name)
        if seller.register_number:  # BT-30 seller legal registration identifier
            _cbc(legal, "CompanyID", seller.register_number)
        if seller.legal_lines:  # BT-33 seller additional legal information
            _cbc(legal, "CompanyLegalForm", "; ".join(seller.legal_lines))
        if seller.contact_name or seller.contact_phone or seller.contact_email:
            contact = _cac(party_el, "Contact")  # BG-6; DE-R-002, DE-R-005..007 for German domestic invoices
            for name, value in (
                ("Name", seller.contact_name),
                ("Telephone", seller.contact_phone),
                ("ElectronicMail", seller.contact_email),
            ):
                if value:
                    _cbc(contact, name, value)

    def buyer(self, party_el: etree._Element) -> None:
        buyer = self.c.buyer
        email = buyer.emails[0] if buyer.emails else ""
        self.endpoint(party_el, buyer, "buyer")
        self.address(party_el, buyer)
        if buyer.vat_id and self.vat_ids_allowed:
            self.vat_scheme(party_el, buyer.vat_id, buyer.country)
        _cbc(_cac(party_el, "PartyLegalEntity"), "RegistrationName", buyer.name)
        if email:
            _cbc(_cac(party_el, "Contact"), "ElectronicMail", email)

    # --- payment ------------------------------------------------------------------------------

    def payment(self, root: etree._Element) -> None:
        c = self.c
        if c.iban or c.bank_account_number:  # also on credit notes (DE-R-001; as Peppol's own credit note example)
            means = _cac(root, "PaymentMeans")
            sepa = bool(c.iban) and c.currency == "EUR" and c.iban[:2] in SEPA_COUNTRIES
            _cbc(means, "PaymentMeansCode", SEPA_CREDIT_TRANSFER if sepa else CREDIT_TRANSFER)
            _cbc(means, "PaymentID", c.number)
            account = _cac(means, "PayeeFinancialAccount")
            _cbc(account, "ID", c.iban or c.bank_account_number)  # BT-84: IBAN, else the account number
            _cbc(account, "Name", c.seller.name)
            branch = c.bic if c.iban else (c.bank_routing_number or c.bic)  # BT-86: BIC, or the US ABA number
            if branch:
                _cbc(_cac(account, "FinancialInstitutionBranch"), "ID", branch)
        terms = payment_terms_text(c)
        if c.remittance_address:
            terms = f"{terms} {c.remittance_address}"
        _cbc(_cac(root, "PaymentTerms"), "Note", terms)

    # --- allowances, taxes, totals, lines -------------------------------------------------------

    def tax_category(self, parent: etree._Element, name: str, *, breakdown: bool = False) -> None:
        category = _cac(parent, name)
        _cbc(category, "ID", self.tax.category)
        if self.tax.category != "O":  # BR-O-05, BR-O-06: no rate under "not subject to VAT"
            _cbc(category, "Percent", self.number(self.tax.rate))
        if breakdown and self.tax.category not in ("S", "Z"):
            if self.tax.category in VATEX_CODES:
                _cbc(category, "TaxExemptionReasonCode", VATEX_CODES[self.tax.category])
            _cbc(category, "TaxExemptionReason", self.tax.exemption_text)
        _cbc(_cac(category, "TaxScheme"), "ID", "VAT")

    def allowance(self, root: etree._Element, line) -> None:
        allowance = _cac(root, "AllowanceCharge")
        _cbc(allowance, "ChargeIndicator", "false")
        if line.kind == "discount":
            _cbc(allowance, "AllowanceChargeReasonCode", ALLOWANCE_DISCOUNT)
        _cbc(allowance, "AllowanceChargeReason", f"{line.label} {line.note}" if line.note else line.label)
        if line.discount_pct is not None:
            _cbc(allowance, "MultiplierFactorNumeric", self.number(line.discount_pct))  # BT-94
        self.money(allowance, "Amount", -line.amount)
        if line.discount_base is not None:
            self.money(allowance, "BaseAmount", line.discount_base)  # BT-93: the fees
        self.tax_category(allowance, "TaxCategory")

    def tax_total(self, root: etree._Element) -> None:
        total = _cac(root, "TaxTotal")
        self.money(total, "TaxAmount", self.c.tax_total)
        for tax in self.c.taxes:
            subtotal = _cac(total, "TaxSubtotal")
            self.money(subtotal, "TaxableAmount", tax.base)
            self.money(subtotal, "TaxAmount", tax.amount)
            self.tax_category(subtotal, "TaxCategory", breakdown=True)

    def monetary_total(self, root: etree._Element) -> None:
        c = self.c
        totals = _cac(root, "LegalMonetaryTotal")
        self.money(totals, "LineExtensionAmount", c.line_total)
        self.money(totals, "TaxExclusiveAmount", c.subtotal)
        self.money(totals, "TaxInclusiveAmount", c.total)
        if c.allowance_lines:
            self.money(totals, "AllowanceTotalAmount", c.allowance_total)
        self.money(totals, "PayableAmount", c.total)

    def line(self, root: etree._Element, line) -> None:
        element = _cac(root, "CreditNoteLine" if self.credit_note else "InvoiceLine")
        _cbc(element, "ID", line.position)
        # BT-127 (one note per line): a consolidated invoice's line names its contract and PO; a credit-note
        # line says what it credits.
        reference = f"Contract {line.contract_code}" + (f", PO {line.po_number}" if line.po_number else "") \
            if line.contract_code else ""
        note = "; ".join(part for part in (reference, line.note) if part)
        if note:
            _cbc(element, "Note", note)
        _cbc(
            element,
            "CreditedQuantity" if self.credit_note else "InvoicedQuantity",
            self.number(line.quantity),
            unitCode=UNIT_HOUR if line.is_time else UNIT_ONE,
        )
        self.money(element, "LineExtensionAmount", line.amount)
        if line.shows_period:  # BG-26, only where it differs from the header's
            _invoice_period(element, line.service_start, line.service_end)
        item = _cac(element, "Item")
        if line.project_code:
            _cbc(item, "Description", f"Project {line.project_code} {line.project_name}".strip())
        _cbc(item, "Name", line.label[:200])
        self.tax_category(item, "ClassifiedTaxCategory")
        _cbc(_cac(element, "Price"), "PriceAmount", self.line_price(line), currencyID=self.c.currency)

    def line_price(self, line) -> str:
        """The unit price [BT-146]; when quantity × price misses the rounded line amount by more than a cent
        (a currency without minor unit: 7.25 h × 15,333 JPY = 111,164.25 → 111,164), the line amount over the
        quantity instead, to six places: Peppol allows 0.02 (PEPPOL-EN16931-R120)."""
        price, quantity, amount = Decimal(line.unit_price), Decimal(line.quantity), Decimal(line.amount)
        if not quantity or abs(quantity * price - amount) <= Decimal("0.01"):
            return self.price(price)
        return f"{(amount / quantity).quantize(Decimal('0.000001')).normalize():f}"


def _invoice_period(parent: etree._Element, start, end) -> None:
    """cac:InvoicePeriod with the dates given (BG-14 on the document, BG-26 on a line); nothing when neither."""
    if not (start or end):
        return
    period = _cac(parent, "InvoicePeriod")
    if start:
        _cbc(period, "StartDate", start.isoformat())
    if end:
        _cbc(period, "EndDate", end.isoformat())


SEPA_COUNTRIES = frozenset({
    "AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GI", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK", "SM", "VA",
})  # fmt: skip


def payment_terms_text(content: InvoiceContent) -> str:
    """Payment terms [BT-20], also printed on the PDF."""
    if content.is_credit_note:
        reference = f" of invoice {content.original_number}" if content.original_number else ""
        return f"Credit{reference}: the amount is refunded or set off against open invoices."
    days = content.payment_terms_days
    terms = "Due on receipt" if days == 0 else f"Payable within {days} days"
    return f"{terms}, by {content.due_date:%Y-%m-%d}. Please quote {content.number} with your payment."


def render_ubl(content: InvoiceContent) -> bytes:
    """The UBL document's bytes (UTF-8, with XML declaration)."""
    root = UblWriter(content).build()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
