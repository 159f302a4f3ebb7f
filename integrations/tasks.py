"""django-q2 entry points of the integrations: they only call services."""

from __future__ import annotations

from integrations.services.outbox import outbox_deliver, outbox_sweep


def deliver_outbox_message(message_id: int, token: int | None = None) -> str:
    """Deliver one outbox message (queued after commit, or by the sweep with its token)."""
    from integrations.models import OutboxMessage

    correlation_id = OutboxMessage.objects.filter(pk=message_id).values_list("correlation_id", flat=True).first()
    try:
        from integrations.middleware import correlation_scope
    except ImportError:  # pragma: no cover
        return outbox_deliver(message_id, token)
    with correlation_scope(correlation_id or None):
        return outbox_deliver(message_id, token)


def sweep_outbox() -> int:
    """Every minute: queue due retries and messages whose task was lost."""
    return outbox_sweep()


def pull_erp_payments() -> str:
    """Every 15 minutes: payments recorded in the ERP come back (when ERP_PAYMENTS_READBACK is on)."""
    from django.conf import settings

    if not (settings.ERP_POSTING_ENABLED and getattr(settings, "ERP_PAYMENTS_READBACK", False)):
        return "off"
    from integrations.services.erp_payments import erp_payments_pull

    result = erp_payments_pull()
    return f"{result.recorded} recorded, {result.seen} seen, {len(result.errors)} errors"
