"""Writing outbox messages: in the business transaction, once per document, the canonical payload."""

from __future__ import annotations

import pytest

from billing.models import Invoice
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_enqueue_customer, outbox_enqueue_document
from tests.factories import ClientFactory, UserFactory
from tests.integrations.outbox.factories import approved_invoices

pytestmark = pytest.mark.django_db


def test_invoice_message_carries_the_canonical_document_and_a_key_from_its_number():
    invoice = approved_invoices(1)[0]
    message = outbox_enqueue_document(invoice=invoice, user=UserFactory())

    assert message.kind == OutboxMessage.Kind.POST_INVOICE
    assert message.idempotency_key == f"post_invoice:{invoice.number}"
    assert message.status == OutboxMessage.Status.PENDING and message.invoice == invoice
    doc = message.payload
    assert doc["number"] == invoice.number and doc["type"] == "invoice"
    assert doc["currency"] == "EUR" and doc["issue_date"] == "2026-10-31"
    assert doc["seller"]["vat_id"] == invoice.entity.vat_id
    assert doc["buyer"]["vat_id"] == invoice.client.vat_id and doc["buyer"]["code"] == invoice.client.code
    assert doc["totals"] == {"subtotal": "800.00", "tax": "152.00", "total": "952.00"}
    assert doc["lines"][0]["amount"] == "800.00" and doc["lines"][0]["quantity"] == "8.00"
    assert doc["taxes"] == [{"category": "S", "rate": "19.00", "base": "800.00", "amount": "152.00",
                             "legal_note": ""}]
    assert doc["credit_of"] is None


def test_enqueue_twice_writes_one_message_and_opens_the_customer_once():
    invoices = approved_invoices(2)
    user = UserFactory()
    first = outbox_enqueue_document(invoice=invoices[0], user=user)
    assert outbox_enqueue_document(invoice=invoices[0], user=user) == first
    outbox_enqueue_document(invoice=invoices[1], user=user)

    kinds = sorted(OutboxMessage.objects.values_list("kind", flat=True))
    assert kinds == ["post_invoice", "post_invoice", "upsert_customer"]


def test_credit_note_names_what_it_credits():
    original = approved_invoices(1)[0]
    note = approved_invoices(1, contract=original.contract, kind=Invoice.Kind.CREDIT_NOTE, credit_of=original)[0]
    message = outbox_enqueue_document(invoice=note, user=UserFactory())
    assert message.kind == OutboxMessage.Kind.POST_CREDIT_NOTE
    assert message.idempotency_key == f"post_credit_note:{note.number}"
    assert message.payload["credit_of"] == original.number and message.payload["type"] == "credit_note"


def test_customer_key_changes_with_its_data_only():
    client = ClientFactory()
    user = UserFactory()
    first = outbox_enqueue_customer(client=client, user=user)
    assert outbox_enqueue_customer(client=client, user=user) == first
    client.erp_id = "CUST-000001"  # acknowledged by the ERP: not a change of the customer's data
    client.save()
    assert outbox_enqueue_customer(client=client, user=user) == first
    client.city = "Hamburg"
    client.save()
    second = outbox_enqueue_customer(client=client, user=user)
    assert second != first and second.payload["customer"]["address"]["city"] == "Hamburg"


def test_delivery_is_queued_only_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("integrations.services.outbox.enqueue_delivery", queued.append)
    invoice = approved_invoices(1)[0]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = outbox_enqueue_document(invoice=invoice, user=UserFactory())
    assert queued == []
    for callback in callbacks:
        callback()
    assert message.pk in queued and len(queued) == 2  # the customer's message and the invoice's
