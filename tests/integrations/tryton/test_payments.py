"""Payments registered in Tryton come back into Billable once, move the invoice on, and stop dunning."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from billing.models import Invoice, Payment
from integrations.models import OutboxMessage
from integrations.services.erp_payments import erp_payments_pull
from integrations.services.outbox import outbox_deliver, outbox_enqueue_document
from tests.factories import UserFactory
from tests.integrations.tryton.conftest import tryton_pay
from tests.integrations.tryton.factories import approved_document, client_of, demo_entities

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _posted_invoice(entity_code: str = "NWB", variant: int = 0) -> Invoice:
    entity = demo_entities()[entity_code]
    client, category, rate = client_of(entity, variant)
    invoice = approved_document(entity, client, category=category, rate=rate,
                                lines=[("Consulting", "10.00", "150.0000")])
    outbox_enqueue_document(invoice=invoice, user=UserFactory())
    for pending in OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).order_by("pk"):
        assert outbox_deliver(pending.pk) == "delivered"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.POSTED
    return invoice


def test_a_partial_then_a_final_payment_in_tryton_are_read_back_once_each(tryton, tryton_settings):
    from disputes.selectors.collections import dunning_due

    invoice = _posted_invoice("NWB", 0)
    assert invoice.total == Decimal("1785.00")
    reminder_day = invoice.due_date + datetime.timedelta(days=8)  # past the first reminder level (+7 days)
    assert [item.invoice.pk for item in dunning_due(today=reminder_day, invoice_ids=[invoice.pk])] == [invoice.pk]
    tryton_pay(tryton, int(invoice.erp_id), Decimal("500.00"), datetime.date(2026, 11, 20), partial=True)

    first = erp_payments_pull()
    assert first.recorded == 1 and not first.errors
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PARTIALLY_PAID
    assert invoice.paid_amount == Decimal("500.00") and invoice.balance == Decimal("1285.00")
    (payment,) = Payment.objects.filter(invoice=invoice)
    assert payment.external_reference.startswith("tryton-line-") and payment.date == datetime.date(2026, 11, 20)
    assert payment.recorded_by.username == "api-erp-payments"

    again = erp_payments_pull()  # nothing new in Tryton: nothing recorded twice
    assert again.recorded == 0 and again.seen == 1
    assert Payment.objects.filter(invoice=invoice).count() == 1

    (row,) = tryton.call("model.account.invoice.read", [int(invoice.erp_id)], ["amount_to_pay"])
    assert row["amount_to_pay"] == Decimal("1285.00")
    tryton_pay(tryton, int(invoice.erp_id), Decimal("1285.00"), datetime.date(2026, 11, 28), partial=False)
    (row,) = tryton.call("model.account.invoice.read", [int(invoice.erp_id)], ["reconciled", "amount_to_pay"])
    # Reconciled in full (Tryton's `paid` state follows from its queue, which these tests run no worker for).
    assert row["amount_to_pay"] == Decimal("0") and row["reconciled"] is not None

    final = erp_payments_pull()
    assert final.recorded == 1
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.balance == Decimal("0.00")
    assert Payment.objects.filter(invoice=invoice).count() == 2
    assert erp_payments_pull().invoices == 0  # paid: no longer asked about
    assert dunning_due(today=reminder_day, invoice_ids=[invoice.pk]) == []  # dunning stops


def test_a_credit_note_set_off_in_tryton_is_not_read_back_as_cash(tryton, tryton_settings):
    invoice = _posted_invoice("TLL", 0)
    credit = approved_document(invoice.entity, invoice.client, category="S", rate="20.00",
                               lines=[("Consulting", "2.00", "150.0000")], kind=Invoice.Kind.CREDIT_NOTE,
                               credit_of=invoice)
    outbox_enqueue_document(invoice=credit, user=UserFactory())
    for pending in OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).order_by("pk"):
        assert outbox_deliver(pending.pk) == "delivered"
    credit.refresh_from_db()
    (row,) = tryton.call("model.account.invoice.read", [int(credit.erp_id)], ["lines_to_pay", "company"])
    context = {"company": row["company"], "companies": [row["company"]]}
    # A Tryton user offsets the credit note against the invoice (what "credit with refund" does).
    tryton.call("model.account.invoice.write", [int(invoice.erp_id)], {"payment_lines": [["add", row["lines_to_pay"]]]},
                context=context)
    (target,) = tryton.call("model.account.invoice.read", [int(invoice.erp_id)], ["payment_lines", "amount_to_pay"],
                            context=context)
    assert target["payment_lines"] and target["amount_to_pay"] == invoice.total - credit.total

    result = erp_payments_pull()
    assert (result.seen, result.recorded, result.errors) == (0, 0, [])
    assert not Payment.objects.filter(invoice=invoice).exists()
