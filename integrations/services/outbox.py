"""The transactional outbox to the ERP (DESIGN §5, ADR 0022): written with the change, delivered by a task.

Writing: `outbox_enqueue_document` (an approved invoice or credit note) and
`outbox_enqueue_customer` (a customer to open or update in the ERP) insert an
`OutboxMessage` inside the caller's business transaction, so the message exists
exactly when the change does. After commit a django-q2 task is queued for it; if
that enqueue is lost (broker down, process killed) the periodic sweep finds the
message anyway.

Delivery (`outbox_deliver`, see `integrations.services.delivery`) is at-least-once
towards the ERP and exactly-once in effect: the idempotency key is derived from the
document, the ERP answers a repeated key with the same id, and after an unclear
outcome the next attempt first looks the document up by that key.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import Client, Invoice
from integrations.erp.documents import customer_document, document_fingerprint, invoice_document
from integrations.models import OutboxMessage

logger = logging.getLogger(__name__)

DELIVER_TASK = "integrations.tasks.deliver_outbox_message"

Kind = OutboxMessage.Kind
Status = OutboxMessage.Status


def erp_endpoint() -> str:
    """The endpoint name messages are written for (one circuit breaker per endpoint)."""
    return getattr(settings, "ERP_ENDPOINT_NAME", "erp")


def enqueue_delivery(message_id: int) -> None:
    """Queue the delivery task of one message; a failure here only delays it until the sweep."""
    try:
        from django_q.tasks import async_task

        async_task(DELIVER_TASK, message_id, group="outbox", task_name=f"outbox-{message_id}")
    except Exception:  # the broker is down: the sweep re-enqueues due messages
        logger.exception("outbox: could not queue delivery of message %s; the sweep will", message_id)


def _enqueue_after_commit(message: OutboxMessage) -> None:
    if getattr(settings, "OUTBOX_ENQUEUE_ON_COMMIT", True):
        message_id = message.pk
        transaction.on_commit(lambda: enqueue_delivery(message_id))


def _write(*, kind: str, key: str, payload: dict, invoice: Invoice | None, client: Client) -> OutboxMessage:
    """Insert the message once per idempotency key (a second call returns the first message)."""
    existing = OutboxMessage.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            message = OutboxMessage.objects.create(
                kind=kind,
                endpoint=erp_endpoint(),
                idempotency_key=key,
                invoice=invoice,
                client=client,
                payload=payload,
            )
    except IntegrityError:  # a concurrent transaction wrote the same key first
        return OutboxMessage.objects.get(idempotency_key=key)
    _enqueue_after_commit(message)
    return message


def outbox_enqueue_customer(*, client: Client, user: Any) -> OutboxMessage:
    """Open (or update) a customer in the ERP: call inside the transaction that created or changed it.

    The key carries a fingerprint of the customer document: an unchanged customer is
    not sent twice, a changed one (new address, VAT id) is sent again.
    """
    document = customer_document(client)
    key = f"{Kind.UPSERT_CUSTOMER}:{client.code}:{document_fingerprint(document['customer'])}"
    message = _write(kind=Kind.UPSERT_CUSTOMER, key=key, payload=document, invoice=None, client=client)
    logger.info("outbox: customer %s queued for the ERP (%s) by %s", client.code, key, getattr(user, "pk", None))
    return message


def outbox_enqueue_document(*, invoice: Invoice, user: Any) -> OutboxMessage:
    """Write the posting message of a numbered invoice or credit note, in the caller's (approval) transaction.

    A customer the ERP does not know yet (no `erp_id`, nothing queued) is queued first, so the
    ERP's customer master is opened alongside; the invoice document carries the full buyer party
    either way, so the ERP side can match it by customer code.
    """
    kind = Kind.POST_CREDIT_NOTE if invoice.kind == Invoice.Kind.CREDIT_NOTE else Kind.POST_INVOICE
    client = invoice.client
    if not client.erp_id and not (
        OutboxMessage.objects.filter(client=client, kind=Kind.UPSERT_CUSTOMER).exclude(status=Status.DEAD).exists()
    ):
        outbox_enqueue_customer(client=client, user=user)
    return _write(
        kind=kind,
        key=f"{kind}:{invoice.number}",
        payload=invoice_document(invoice),
        invoice=invoice,
        client=client,
    )
