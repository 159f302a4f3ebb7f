"""Numbered, approved invoices made cheaply for the outbox tests (no billing run, no approval engine)."""

from __future__ import annotations

import datetime
from decimal import Decimal

from billing.models import Invoice, InvoiceLine, InvoiceTax
from tests.factories import ContractFactory

ISSUE = datetime.date(2026, 10, 31)


def approved_invoices(n: int, *, contract=None, prefix: str = "TST", kind: str = Invoice.Kind.INVOICE,
                      credit_of: Invoice | None = None) -> list[Invoice]:
    """`n` approved, numbered invoices (one time line, 19 % VAT each), made in bulk.

    Lines and taxes are inserted before the number is set: the database freezes a numbered invoice.
    """
    contract = contract or ContractFactory()
    series = "CN-" if kind == Invoice.Kind.CREDIT_NOTE else ""
    drafts = Invoice.objects.bulk_create(
        [
            Invoice(
                kind=kind, credit_of=credit_of, entity=contract.entity, client=contract.client, contract=contract,
                currency=contract.currency, period_start=datetime.date(2026, 10, 1), period_end=ISSUE,
                issue_date=ISSUE, due_date=ISSUE + datetime.timedelta(days=30), po_number=contract.po_number,
                subtotal=Decimal("800.00"), tax_total=Decimal("152.00"), total=Decimal("952.00"),
            )
            for _ in range(n)
        ]
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=inv, position=1, kind=InvoiceLine.Kind.TIME, description="Consulting",
                    quantity=Decimal("8.00"), unit_price=Decimal("100.0000"), amount=Decimal("800.00"))
        for inv in drafts
    )
    InvoiceTax.objects.bulk_create(
        InvoiceTax(invoice=inv, category="S", rate=Decimal("19.0000"), base=Decimal("800.00"),
                   amount=Decimal("152.00"))
        for inv in drafts
    )
    start = Invoice.objects.filter(number__startswith=f"{prefix}-{series}").count()
    for i, inv in enumerate(drafts, start=start + 1):
        inv.number = f"{prefix}-{series}2026-{i:06d}"
    # Through the ORM (no FSM: test data), approved and numbered in one UPDATE per row.
    for inv in drafts:
        Invoice.objects.filter(pk=inv.pk).update(number=inv.number, status=Invoice.Status.APPROVED)
    return list(Invoice.objects.filter(pk__in=[i.pk for i in drafts]).select_related("client", "entity", "contract")
                .order_by("pk"))
