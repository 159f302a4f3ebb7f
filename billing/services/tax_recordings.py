"""Telling the tax engine about approved invoices and credit notes, with nothing lost while it is down.

`invoice_approve` calls `tax_engine_recording_open` in its transaction when the configured engine
records sales for the invoice's entity: a `TaxEngineRecording` row is then committed with the
approval. After the commit the report is made at once (`tax_engine_record`); if the engine cannot
answer, the row stays pending with the error and the time of the next attempt (backing off up to an
hour), and the scheduled `tax_engine_retry_pending` tries again. The engine's calls are idempotent by
document number, so a retry after a lost answer records nothing twice.
"""

from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.utils import timezone

from billing.models import Invoice, TaxEngineRecording
from billing.tax_engine import TaxEngineUnavailable, get_tax_engine

logger = logging.getLogger(__name__)

Status = TaxEngineRecording.Status
#: Waits between attempts: 1, 2, 4 … minutes, at most an hour.
MAX_BACKOFF = datetime.timedelta(hours=1)


def tax_engine_recording_open(*, invoice: Invoice) -> TaxEngineRecording | None:
    """In the approval's transaction: the report this invoice owes the engine, made after the commit."""
    if not get_tax_engine().records(invoice):
        return None
    recording, _created = TaxEngineRecording.objects.get_or_create(
        invoice=invoice, defaults={"next_attempt_at": timezone.now()}
    )
    transaction.on_commit(lambda pk=invoice.pk: tax_engine_record(invoice_id=pk))
    return recording


def _backoff(attempts: int) -> datetime.timedelta:
    return min(datetime.timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


@transaction.atomic
def tax_engine_record(*, invoice_id: int, now: datetime.datetime | None = None) -> bool:
    """Report invoice `invoice_id` to the engine (commit the sale; a full credit note voids the original).

    True once recorded. The row is locked for the call, so two workers never report it at once; a row
    another worker holds is left to it.
    """
    recording = (
        TaxEngineRecording.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("invoice__entity", "invoice__contract__client", "invoice__credit_of")
        .filter(invoice_id=invoice_id, status=Status.PENDING)
        .first()
    )
    if recording is None:
        return False
    invoice = recording.invoice
    engine = get_tax_engine()
    now = now or timezone.now()
    recording.attempts += 1
    try:
        if invoice.kind == Invoice.Kind.CREDIT_NOTE and invoice.credit_of.status == Invoice.Status.CREDITED:
            engine.void(invoice.credit_of, credit_note=invoice)
        else:
            engine.commit(invoice)
    except TaxEngineUnavailable as exc:
        recording.last_error = str(exc)[:2000]
        recording.next_attempt_at = now + _backoff(recording.attempts)
        recording.save(update_fields=["attempts", "last_error", "next_attempt_at"])
        logger.warning("Tax engine: %s not recorded (attempt %d): %s", invoice.number, recording.attempts, exc)
        return False
    recording.status, recording.done_at, recording.last_error = Status.DONE, now, ""
    recording.save(update_fields=["attempts", "status", "done_at", "last_error"])
    return True


def tax_engine_retry_pending(*, now: datetime.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Scheduled: report the pending recordings whose next attempt is due, oldest first."""
    now = now or timezone.now()
    due = list(
        TaxEngineRecording.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("invoice_id", flat=True)[:limit]
    )
    recorded = sum(tax_engine_record(invoice_id=invoice_id, now=now) for invoice_id in due)
    return {"due": len(due), "recorded": recorded, "pending": len(due) - recorded}
