"""Exactly one Tryton invoice per Billable document, whatever happens to the connection (real Tryton, real HTTP).

A fault-injecting proxy sits between the adapter and trytond; each fault strikes after Tryton committed,
so Billable's outbox does not know whether the ERP has the document. The next attempt looks it up by
Billable's number before sending anything.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from billing.models import Invoice
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_deliver, outbox_enqueue_document
from tests.factories import UserFactory
from tests.integrations.tryton.factories import approved_document, client_of, demo_entities

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
Status = OutboxMessage.Status


def _enqueue_known_customer(entity_code: str, variant: int) -> tuple[Invoice, OutboxMessage]:
    entity = demo_entities()[entity_code]
    client, category, rate = client_of(entity, variant)
    invoice = approved_document(entity, client, category=category, rate=rate, lines=[("Advisory", "3.00", "400.00")])
    message = outbox_enqueue_document(invoice=invoice, user=UserFactory())
    customer = OutboxMessage.objects.filter(kind=OutboxMessage.Kind.UPSERT_CUSTOMER).first()
    if customer is not None:
        assert outbox_deliver(customer.pk) == "delivered"
    return invoice, message


def _tryton_invoices(tryton, number: str) -> list[dict]:
    return tryton.call("model.account.invoice.search_read", [("reference", "=", number)], 0, None, None,
                       ["state", "number", "total_amount"])


def _due(message: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - datetime.timedelta(seconds=1))


@pytest.mark.parametrize("dropped", ["model.account.invoice.post", "model.account.invoice.create"])
def test_a_connection_dropped_after_tryton_committed_ends_with_one_posted_invoice(tryton, tryton_proxy, dropped):
    invoice, message = _enqueue_known_customer("TLL", 0)
    tryton_proxy.arm(dropped, "drop")

    assert outbox_deliver(message.pk) == "failed"
    message.refresh_from_db()
    assert message.last_error.startswith("unclear: No answer from Tryton"), message.last_error
    assert tryton_proxy.faulted == [f"drop:{dropped}"]
    stored = _tryton_invoices(tryton, invoice.number)
    assert len(stored) == 1  # Tryton has it: posted (drop after post) or a draft (drop after create)
    assert stored[0]["state"] == ("posted" if dropped.endswith("post") else "draft")

    _due(message)
    calls_before = len(tryton_proxy.calls)
    assert outbox_deliver(message.pk) == "delivered"
    retry_calls = tryton_proxy.calls[calls_before:]
    assert "model.account.invoice.create" not in retry_calls  # found by Billable's number, not sent again

    (row,) = _tryton_invoices(tryton, invoice.number)
    assert row["state"] == "posted" and row["number"].startswith("TLL-INV-")
    message.refresh_from_db()
    invoice.refresh_from_db()
    assert message.status == Status.DELIVERED and message.external_id == str(row["id"]) == invoice.erp_id
    assert invoice.status == Invoice.Status.POSTED


def test_a_sent_document_is_looked_up_not_posted_again_when_the_outbox_sends_it_twice(tryton, tryton_settings):
    """Even without a recorded failure (a worker died before writing anything), a second send creates nothing."""
    from integrations.erp.base import get_adapter

    invoice, message = _enqueue_known_customer("NWB", 2)
    adapter = get_adapter()
    first = adapter.post_invoice(message.payload, idempotency_key=message.idempotency_key)
    second = adapter.post_invoice(message.payload, idempotency_key=message.idempotency_key)
    assert first.erp_id == second.erp_id and second.replayed
    assert len(_tryton_invoices(tryton, invoice.number)) == 1
    assert adapter.invoice_status(idempotency_key=message.idempotency_key).erp_id == first.erp_id
