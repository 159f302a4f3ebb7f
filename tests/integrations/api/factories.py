"""Invoices as the API sees them: numbered and posted, with lines, taxes, payments, exceptions."""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal

from billing.models import Invoice, InvoiceException
from tests.factories import (
    ContractFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    InvoiceTaxFactory,
    PaymentFactory,
    ProjectFactory,
    RoleFactory,
)

_numbers = itertools.count(1)


def posted_invoice(*, contract=None, issue_date=datetime.date(2025, 4, 1), lines: int = 2, **kwargs) -> Invoice:
    """A numbered, posted invoice of 2 × 800.00 + 19 % VAT (built with factories: the API only reads it)."""
    contract = contract or ContractFactory()
    project = ProjectFactory(contract=contract)
    role = RoleFactory(code="CONSULTANT")
    subtotal = Decimal("800.00") * lines
    tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
    number = kwargs.pop("number", f"{contract.entity.code}-2025-{next(_numbers):05d}")
    status = kwargs.pop("status", Invoice.Status.POSTED)
    invoice = InvoiceFactory(
        contract=contract,
        issue_date=issue_date,
        subtotal=subtotal,
        tax_total=tax,
        total=subtotal + tax,
        **kwargs,
    )
    for _ in range(lines):
        InvoiceLineFactory(invoice=invoice, project=project, role=role)
    InvoiceTaxFactory(invoice=invoice, base=subtotal, amount=tax)
    # Numbered last: the database freezes a numbered invoice's lines and taxes.
    Invoice.objects.filter(pk=invoice.pk).update(number=number, status=status)
    invoice.refresh_from_db()
    return invoice


def with_payment_and_exception(invoice: Invoice) -> Invoice:
    PaymentFactory(invoice=invoice, client=invoice.client, amount=Decimal("100.00"), currency=invoice.currency)
    InvoiceExceptionFactory(
        invoice=invoice, code="OVERPAYMENT", severity=InvoiceException.Severity.WARNING, message="Paid too much."
    )
    return invoice
