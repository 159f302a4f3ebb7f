"""Issued invoices and payment people for the payments tests (fast: the invoice row is made numbered)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from billing.models import Invoice
from tests.factories import ContractFactory, InvoiceFactory, UserFactory

_numbers = itertools.count(1)


def issued_invoice(*, total: str | Decimal = "1190.00", status: str = Invoice.Status.SENT, currency: str = "EUR",
                   contract=None, **kwargs) -> Invoice:
    """A numbered invoice in `status` for `total` (subtotal + 19 % tax), as approval and posting leave it."""
    total = Decimal(total)
    subtotal = (total / Decimal("1.19")).quantize(Decimal("0.01"))
    contract = contract or ContractFactory(currency=currency)
    return InvoiceFactory(
        contract=contract,
        currency=currency,
        number=kwargs.pop("number") if "number" in kwargs else f"PAY-2025-{next(_numbers):06d}",
        subtotal=subtotal,
        tax_total=total - subtotal,
        total=total,
        status=status,
        **kwargs,
    )


def finance_user(name: str = "pay-analyst"):
    return UserFactory(username=name, groups=["finance_analyst"])
