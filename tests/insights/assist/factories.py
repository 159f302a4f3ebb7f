"""Histories for the assistive scores: issued invoices with lines, disputes, credit notes."""

from __future__ import annotations

import datetime
from decimal import Decimal
from itertools import count

from django.utils import timezone

from billing.models import Invoice, InvoiceLine
from tests.factories import InvoiceFactory, UserFactory

_numbers = count(1)


def issued_invoice(
    contract,
    issue_date: datetime.date,
    *,
    hours: str = "80.00",
    rate: str = "100.00",
    extra_lines: int = 0,
    status: str = Invoice.Status.POSTED,
    period_end: datetime.date | None = None,
    po_number: str | None = None,
) -> Invoice:
    """A numbered invoice of `contract`: one time line of hours × rate (+ expense lines), net = total."""
    period_end = period_end or (issue_date.replace(day=1) - datetime.timedelta(days=1))
    invoice = InvoiceFactory(
        contract=contract,
        issue_date=issue_date,
        period_start=period_end.replace(day=1),
        period_end=period_end,
        status=Invoice.Status.DRAFT,
        **({"po_number": po_number} if po_number is not None else {}),
    )
    amount = (Decimal(hours) * Decimal(rate)).quantize(Decimal("0.01"))
    lines = [
        InvoiceLine(
            invoice=invoice, position=1, kind=InvoiceLine.Kind.TIME, quantity=Decimal(hours),
            unit_price=Decimal(rate), amount=amount, description="Consulting",
        )
    ]
    for i in range(extra_lines):
        lines.append(
            InvoiceLine(
                invoice=invoice, position=2 + i, kind=InvoiceLine.Kind.EXPENSE, quantity=Decimal("1.00"),
                unit_price=Decimal("50.00"), amount=Decimal("50.00"), description="Travel",
            )
        )
    InvoiceLine.objects.bulk_create(lines)
    net = sum((line.amount for line in lines), Decimal("0"))
    numbered = status not in (Invoice.Status.DRAFT, Invoice.Status.EXCEPTION, Invoice.Status.PENDING_APPROVAL)
    number = f"T-{issue_date.year}-{next(_numbers):06d}" if numbered else None
    Invoice.objects.filter(pk=invoice.pk).update(subtotal=net, total=net, number=number, status=status)
    invoice.refresh_from_db()
    return invoice


def monthly_history(contract, *, months: int, last_issue: datetime.date, hours="80.00", rate="100.00") -> list:
    """`months` issued invoices, one on the 4th of each month, ending with `last_issue`'s month."""
    invoices = []
    year, month = last_issue.year, last_issue.month
    dates = []
    for _ in range(months):
        dates.append(datetime.date(year, month, 4))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    for i, day in enumerate(reversed(dates)):
        # a little natural variation: ±5 % in hours
        h = (Decimal(hours) * (Decimal("0.95") + Decimal(i % 3) * Decimal("0.05"))).quantize(Decimal("0.01"))
        invoices.append(issued_invoice(contract, day, hours=str(h), rate=rate))
    return invoices


def open_dispute(invoice: Invoice, *, days_after_issue: int = 10, owner=None):
    """A dispute on `invoice` opened some days after its issue date (bypasses the service: history only)."""
    from disputes.models import Dispute

    owner = owner or UserFactory(groups=["finance_analyst"])
    opened = timezone.make_aware(
        datetime.datetime.combine(invoice.issue_date + datetime.timedelta(days=days_after_issue), datetime.time(9))
    )
    return Dispute.objects.create(
        invoice=invoice, category=Dispute.Category.HOURS, disputed_amount=Decimal("100.00"), currency=invoice.currency,
        owner=owner, opened_by=owner, opened_at=opened, due_date=opened.date() + datetime.timedelta(days=14),
    )
