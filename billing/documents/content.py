"""What an issued invoice says, read once for both renderers (PDF and UBL).

Parties are taken as they were when the invoice was approved (simple-history),
so a document rendered later on first download still shows the addresses, VAT
ids and bank details the invoice was issued with.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from babel import Locale
from django.db import models

from billing.models import Contract, Invoice, InvoiceLine
from kernel.errors import ApplicationError
from kernel.money import ZERO, minor_unit

TIME_KINDS = (InvoiceLine.Kind.TIME, InvoiceLine.Kind.OVERAGE)
# The lines a contract discount is a percentage of (the billing engine's DISCOUNTED_KINDS): "fees".
FEE_KINDS = (InvoiceLine.Kind.TIME, InvoiceLine.Kind.MILESTONE, InvoiceLine.Kind.RETAINER, InvoiceLine.Kind.OVERAGE)
POSTCODE_AFTER_CITY = frozenset({"US", "CA", "AU"})  # "City, ST ZIP"

# UNCL 5305 category → the words printed and sent when the invoice carries no legal note of its own.
CATEGORY_LABELS = {
    "S": "Standard rate",
    "AE": "Reverse charge",
    "O": "Not subject to VAT",
    "E": "Exempt from VAT",
    "Z": "Zero rated",
}


@dataclass(frozen=True)
class Party:
    name: str
    street: str
    additional_street: str
    city: str
    postal_code: str
    country: str
    vat_id: str
    code: str
    emails: tuple[str, ...] = ()
    peppol_id: str = ""  # SCHEME:VALUE, when master data gives one explicitly
    contact_name: str = ""  # the seller's contact [BG-6] (German domestic e-invoices need it)
    contact_phone: str = ""
    contact_email: str = ""
    # Seller only: the register details its country's law wants on the invoice (master data).
    register_court: str = ""
    register_number: str = ""
    registered_office: str = ""
    managing_directors: str = ""
    # Buyer only: not a business for VAT (private person / public body), ticked in master data.
    not_vat_registered: bool = False

    @property
    def country_name(self) -> str:
        return Locale("en").territories.get(self.country, self.country)

    @property
    def city_line(self) -> str:
        """`postal code city` in Europe; `City, ST ZIP` in the US (the city field holds "New York, NY")."""
        if self.country in POSTCODE_AFTER_CITY:
            return f"{self.city} {self.postal_code}".strip()
        return f"{self.postal_code} {self.city}".strip()

    @property
    def address_lines(self) -> list[str]:
        """Street, city line and country name, as printed (US: the country in capitals, as USPS asks)."""
        country = self.country_name.upper() if self.country in POSTCODE_AFTER_CITY else self.country_name
        lines = [self.street, self.additional_street, self.city_line, country]
        return [line for line in lines if line]

    @property
    def legal_lines(self) -> list[str]:
        """The seller's register details as its country requires them on every invoice (DE, GB), else what
        master data gives."""
        lines = []
        if self.country == "DE":
            if self.register_court or self.register_number:
                lines.append(f"Register court {self.register_court or '—'}, {self.register_number or '—'}")
            lines.append(f"Registered office {self.city}")
            if self.managing_directors:
                lines.append(f"Managing directors: {self.managing_directors}")
        elif self.country == "GB":
            if self.register_court or self.register_number:
                lines.append(" · ".join(filter(None, (self.register_court,
                                                      self.register_number and
                                                      f"Company number {self.register_number}"))))
            office = self.registered_office or ", ".join(self.address_lines[:-1])
            lines.append(f"Registered office: {office}")
            if self.managing_directors:
                lines.append(f"Directors: {self.managing_directors}")
        else:
            if self.register_number:
                lines.append(" ".join(filter(None, (self.register_court, self.register_number))))
            if self.managing_directors:
                lines.append(f"Officers: {self.managing_directors}")
        return lines


@dataclass(frozen=True)
class DocumentLine:
    position: int
    kind: str
    kind_label: str
    description: str
    project_code: str
    project_name: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    service_start: datetime.date | None = None  # the dates the line bills (docs/rules/billing.md §13)
    service_end: datetime.date | None = None
    shows_period: bool = False  # printed (and sent) only where it differs from the invoice's service period
    note: str = ""  # what a discount is a percentage of; what a credit-note line credits
    discount_pct: Decimal | None = None
    discount_base: Decimal | None = None
    contract_code: str = ""  # set on consolidated invoices: the contract the line bills (§13)
    po_number: str = ""

    @property
    def is_time(self) -> bool:
        return self.kind in TIME_KINDS

    @property
    def label(self) -> str:
        return self.description or self.kind_label

    @property
    def kind_note(self) -> str:
        """ "Expense", "Milestone"… after the description, unless the description says it already."""
        if self.kind in (*TIME_KINDS, InvoiceLine.Kind.DISCOUNT) or not self.description:
            return ""
        return "" if self.kind_label.lower() in self.description.lower() else self.kind_label


@dataclass
class LineGroup:
    """The lines of one project; contract-level lines (retainer fee, discount) form the last group."""

    project_code: str
    project_name: str
    lines: list[DocumentLine] = field(default_factory=list)
    contract_code: str = ""  # consolidated invoices group by contract, then project (§13)

    @property
    def heading(self) -> str:
        if not self.project_code:
            return f"Contract {self.contract_code}" if self.contract_code else ""
        name = self.project_name
        shown = name and name not in (self.project_code, f"Project {self.project_code}")
        return f"Project {self.project_code}" + (f" · {name}" if shown else "")

    @property
    def hours(self) -> Decimal:
        return sum((line.quantity for line in self.lines if line.is_time), ZERO)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


@dataclass(frozen=True)
class TaxBreakdown:
    category: str
    rate: Decimal
    base: Decimal
    amount: Decimal
    legal_note: str

    @property
    def label(self) -> str:
        return CATEGORY_LABELS.get(self.category, self.category)

    @property
    def exemption_text(self) -> str:
        """BT-120: the legal note, else the category's standard words (S and Z carry none)."""
        if self.category in ("S", "Z"):
            return ""
        return self.legal_note or self.label


@dataclass
class InvoiceContent:
    invoice: Invoice
    number: str
    is_credit_note: bool
    issue_date: datetime.date
    due_date: datetime.date
    period_start: datetime.date | None
    period_end: datetime.date | None
    issued_at: datetime.datetime
    currency: str
    po_number: str
    contract_code: str
    contract_name: str
    project_code: str
    seller: Party
    buyer: Party
    bank_name: str
    iban: str
    bic: str
    groups: list[LineGroup]
    lines: list[DocumentLine]
    taxes: list[TaxBreakdown]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    original_number: str = ""
    original_issue_date: datetime.date | None = None
    # The service period: first and last date of the work the invoice bills (min/max over its lines).
    service_start: datetime.date | None = None
    service_end: datetime.date | None = None
    # A proforma preview of an unnumbered invoice: watermarked, not stored, not sent (docs/rules/billing.md §13).
    proforma: bool = False

    @property
    def watermark(self) -> str:
        return "PROFORMA — not a tax invoice" if self.proforma else ""
    bank_account_number: str = ""
    bank_routing_number: str = ""
    remittance_address: str = ""
    sales_tax_statement: str = ""
    leitweg_id: str = ""  # German public buyer: the e-invoice is an XRechnung
    facturx: bool = False  # the PDF is a Factur-X (PDF/A-3 with the CII XML embedded)

    @property
    def title(self) -> str:
        if self.proforma:
            return "Proforma credit note" if self.is_credit_note else "Proforma invoice"
        return "Credit note" if self.is_credit_note else "Invoice"

    @property
    def decimals(self) -> int:
        return minor_unit(self.currency)

    @property
    def payment_terms_days(self) -> int:
        return (self.due_date - self.issue_date).days

    @property
    def charge_lines(self) -> list[DocumentLine]:
        """Lines sent as UBL invoice lines (an item net price may not be negative: BR-27)."""
        return [line for line in self.lines if line.amount >= 0]

    @property
    def allowance_lines(self) -> list[DocumentLine]:
        """Negative lines (discount, write-down) are document-level allowances in UBL (BG-20)."""
        return [line for line in self.lines if line.amount < 0]

    @property
    def line_total(self) -> Decimal:
        return sum((line.amount for line in self.charge_lines), ZERO)

    @property
    def allowance_total(self) -> Decimal:
        return -sum((line.amount for line in self.allowance_lines), ZERO)

    @property
    def legal_notes(self) -> list[str]:
        notes = [tax.legal_note for tax in self.taxes if tax.legal_note]
        if self.vat_charged_note:
            notes.append(self.vat_charged_note)
        return notes

    @property
    def vat_charged_note(self) -> str:
        """Why a client without a VAT id in another country is charged the seller's VAT (master-data flag)."""
        buyer = self.buyer
        if buyer.vat_id or not buyer.not_vat_registered or not any(t.category == "S" for t in self.taxes):
            return ""
        return (f"The customer is not registered for VAT (private person or public body): "
                f"{self.seller.country_name} VAT is charged.")

    @property
    def has_bank_details(self) -> bool:
        return bool(self.iban or self.bank_account_number)

    @property
    def us_sales_tax(self) -> bool:
        """A US entity billing a US client: taxes are "sales tax" and the entity's statement is printed."""
        return self.seller.country == "US" and self.buyer.country == "US"


def _as_of(obj: models.Model, when: datetime.datetime | None) -> Any:
    """The record as it was at `when` (its history), else as it is now."""
    if when is None:
        return obj
    try:
        return obj.history.as_of(when)
    except obj.__class__.DoesNotExist:
        return obj


def _party(record: Any, *, name: str, emails: tuple[str, ...] = ()) -> Party:
    return Party(
        name=name,
        street=record.address_line1,
        additional_street=getattr(record, "address_line2", ""),
        city=record.city,
        postal_code=record.postal_code,
        country=record.country,
        vat_id=(record.vat_id or "").replace(" ", "").upper(),
        code=record.code,
        emails=emails,
        peppol_id=(getattr(record, "peppol_id", "") or "").strip(),
        contact_name=getattr(record, "contact_name", ""),
        contact_phone=getattr(record, "contact_phone", ""),
        contact_email=getattr(record, "contact_email", ""),
        register_court=getattr(record, "register_court", ""),
        register_number=getattr(record, "register_number", ""),
        registered_office=getattr(record, "registered_office", ""),
        managing_directors=getattr(record, "managing_directors", ""),
        not_vat_registered=bool(getattr(record, "not_vat_registered", False)),
    )


def _line_note(line: InvoiceLine, invoice: Invoice) -> str:
    """What a credit-note line credits (the original line, its quantity and amount)."""
    original = line.credited_line
    if original is None:
        return ""
    what = original.description or original.get_kind_display()
    number = invoice.credit_of.number if invoice.credit_of else ""
    decimals = minor_unit(invoice.currency)

    def money(value: Decimal) -> str:
        return f"{value:,.{decimals}f} {invoice.currency}"

    quantity = f"{original.quantity.normalize():f} h, " if original.kind in TIME_KINDS else ""
    part = "in full" if line.amount == original.amount else f"{money(line.amount)} of it"
    return f"Credits line {original.position} of invoice {number} ({what}; {quantity}{money(original.amount)}), " \
           f"{part}."


def invoice_content(invoice: Invoice, *, proforma: bool = False) -> InvoiceContent:
    """Read a numbered invoice with everything its documents print (a handful of queries).

    `proforma`: the preview of an unnumbered invoice (draft, exception, pending approval); it
    carries no number and its parties are read as they are now.
    """
    invoice = (
        Invoice.objects.select_related("entity", "client", "contract", "project", "credit_of")
        .prefetch_related("taxes")
        .get(pk=invoice.pk)
    )
    if proforma and invoice.number:
        raise ApplicationError(
            f"{invoice.display_number} is numbered: download the invoice itself, not a proforma.", code="numbered"
        )
    if not invoice.number and not proforma:
        raise ApplicationError(
            f"{invoice.display_number} has no number yet: documents are issued for approved invoices only.",
            code="not_numbered",
        )
    issued_at = invoice.approved_at
    entity = _as_of(invoice.entity, issued_at)
    client = _as_of(invoice.client, issued_at)
    rows = list(invoice.lines.select_related("project", "contract", "credited_line").order_by("position", "id"))

    def contract_of(line: InvoiceLine) -> Contract:
        # A consolidated invoice's lines each bill their own contract (its own discount).
        return line.contract if invoice.consolidated and line.contract else invoice.contract

    lines = []
    for index, line in enumerate(rows, start=1):
        note, pct, base = _line_note(line, invoice), None, None
        contract, fees = None, ZERO
        if line.kind == InvoiceLine.Kind.DISCOUNT:
            contract = _as_of(contract_of(line), issued_at)
            fees = sum((r.amount for r in rows if r.kind in FEE_KINDS and contract_of(r).pk == contract.pk), ZERO)
        if contract is not None and fees and contract.discount_pct:
            pct, base = Decimal(contract.discount_pct).normalize(), fees
            note = f"of fees (time, milestones, retainer) of {fees:,.{minor_unit(invoice.currency)}f} " \
                   f"{invoice.currency}; expenses are not discounted"
        lines.append(DocumentLine(
            position=index,
            kind=line.kind,
            kind_label=line.get_kind_display(),
            description=line.description,
            project_code=line.project.code if line.project else "",
            project_name=line.project.name if line.project else "",
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            service_start=line.service_start,
            service_end=line.service_end,
            shows_period=bool(line.service_start or line.service_end)
            and (line.service_start, line.service_end) != (invoice.service_start, invoice.service_end),
            note=note,
            discount_pct=pct,
            discount_base=base,
            contract_code=line.contract.code if invoice.consolidated and line.contract else "",
            po_number=invoice.po_number if invoice.consolidated else "",
        ))
    groups: dict[tuple[str, str], LineGroup] = {}
    for line in lines:
        key = (line.contract_code, line.project_code)
        group = groups.get(key)
        if group is None:
            group = groups[key] = LineGroup(line.project_code, line.project_name, contract_code=line.contract_code)
        group.lines.append(line)
    # By contract (consolidated invoices only), then by project; contract-level lines close their contract.
    ordered = sorted(groups.values(), key=lambda g: (g.contract_code, not g.project_code, g.project_code))
    taxes = [
        TaxBreakdown(category=t.category, rate=t.rate, base=t.base, amount=t.amount, legal_note=t.legal_note)
        for t in sorted(invoice.taxes.all(), key=lambda t: (t.category, t.rate))
    ]
    original = invoice.credit_of
    return InvoiceContent(
        invoice=invoice,
        number=invoice.number or "",
        is_credit_note=invoice.kind == Invoice.Kind.CREDIT_NOTE,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=issued_at or invoice.updated_at,
        currency=invoice.currency,
        po_number=invoice.po_number,
        # A consolidated invoice names all its contracts; its lines name each one (§13).
        contract_code=", ".join(dict.fromkeys(line.contract_code for line in lines if line.contract_code))
        if invoice.consolidated
        else invoice.contract.code,
        contract_name="" if invoice.consolidated else invoice.contract.name,
        project_code=invoice.project.code if invoice.project else "",
        seller=_party(entity, name=entity.name),
        buyer=_party(client, name=client.legal_name, emails=tuple(client.billing_email_list)),
        bank_name=entity.bank_name,
        iban=entity.iban.replace(" ", "").upper(),
        bic=entity.bic.replace(" ", "").upper(),
        groups=ordered,
        lines=lines,
        taxes=taxes,
        subtotal=invoice.subtotal,
        tax_total=invoice.tax_total,
        total=invoice.total,
        original_number=(original.number or original.display_number) if original else "",
        original_issue_date=original.issue_date if original else None,
        service_start=invoice.service_start,
        service_end=invoice.service_end,
        proforma=proforma,
        bank_account_number=entity.bank_account_number.replace(" ", ""),
        bank_routing_number=entity.bank_routing_number.replace(" ", ""),
        remittance_address=entity.remittance_address,
        sales_tax_statement=entity.sales_tax_statement,
        leitweg_id=getattr(client, "leitweg_id", "").strip(),
        facturx=bool(getattr(client, "facturx", False)),
    )
