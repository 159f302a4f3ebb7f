"""The transactional outbox to the ERP (docs/rules/integrations.md, ADR 0022).

Written with the change, delivered by a task.

Writing: `outbox_enqueue_document` (an approved invoice or credit note) and
`outbox_enqueue_customer` (a customer to open or update in the ERP) insert an
`OutboxMessage` inside the caller's business transaction, so the message exists
exactly when the change does. After commit a django-q2 task is queued for it; if
that enqueue is lost (broker down, process killed) the periodic sweep finds the
message anyway.

Delivery (`outbox_deliver`) is at-least-once towards the ERP and exactly-once in
effect: the idempotency key is derived from the document, the ERP answers a repeated
key with the same id, and any attempt after an earlier one (failed, unclear, or cut
short by a dying worker) first looks the document up by that key.

Claiming: a short transaction locks the row (`SKIP LOCKED`) and sets a lease
(`locked_until`); the HTTP call runs outside any transaction, so a slow ERP never holds
a row lock; the outcome is written in a second short transaction. A lease that runs out
(the worker died) makes the message claimable again.
"""

from __future__ import annotations

import datetime
import logging
import random
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Client, Invoice
from integrations.erp.base import ErpAdapter, ErpError, ErpResult, Outcome, get_adapter
from integrations.erp.documents import customer_document, document_fingerprint, invoice_document
from integrations.models import OutboxMessage
from integrations.services.circuit import circuit_permit, circuit_record_failure, circuit_record_success
from kernel.audit import save_audited
from kernel.errors import ApplicationError, InvalidTransitionError, PermissionDeniedError
from kernel.roles import FINANCE_ROLES, has_any_role
from kernel.workflow import apply_transition

logger = logging.getLogger(__name__)

DELIVER_TASK = "integrations.tasks.deliver_outbox_message"

Kind = OutboxMessage.Kind
Status = OutboxMessage.Status


def erp_endpoint() -> str:
    """The endpoint name messages are written for (one circuit breaker per endpoint)."""
    return getattr(settings, "ERP_ENDPOINT_NAME", "erp")


def _correlation_id() -> str:
    try:
        from integrations.middleware import current_correlation_id, new_correlation_id
    except ImportError:  # pragma: no cover - the API part ships the middleware
        import uuid

        return uuid.uuid4().hex
    return current_correlation_id() or new_correlation_id()


def enqueue_delivery(message_id: int, token: int | None = None) -> None:
    """Queue the delivery task of one message; a failure here only delays it until the sweep."""
    try:
        from django_q.tasks import async_task

        # save=False: a delivery's result lives on the message; storing every success in django-q2's
        # table (which it prunes under a lock of all saved rows) would slow the cluster's acknowledgements.
        async_task(DELIVER_TASK, message_id, token, group="outbox", task_name=f"outbox-{message_id}", save=False)
    except Exception:  # the broker is down: the sweep re-enqueues due messages
        logger.exception("outbox: could not queue delivery of message %s; the sweep will", message_id)


def _enqueue_after_commit(message: OutboxMessage) -> None:
    if getattr(settings, "OUTBOX_ENQUEUE_ON_COMMIT", True):
        message_id = message.pk
        transaction.on_commit(lambda: enqueue_delivery(message_id))


def _write(*, kind: str, key: str, payload: dict, invoice: Invoice | None, client: Client | None) -> OutboxMessage:
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
                correlation_id=_correlation_id(),
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
    # The ERP's own id is not part of the customer's data: receiving it must not make a "changed" customer.
    data = {k: v for k, v in document["customer"].items() if k != "erp_id"}
    key = f"{Kind.UPSERT_CUSTOMER}:{client.code}:{document_fingerprint(data)}"
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


#: Feature apps above integrations learn of a delivered document through these hooks (kind → callback),
#: registered from their AppConfig.ready(): integrations never imports them (ADR 0014 seams).
DELIVERY_HOOKS: dict[str, Callable[[OutboxMessage, ErpResult], None]] = {}


def register_delivery_hook(kind: str, hook: Callable[[OutboxMessage, ErpResult], None]) -> None:
    """Call `hook(message, result)` inside the transaction that records a delivered message of `kind`."""
    DELIVERY_HOOKS[kind] = hook


def outbox_enqueue_journal(*, reference: str, document: dict, user: Any) -> OutboxMessage:
    """Write the posting message of a journal entry (canonical kind `journal`) in the caller's transaction.

    The key is the journal's reference: a closed period's journal is written once and never changes.
    """
    message = _write(
        kind=Kind.POST_JOURNAL,
        key=f"{Kind.POST_JOURNAL}:{reference}",
        payload={"type": "journal", "number": reference, **document},
        invoice=None,
        client=None,
    )
    logger.info("outbox: journal %s queued for the ERP by %s", reference, getattr(user, "pk", None))
    return message


# =====================================================================================================
# Delivery
# =====================================================================================================


def backoff_delay(attempts: int) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base · 2^(attempts-1))) seconds."""
    ceiling = min(settings.OUTBOX_BACKOFF_CAP_S, settings.OUTBOX_BACKOFF_BASE_S * 2 ** max(0, attempts - 1))
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


def _lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.OUTBOX_LEASE_S)


def _claim(message_id: int, token: int | None) -> tuple[OutboxMessage, datetime.datetime, bool] | None:
    """Lease the message to this worker: (message, lease, resumed) or None when it is not ours to send now.

    `resumed` is true when an attempt was made before (failed, unclear, or its worker died holding the
    lease): then the ERP is asked first whether it already has the document.
    """
    now = timezone.now()
    with transaction.atomic():
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, status__in=[Status.PENDING, Status.FAILED])
            .first()
        )
        if message is None:
            return None  # delivered, dead, or another worker holds the row right now
        if message.locked_until and message.locked_until > now:
            return None  # leased by a worker that is sending it
        not_due = message.next_attempt_at is not None and message.next_attempt_at > now
        if not_due and (token is None or token != message.attempts):
            return None  # not due, and not a task the sweep queued for this attempt (a stale duplicate)
        # Sent before (a failed or unclear attempt, a worker that died holding the lease, a retried
        # dead letter): the ERP may have it already, so the attempt starts with a look-up.
        resumed = message.attempts > 0 or message.locked_until is not None or bool(message.last_error)
        message.locked_until = now + _lease()
        message.save(update_fields=["locked_until"])
    return message, message.locked_until, resumed


def _send(adapter: ErpAdapter, message: OutboxMessage) -> ErpResult:
    key = message.idempotency_key
    if message.kind == Kind.POST_JOURNAL:
        return adapter.post_journal(message.payload, idempotency_key=key)
    if message.kind == Kind.UPSERT_CUSTOMER:
        return adapter.upsert_customer(message.payload, idempotency_key=key)
    if message.kind == Kind.POST_CREDIT_NOTE:
        return adapter.post_credit_note(message.payload, idempotency_key=key)
    return adapter.post_invoice(message.payload, idempotency_key=key)


def _postpone(message: OutboxMessage, lease: datetime.datetime, retry_at: datetime.datetime | None) -> None:
    """The circuit is open: give the lease back and try after the cool-down (not an attempt)."""
    when = (retry_at or timezone.now()) + datetime.timedelta(seconds=random.uniform(0, 1))  # noqa: S311
    OutboxMessage.objects.filter(pk=message.pk, locked_until=lease).update(locked_until=None, next_attempt_at=when)


def outbox_deliver(message_id: int, token: int | None = None) -> str:
    """Deliver one message to the ERP; returns what happened (delivered, failed, dead, postponed, skipped).

    Safe to run any number of times, by any number of workers, for the same message.
    """
    claim = _claim(message_id, token)
    if claim is None:
        return "skipped"
    message, lease, resumed = claim
    permit = circuit_permit(message.endpoint)
    if not permit.allowed:
        _postpone(message, lease, permit.retry_at)
        return "postponed"
    adapter = get_adapter()
    try:
        result = adapter.invoice_status(idempotency_key=message.idempotency_key) if resumed else None
        if result is None:
            result = _send(adapter, message)
    except ErpError as error:
        if error.trips_circuit:
            circuit_record_failure(message.endpoint, error.message)
        else:
            circuit_record_success(message.endpoint)  # it answered: the endpoint is up
        return _record_failure(message.pk, lease, error)
    except Exception as exc:  # an adapter bug must not lose the message: count it as an unclear attempt
        logger.exception("outbox: adapter crashed delivering message %s", message.pk)
        return _record_failure(message.pk, lease, ErpError(f"Adapter error: {exc!r}", outcome=Outcome.UNCLEAR))
    circuit_record_success(message.endpoint)
    return _record_success(message.pk, result)


@transaction.atomic
def _record_success(message_id: int, result: ErpResult) -> str:
    """The ERP has the document: delivered, its id stored, the invoice posted (or the customer's ERP id set)."""
    message = OutboxMessage.objects.select_for_update().get(pk=message_id)
    if message.status == Status.DELIVERED:
        return "delivered"  # another worker (whose lease ran out on us) finished first
    reason = f"ERP acknowledged {message.idempotency_key} as {result.erp_id}"
    if message.status == Status.DEAD:
        apply_transition(message, "retry", user=None, reason="The ERP had it after all")
    apply_transition(message, "mark_delivered", user=None, reason=reason)
    message.external_id = result.erp_id
    message.delivered_at = timezone.now()
    message.locked_until = None
    message.next_attempt_at = None
    message.last_status_code = result.status_code
    message.save()
    if message.invoice_id:
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=message.invoice_id)
        if invoice.status == Invoice.Status.APPROVED:
            from billing.services.posting import invoice_mark_posted

            invoice_mark_posted(invoice=invoice, erp_id=result.erp_id, user=None, reason=reason)
        elif invoice.erp_id != result.erp_id:
            invoice.erp_id = result.erp_id
            save_audited(invoice, user=None, reason=reason)
    elif message.kind == Kind.UPSERT_CUSTOMER and message.client_id:
        client = Client.objects.select_for_update().get(pk=message.client_id)
        if client.erp_id != result.erp_id:
            client.erp_id = result.erp_id
            save_audited(client, user=None, reason=reason)
    hook = DELIVERY_HOOKS.get(message.kind)
    if hook is not None:
        hook(message, result)
    logger.info("outbox: %s delivered as %s", message.idempotency_key, result.erp_id)
    return "delivered"


@transaction.atomic
def _record_failure(message_id: int, lease: datetime.datetime, error: ErpError) -> str:
    """An attempt failed: retry later with backoff (Retry-After honoured), or the dead letter."""
    message = OutboxMessage.objects.select_for_update().get(pk=message_id)
    if message.status not in (Status.PENDING, Status.FAILED) or message.locked_until != lease:
        return "skipped"  # our lease ran out and another worker took over: it decides
    now = timezone.now()
    message.attempts += 1
    message.last_error = f"{error.outcome}: {error.message}"[:4000]
    message.last_status_code = error.status_code
    message.locked_until = None
    note = f"Attempt {message.attempts}: {error.outcome}, {error.message}"[:1000]
    if error.outcome == Outcome.PERMANENT or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        apply_transition(message, "mark_dead", user=None, reason=note)
        message.next_attempt_at = None
        outcome = "dead"
    else:
        delay = backoff_delay(message.attempts)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        message.next_attempt_at = now + datetime.timedelta(seconds=delay)
        apply_transition(message, "mark_failed", user=None, reason=note)
        outcome = "failed"
    message.save()
    logger.warning("outbox: %s %s (%s)", message.idempotency_key, outcome, error.message)
    return outcome


def outbox_sweep(*, batch: int | None = None) -> int:
    """Queue the messages that are due: failed ones whose retry time came, pending ones whose task was lost.

    Run every minute (django-q2 schedule). A queued message's `next_attempt_at` moves a grace period
    ahead, so the next sweeps leave it alone while its task waits (and queue it again if the task was
    lost); the task carries the attempt count as its token, which lets it claim the message before that
    time while a stale task of an earlier attempt cannot. It tops the broker's queue up to `batch`, never
    piling onto a backlog.
    """
    batch = batch or getattr(settings, "OUTBOX_SWEEP_BATCH", 500)
    try:
        from django_q.brokers import get_broker

        batch -= get_broker().queue_size() or 0
    except Exception:  # noqa: S110 - no broker size known: sweep the batch
        pass
    if batch <= 0:
        return 0
    now = timezone.now()
    for pk in OutboxMessage.objects.filter(
        status__in=[Status.PENDING, Status.FAILED], locked_until__lt=now
    ).values_list("pk", flat=True)[:batch]:
        _release_expired_lease(pk, now)
    grace = datetime.timedelta(seconds=settings.OUTBOX_SWEEP_GRACE_S)
    due = list(
        OutboxMessage.objects.filter(status__in=[Status.PENDING, Status.FAILED])
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lt=now - grace))
        .order_by(Coalesce("next_attempt_at", "created_at"), "id")
        .values_list("pk", "next_attempt_at", "attempts")[:batch]
    )
    queued = 0
    for pk, seen, attempts in due:
        if OutboxMessage.objects.filter(pk=pk, next_attempt_at=seen, attempts=attempts).update(
            next_attempt_at=now + grace
        ):
            enqueue_delivery(pk, attempts)
            queued += 1
    if queued:
        logger.info("outbox: sweep queued %s due message(s)", queued)
    return queued


@transaction.atomic
def _release_expired_lease(message_id: int, now: datetime.datetime) -> None:
    """The worker holding the message died mid-attempt: count the attempt as unclear, retry it now."""
    message = OutboxMessage.objects.select_for_update(skip_locked=True).filter(
        pk=message_id, status__in=[Status.PENDING, Status.FAILED], locked_until__lt=now
    ).first()
    if message is None:
        return
    message.attempts += 1
    message.last_error = "unclear: the worker delivering it stopped before recording the outcome"
    message.locked_until = None
    message.next_attempt_at = now
    if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        apply_transition(message, "mark_dead", user=None, reason=message.last_error)
        message.next_attempt_at = None
    else:
        apply_transition(message, "mark_failed", user=None, reason=message.last_error)
    message.save()


# =====================================================================================================
# Dead letters
# =====================================================================================================

RETRY_ROLES = FINANCE_ROLES


def can_retry_dead_letters(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or has_any_role(user, RETRY_ROLES)


@transaction.atomic
def outbox_retry_dead(*, message: OutboxMessage, user: Any, reason: str) -> OutboxMessage:
    """Finance sends a dead letter again: `dead → pending`, attempts reset, who and why in the transition log.

    The retry looks the document up first (attempts were made), so a document the ERP did store
    in the end is marked delivered, not sent twice.
    """
    if not can_retry_dead_letters(user):
        raise PermissionDeniedError("Only finance may retry dead letters.")
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why the message is retried (e.g. the ERP is back).", code="reason_required",
                               field_errors={"reason": ["A reason is required."]})
    locked = OutboxMessage.objects.select_for_update().get(pk=message.pk)
    if locked.status != Status.DEAD:
        raise InvalidTransitionError(f"Message {locked.idempotency_key} is {locked.get_status_display().lower()}, "
                                     "not a dead letter.")
    apply_transition(locked, "retry", user=user, reason=reason)
    locked.attempts = 0  # (its last_error stays: the first attempt of the retry looks the document up)
    locked.next_attempt_at = None
    locked.locked_until = None
    locked.save()
    _enqueue_after_commit(locked)
    message.refresh_from_db()
    return locked
