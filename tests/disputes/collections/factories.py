"""Test data for collections: issued invoices in any state, made straight with the factories.

The selectors and services read model fields only (total, credited_amount, paid_amount,
due_date, status), so an issued invoice here is a numbered `Invoice` row in that state,
not one that went through a billing run (tests that need the real PDF do that).
"""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal

from billing.models import Invoice, Payment
from disputes.models import CollectionsProfile, Dispute
from tests.factories import ClientFactory, ContractFactory, InvoiceFactory, LegalEntityFactory, UserFactory

_numbers = itertools.count(1)
_refs = itertools.count(1)
TODAY = datetime.date(2026, 6, 30)


def issued_invoice(
    *,
    client=None,
    entity=None,
    currency: str = "EUR",
    total: str | Decimal = "1000.00",
    due: datetime.date | None = None,
    days_late: int | None = None,
    status: str = Invoice.Status.SENT,
    credited: str | Decimal = "0",
    paid: str | Decimal = "0",
    today: datetime.date = TODAY,
    kind: str = Invoice.Kind.INVOICE,
    credit_of: Invoice | None = None,
    issued: datetime.date | None = None,
) -> Invoice:
    """A numbered invoice of `client` (a new one by default), due `days_late` days before `today`."""
    if due is None:
        due = today - datetime.timedelta(days=days_late or 0)
    client = client or ClientFactory(currency=currency)
    entity = entity or LegalEntityFactory()
    contract = ContractFactory(client=client, entity=entity, currency=currency)
    issue = issued or min(due, today) - datetime.timedelta(days=30)
    n = next(_numbers)
    return InvoiceFactory(
        contract=contract,
        kind=kind,
        credit_of=credit_of,
        number=f"{entity.code}-{'CN' if kind == Invoice.Kind.CREDIT_NOTE else 'IN'}-{n:06d}",
        issue_date=issue,
        due_date=due,
        subtotal=Decimal(total),
        total=Decimal(total),
        credited_amount=Decimal(credited),
        paid_amount=Decimal(paid),
        status=status,
    )


def credit_note(invoice: Invoice, amount: str | Decimal, *, on: datetime.date | None = None) -> Invoice:
    """An issued credit note on `invoice`, and the invoice's credited amount raised by it (as H5's service does)."""
    note = issued_invoice(
        client=invoice.client, entity=invoice.entity, currency=invoice.currency, total=amount,
        due=on or invoice.issue_date, status=Invoice.Status.POSTED, kind=Invoice.Kind.CREDIT_NOTE, credit_of=invoice,
        issued=on or invoice.issue_date,
    )
    Invoice.objects.filter(pk=invoice.pk).update(credited_amount=invoice.credited_amount + Decimal(amount))
    invoice.refresh_from_db()
    return note


def payment(*, invoice: Invoice | None = None, client=None, amount: str | Decimal, currency: str | None = None,
            on: datetime.date = TODAY) -> Payment:
    """A payment; applied to `invoice` (its paid amount raised, as H4's service does) or unapplied cash of `client`."""
    made = Payment.objects.create(
        invoice=invoice,
        client=client or (invoice.client if invoice else None),
        amount=Decimal(amount),
        currency=currency or (invoice.currency if invoice else "EUR"),
        date=on,
        external_reference=f"BANK-{next(_refs):06d}",
    )
    if invoice is not None:
        Invoice.objects.filter(pk=invoice.pk).update(paid_amount=invoice.paid_amount + Decimal(amount))
        invoice.refresh_from_db()
    return made


def live_dispute(invoice: Invoice, *, amount: str | Decimal | None = None) -> Dispute:
    """An open dispute of `amount` (default: the whole open balance, which holds the invoice from dunning)."""
    user = UserFactory(groups=["finance_analyst"])
    disputed = Decimal(amount) if amount is not None else max(invoice.balance, Decimal("0.01"))
    return Dispute.objects.create(
        invoice=invoice, category=Dispute.Category.RATE, disputed_amount=disputed, currency=invoice.currency,
        owner=user, due_date=TODAY, opened_by=user, opened_at=datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC),
    )


def payment_plan(client, *, on: bool = True, offsets: list[int] | None = None) -> CollectionsProfile:
    profile, _ = CollectionsProfile.objects.update_or_create(
        client=client,
        defaults={"in_payment_plan": on, "payment_plan_note": "3 monthly instalments" if on else "",
                  "dunning_offsets": offsets or []},
    )
    return profile
