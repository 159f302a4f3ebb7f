"""Objects of the integration-monitor rows of the permissions matrix (portal/matrix/integrations_monitor.py)."""

from __future__ import annotations

from typing import Any

from integrations.models import OutboxMessage


def build_targets(world) -> dict[str, Any]:
    invoice = world.targets["inv-posted"]
    dead = OutboxMessage.objects.create(
        kind=OutboxMessage.Kind.POST_INVOICE, invoice=invoice, client_id=invoice.client_id,
        idempotency_key=f"post_invoice:{invoice.number}:matrix", payload={"number": invoice.number},
        status=OutboxMessage.Status.DEAD, attempts=8, last_error="retryable: ERP answered HTTP 503",
    )
    return {"outbox-dead": dead}


BODIES = {"integrations:outbox_retry": lambda w, o: {"reason": "Matrix check: the ERP is back"}}
