"""The transactional outbox to the ERP (DESIGN §5): written with the change, delivered by a task.

(Being built: delivery task, adapters, backoff, circuit breaker, dead letters.)
"""

from __future__ import annotations

from typing import Any

from billing.models import Invoice
from integrations.models import OutboxMessage


def outbox_enqueue_document(*, invoice: Invoice, user: Any) -> OutboxMessage:
    """Write the posting message of a numbered invoice or credit note, in the caller's transaction."""
    kind = (
        OutboxMessage.Kind.POST_CREDIT_NOTE
        if invoice.kind == Invoice.Kind.CREDIT_NOTE
        else OutboxMessage.Kind.POST_INVOICE
    )
    return OutboxMessage.objects.create(
        kind=kind,
        invoice=invoice,
        client_id=invoice.client_id,
        idempotency_key=f"{kind}:{invoice.number}",
        payload={"number": invoice.number, "total": str(invoice.total), "currency": invoice.currency},
    )
