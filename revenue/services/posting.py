"""Posting a closed period's journals to the ERP through the outbox (docs/rules/revenue.md)."""

from __future__ import annotations

from typing import Any

from revenue.models import JournalEntry, RevenuePeriod


def journals_request_posting(*, period: RevenuePeriod, user: Any) -> list[JournalEntry]:
    """Queue each journal of a just-closed period for the ERP (no ERP configured: nothing is sent)."""
    from billing.services.posting import erp_posting_enabled

    entries = list(JournalEntry.objects.filter(period=period).select_related("entity").prefetch_related("lines"))
    if not erp_posting_enabled():
        return entries
    from integrations.services.outbox import outbox_enqueue_journal

    for entry in entries:
        outbox_enqueue_journal(reference=entry.reference, document=journal_document(entry), user=user)
        JournalEntry.objects.filter(pk=entry.pk).update(erp_status=JournalEntry.ErpStatus.QUEUED)
    return entries


def journal_document(entry: JournalEntry) -> dict:
    """The canonical journal document the ERP adapters accept (kind `post_journal`)."""
    return {
        "kind": "journal",
        "reference": entry.reference,
        "entity": entry.entity.code,
        "period": entry.period.label,
        "date": entry.period.end.isoformat(),
        "currency": entry.currency,
        "lines": [
            {"account": line.account, "label": line.label, "debit": str(line.debit), "credit": str(line.credit)}
            for line in entry.lines.all()
        ],
    }


def journal_mark_posted(message: Any, result: Any) -> None:
    """Outbox delivery hook (kind `post_journal`): record the ERP's id on the journal (its ERP status may move)."""
    reference = message.idempotency_key.split(":", 1)[1]
    JournalEntry.objects.filter(reference=reference).update(
        erp_status=JournalEntry.ErpStatus.POSTED, erp_id=result.erp_id
    )
