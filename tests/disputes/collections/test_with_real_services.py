"""Collections over invoices moved by the real services: billing run → approval → posting, payments, disputes.

The collections selectors read model fields only; this checks they agree with what the payment and
dispute services write (partial payment, unapplied cash, dispute opened and withdrawn).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core import mail

from billing.services.payments import payment_exception_resolve, payment_record
from disputes.selectors.collections import aging_report, client_statement
from disputes.services import dispute_open, dispute_withdraw
from disputes.services.collections import dunning_run
from tests.disputes.factories import issued_invoice

pytestmark = pytest.mark.django_db


def test_payment_dispute_and_withdrawal_as_collections_sees_them(settings, analyst):
    settings.DUNNING_ATTACH_PDF = False
    invoice = issued_invoice(approver=analyst)
    total = invoice.total
    day = invoice.due_date + datetime.timedelta(days=8)

    payment_record(amount="100.00", currency=invoice.currency, date=invoice.due_date, external_reference="BANK-1",
                   source="manual", user=analyst, invoice=invoice)
    payment_record(amount="40.00", currency=invoice.currency, date=invoice.due_date, external_reference="BANK-2",
                   source="manual", user=analyst, client=invoice.client)  # names no invoice: unapplied cash
    invoice.refresh_from_db()
    assert invoice.status == "partially_paid" and invoice.balance == total - Decimal("100.00")

    (row,) = aging_report(as_of=day).rows
    assert (row.buckets["1_30"], row.unapplied, row.disputed) == (total - 100, Decimal("40.00"), Decimal("0"))
    summary = dunning_run(today=day)
    assert summary.sent == 1 and f"{total - 100:,}" in mail.outbox[0].body

    # The whole open balance disputed: all of it is held (a partial dispute holds only its amount, ADR 0038).
    dispute = dispute_open(invoice=invoice, category="hours", disputed_amount=invoice.balance, user=analyst)
    (row,) = aging_report(as_of=day).rows
    assert row.disputed == row.total == total - 100
    later = day + datetime.timedelta(days=20)  # 28 days late: level 2 would be due
    assert dunning_run(today=later).held_back == {"disputed": 1} and len(mail.outbox) == 1

    dispute_withdraw(dispute=dispute, user=analyst, reason="Customer accepted the hours")
    assert dunning_run(today=later).sent == 1 and mail.outbox[-1].subject.startswith("Second reminder")

    (eur,) = client_statement(client=invoice.client, as_of=later, since=datetime.date(2025, 1, 1)).ledgers
    assert eur.closing == total - 140 == eur.open_items - eur.unapplied


def test_unapplied_cash_finance_refunded_leaves_the_aging_and_the_statement(analyst):
    invoice = issued_invoice(approver=analyst)
    day = invoice.due_date + datetime.timedelta(days=1)
    kept = payment_record(amount="40.00", currency=invoice.currency, date=invoice.due_date, external_reference="B-1",
                          source="manual", user=analyst, client=invoice.client)
    refunded = payment_record(amount="25.00", currency=invoice.currency, date=invoice.due_date,
                              external_reference="B-2", source="manual", user=analyst, client=invoice.client)
    assert aging_report(as_of=day).rows[0].unapplied == Decimal("65.00")

    payment_exception_resolve(exception=refunded.exceptions.get(), user=analyst, reason="Refunded to the payer")

    (row,) = aging_report(as_of=day).rows
    assert row.unapplied == Decimal("40.00")
    (eur,) = client_statement(client=invoice.client, as_of=day, since=datetime.date(2025, 1, 1)).ledgers
    assert [e.reference for e in eur.entries if e.kind == "payment"] == [kept.external_reference]
    assert eur.closing == invoice.total - Decimal("40.00") and eur.unapplied == Decimal("40.00")
