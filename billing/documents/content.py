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

from billing.models import Invoice, InvoiceLine
from kernel.errors import ApplicationError
from kernel.money import ZERO, minor_unit

TIME_KINDS = (InvoiceLine.Kind.TIME, InvoiceLine.Kind.OVERAGE)

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

    @property
    def country_name(self) -> str:
        return Locale("en").territories.get(self.country, self.country)

    @property
    def address_lines(self) -> list[str]:
        """Street, city line and country name, as printed."""
        lines = [self.street, self.additional_street, f"{self.postal_code} {self.city}".strip(), self.country_name]
        return [line for line in lines if line]


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

    @property
    def heading(self) -> str:
        if not self.project_code:
            return ""
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

    @property
    def title(self) -> str:
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
        return [tax.legal_note for tax in self.taxes if tax.legal_note]


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
    )


def invoice_content(invoice: Invoice) -> InvoiceContent:
    """Read a numbered invoice with everything its documents print (a handful of queries)."""
    invoice = (
        Invoice.objects.select_related("entity", "client", "contract", "project", "credit_of")
        .prefetch_related("taxes")
        .get(pk=invoice.pk)
    )
    if not invoice.number:
        raise ApplicationError(
            f"{invoice.display_number} has no number yet: documents are issued for approved invoices only.",
            code="not_numbered",
        )
    issued_at = invoice.approved_at
    entity = _as_of(invoice.entity, issued_at)
    client = _as_of(invoice.client, issued_at)
    lines = [
        DocumentLine(
            position=index,
            kind=line.kind,
            kind_label=line.get_kind_display(),
            description=line.description,
            project_code=line.project.code if line.project else "",
            project_name=line.project.name if line.project else "",
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
        )
        for index, line in enumerate(invoice.lines.select_related("project").order_by("position", "id"), start=1)
    ]
    groups: dict[str, LineGroup] = {}
    for line in lines:
        group = groups.get(line.project_code)
        if group is None:
            group = groups[line.project_code] = LineGroup(line.project_code, line.project_name)
        group.lines.append(line)
    ordered = sorted(groups.values(), key=lambda g: (not g.project_code, g.project_code))
    taxes = [
        TaxBreakdown(category=t.category, rate=t.rate, base=t.base, amount=t.amount, legal_note=t.legal_note)
        for t in sorted(invoice.taxes.all(), key=lambda t: (t.category, t.rate))
    ]
    original = invoice.credit_of
    return InvoiceContent(
        invoice=invoice,
        number=invoice.number,
        is_credit_note=invoice.kind == Invoice.Kind.CREDIT_NOTE,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=issued_at or invoice.updated_at,
        currency=invoice.currency,
        po_number=invoice.po_number,
        contract_code=invoice.contract.code,
        contract_name=invoice.contract.name,
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
    )
