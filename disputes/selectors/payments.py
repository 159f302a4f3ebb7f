"""Reads of the payment screens: the payment list with filters, unapplied cash, one invoice's payments.

Each read is a fixed number of queries whatever the number of rows (lists are bounded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import (
    Case,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
    prefetch_related_objects,
)

from billing.models import Invoice, InvoiceException, Payment
from kernel.money import ZERO

LIST_LIMIT = 200
UNAPPLIED_LIMIT = 100
CANDIDATE_LIMIT = 25
OPEN = InvoiceException.State.OPEN


@dataclass
class MoneyTotal:
    currency: str
    amount: Decimal


@dataclass
class PaymentList:
    payments: list[Payment]
    truncated: bool
    totals: list[MoneyTotal]
    unapplied: list[Payment] = field(default_factory=list)
    unapplied_totals: list[MoneyTotal] = field(default_factory=list)
    unapplied_count: int = 0


def _settled() -> Exists:
    """A payment whose exception finance closed without applying it (refunded, returned, written off)."""
    return Exists(InvoiceException.objects.filter(payment=OuterRef("pk")).exclude(state=OPEN))


def _with_parties(qs: QuerySet) -> QuerySet:
    return qs.select_related("invoice", "client", "recorded_by").prefetch_related(
        Prefetch("exceptions", queryset=InvoiceException.objects.order_by("-id"))
    )


def _totals(qs: QuerySet) -> list[MoneyTotal]:
    rows = qs.order_by().values("currency").annotate(total=Sum("amount")).order_by("currency")
    return [MoneyTotal(r["currency"], r["total"] or ZERO) for r in rows]


def unapplied_cash() -> QuerySet:
    """Payments without an invoice that finance has not settled: cash waiting to be applied or refunded.

    The payment service opens one exception per unapplied payment; closing it (refund made) settles
    the payment. A payment written without an exception (imported history) is unapplied until applied.
    """
    return Payment.objects.filter(invoice__isnull=True).exclude(_settled())


def payment_list(filters: dict[str, Any] | None = None, *, limit: int = LIST_LIMIT) -> PaymentList:
    """Newest first, filtered; plus the unapplied-cash section (rows and totals per currency). 6 queries."""
    filters = filters or {}
    qs = Payment.objects.all()
    client = (filters.get("client") or "").strip()
    if client:
        qs = qs.filter(Q(client__code__iexact=client) | Q(invoice__client__code__iexact=client)
                       | Q(client__legal_name__icontains=client))
    if filters.get("source"):
        qs = qs.filter(source=filters["source"])
    if filters.get("date_from"):
        qs = qs.filter(date__gte=filters["date_from"])
    if filters.get("date_to"):
        qs = qs.filter(date__lte=filters["date_to"])
    applied = filters.get("applied")
    if applied == "yes":
        qs = qs.filter(invoice__isnull=False)
    elif applied == "no":
        qs = qs.filter(invoice__isnull=True)
    reference = (filters.get("reference") or "").strip()
    if reference:
        qs = qs.filter(Q(external_reference__icontains=reference) | Q(invoice_reference__icontains=reference)
                       | Q(invoice__number__icontains=reference))
    rows = list(_with_parties(qs.order_by("-date", "-id"))[: limit + 1])
    unapplied_qs = unapplied_cash()
    unapplied = list(_with_parties(unapplied_qs.order_by("date", "id"))[:UNAPPLIED_LIMIT])
    unapplied_totals = _totals(unapplied_qs)
    return PaymentList(
        payments=rows[:limit],
        truncated=len(rows) > limit,
        totals=_totals(qs),
        unapplied=unapplied,
        unapplied_totals=unapplied_totals,
        unapplied_count=unapplied_qs.count() if len(unapplied) >= UNAPPLIED_LIMIT else len(unapplied),
    )


def get_payment(pk: int) -> Payment:
    return _with_parties(Payment.objects.filter(pk=pk)).get()


def open_payment_exception(payment: Payment) -> InvoiceException | None:
    """The payment's open exception (prefetched by `get_payment`)."""
    return next((e for e in payment.exceptions.all() if e.state == OPEN), None)


def apply_candidates(payment: Payment, *, limit: int = CANDIDATE_LIMIT) -> list[Invoice]:
    """Open invoices the cash could pay: same currency (and payer when known); exact balance first. One query."""
    qs = Invoice.objects.filter(
        kind=Invoice.Kind.INVOICE,
        currency=payment.currency,
        status__in=[Invoice.Status.POSTED, Invoice.Status.SENT, Invoice.Status.PARTIALLY_PAID,
                    Invoice.Status.DISPUTED],
    ).select_related("client")
    if payment.client_id:
        qs = qs.filter(client_id=payment.client_id)
    # An invoice whose open balance is exactly the amount is the likeliest match: first.
    open_balance = F("total") - F("credited_amount") - F("paid_amount")
    qs = qs.annotate(open_balance=open_balance).filter(open_balance__gt=0).annotate(
        exact=Case(When(open_balance=payment.amount, then=Value(0)), default=Value(1), output_field=IntegerField())
    )
    return list(qs.order_by("exact", "due_date", "id")[:limit])


def invoice_payments(invoice: Invoice) -> list[Payment]:
    """The payments applied to an invoice, oldest first, with who recorded them. One query."""
    return list(Payment.objects.filter(invoice_id=invoice.pk).select_related("recorded_by").order_by("date", "id"))


def invoice_open_payment_exceptions(invoice: Invoice) -> list[InvoiceException]:
    """Unapplied cash that names this invoice (currency mismatch, excess, closed). At most two queries,
    none when the invoice page has loaded the invoice's exceptions already and none is about a payment."""
    found = sorted(
        (e for e in invoice.exceptions.all() if e.state == OPEN and e.payment_id is not None), key=lambda e: e.pk
    )
    prefetch_related_objects(found, "payment")
    return found

