"""Customer delivery of issued invoices and credit notes, per the client's channel, with a delivery log.

Channels (`Client.delivery_channel`, ADR 0070): e-mail (below), Peppol through the access-point
provider (`billing.access_point`: the stored, validated UBL e-invoice — an XRechnung for German public
buyers — goes to the client's Peppol participant id; the provider's signed delivery receipt or
rejection comes back through `peppol_receipt_apply`), or the customer portal (the documents are
issued and published; the portal serves the stored bytes).

Once an invoice is `posted` (the ERP acknowledged it, or at once without an ERP),
`schedule_delivery` queues a django-q2 task after commit; the task calls
`invoice_deliver`, which e-mails the stored PDF (and the UBL e-invoice when the
client wants e-invoices) to the client's billing addresses through Django's
e-mail backend. Every attempt is a `DeliveryAttempt` row (to, when, message id,
result). A failure opens a `DELIVERY_FAILED` exception for finance (the exception
queue's "after issue" section); a later successful send (a resend from the invoice
page, or the task's retry) resolves it. The first successful delivery moves the
invoice `posted → sent`.

The e-mail is sent outside any database transaction and recorded right after: a
crash between the two can at worst send one e-mail twice, never lose the record
of a failure. The task itself does nothing when a successful first delivery is
already logged, so a retried task does not e-mail the customer again.
"""

from __future__ import annotations

import datetime
import functools
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import make_msgid
from django.db import transaction
from django.utils import timezone

from billing.access_point import AccessPointError, PeppolError, Transmission, access_point
from billing.models import Client, DeliveryAttempt, Invoice, InvoiceDocument, InvoiceException
from billing.peppol import endpoint_for
from billing.services.documents import invoice_document, invoice_documents_render
from kernel.audit import save_audited
from kernel.errors import ApplicationError
from kernel.money import round_money
from kernel.workflow import apply_transition

logger = logging.getLogger(__name__)
Status = Invoice.Status

#: Statuses in which an issued document may be (re)sent to the customer.
DELIVERABLE = (Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.PAID, Status.DISPUTED, Status.CREDITED)
DELIVERY_FAILED = "DELIVERY_FAILED"
FIRST_DELIVERY = "First delivery"
Channel = DeliveryAttempt.Channel
FIX_HINTS = {
    Channel.EMAIL: "Fix the client's billing e-mail addresses or the mail server, then resend.",
    Channel.PEPPOL: "Read the Peppol error codes: fix the client's Peppol id or master data (or the access "
    "point's set-up), then resend; or switch the client to e-mail.",
    Channel.PORTAL: "Fix the cause of the failure, then resend.",
}


def schedule_delivery(*, invoice: Invoice) -> None:
    """After commit, e-mail the posted invoice to the client's billing addresses (django-q2 task)."""
    from django_q.tasks import async_task

    transaction.on_commit(
        functools.partial(
            async_task,
            "billing.tasks.deliver_invoice_task",
            invoice.pk,
            task_name=f"deliver-invoice-{invoice.pk}",
            group="deliveries",
        )
    )


def already_delivered(invoice: Invoice) -> bool:
    return invoice.delivery_attempts.filter(result=DeliveryAttempt.Result.SENT).exists()


def _message(invoice: Invoice, recipients: list[str]) -> tuple[EmailMessage, list[str]]:
    """The e-mail with its attachments, rendered from the stored (immutable) documents."""
    entity, client = invoice.entity, invoice.client
    is_credit = invoice.kind == Invoice.Kind.CREDIT_NOTE
    what = "Credit note" if is_credit else "Invoice"
    amount = f"{round_money(invoice.total, invoice.currency):,} {invoice.currency}"
    lines = [
        f"Dear {client.legal_name},",
        "",
        f"please find attached {what.lower()} {invoice.number} of {invoice.issue_date:%d %B %Y} for {amount}.",
    ]
    if is_credit and invoice.credit_of_id:
        lines.append(f"It credits invoice {invoice.credit_of.number}.")
    elif not is_credit:
        lines.append(f"It is due on {invoice.due_date:%d %B %Y}; please quote {invoice.number} with your payment.")
        if entity.iban:
            bic = f" · BIC {entity.bic}" if entity.bic else ""
            lines.append(f"Bank: {entity.bank_name} · IBAN {entity.iban}{bic}")
    if invoice.po_number:
        lines.append(f"Your purchase order: {invoice.po_number}.")
    lines += ["", "Kind regards,", entity.name]
    domain = getattr(settings, "EMAIL_MESSAGE_ID_DOMAIN", "") or "billable.local"
    message = EmailMessage(
        subject=f"{what} {invoice.number} from {entity.name}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Message-ID": make_msgid(idstring=f"invoice-{invoice.pk}", domain=domain)},
    )
    names = []
    kinds = [InvoiceDocument.Kind.PDF]
    if client.einvoice_by_email:
        kinds.append(InvoiceDocument.Kind.UBL)
    for kind in kinds:
        document = invoice_document(invoice=invoice, kind=kind)
        message.attach(document.filename, bytes(document.content), document.content_type)
        names.append(document.filename)
    return message, names


def invoice_deliver(*, invoice: Invoice, user: Any = None, reason: str = FIRST_DELIVERY) -> DeliveryAttempt:
    """Deliver an issued invoice or credit note now by the client's channel and log the attempt;
    `posted → sent` on the first success."""
    invoice = Invoice.objects.select_related("client", "entity", "credit_of").get(pk=invoice.pk)
    if invoice.status not in DELIVERABLE or not invoice.number:
        raise ApplicationError(
            f"{invoice.display_number} is {invoice.get_status_display().lower()}: only posted invoices are sent.",
            code="not_deliverable",
        )
    channel = invoice.client.delivery_channel
    if channel == Client.DeliveryChannel.PEPPOL:
        return _deliver_peppol(invoice, user=user, reason=reason)
    if channel == Client.DeliveryChannel.PORTAL:
        return _deliver_portal(invoice, user=user, reason=reason)
    recipients = invoice.client.billing_email_list
    message_id, error, attachments = "", "", []
    if not recipients:
        error = f"Client {invoice.client.code} has no billing e-mail address."
    else:
        try:
            message, attachments = _message(invoice, recipients)
            message_id = message.extra_headers["Message-ID"]
            message.send(fail_silently=False)
        except ApplicationError as exc:  # e.g. an e-invoice that fails validation: nothing is sent
            error = exc.message
        except Exception as exc:  # the mail server's refusal or absence is the finding to record
            error = f"{type(exc).__name__}: {exc}"
    return _record(invoice, user=user, reason=reason, to=", ".join(recipients), message_id=message_id,
                   error=error, attachments=attachments)


def _deliver_peppol(invoice: Invoice, *, user: Any, reason: str) -> DeliveryAttempt:
    """Hand the validated UBL e-invoice to the access point, addressed to the client's Peppol id."""
    client, entity = invoice.client, invoice.entity
    receiver = client.peppol_id.strip()
    sender = endpoint_for(peppol_id=entity.peppol_id, vat_id=entity.vat_id, country=entity.country)
    transmission_id, error, attachments = "", "", []
    try:
        if not receiver:
            raise ApplicationError(f"Client {client.code} has no Peppol participant id.")
        if sender is None:
            raise ApplicationError(f"Entity {entity.code} has no Peppol electronic address.")
        document = invoice_document(invoice=invoice, kind=InvoiceDocument.Kind.UBL)
        attachments = [document.filename]
        transmission = access_point().send(
            document=bytes(document.content), sender=str(sender), receiver=receiver,
            document_type="credit_note" if invoice.kind == Invoice.Kind.CREDIT_NOTE else "invoice",
            idempotency_key=f"billable-{invoice.pk}-{uuid.uuid4().hex}",
        )
        transmission_id = transmission.id
    except ApplicationError as exc:
        error = exc.message
    except AccessPointError as exc:
        error = exc.message + "".join(f"\n{e}" for e in exc.errors)
    return _record(invoice, user=user, reason=reason, to=f"Peppol {receiver}" if receiver else "Peppol",
                   message_id=transmission_id, error=error, attachments=attachments, channel=Channel.PEPPOL)


def _deliver_portal(invoice: Invoice, *, user: Any, reason: str) -> DeliveryAttempt:
    """Issue the documents for the customer portal, which serves the stored bytes."""
    error, attachments = "", []
    try:
        documents = invoice_documents_render(invoice=invoice)
        attachments = [d.filename for d in documents.values()]
    except ApplicationError as exc:
        error = exc.message
    return _record(invoice, user=user, reason=reason, to=f"Customer portal ({invoice.client.code})",
                   message_id="", error=error, attachments=attachments, channel=Channel.PORTAL)


@transaction.atomic
def _record(invoice: Invoice, *, user: Any, reason: str, to: str, message_id: str, error: str,
            attachments: list[str], channel: str = Channel.EMAIL) -> DeliveryAttempt:
    invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)
    actor = user if getattr(user, "pk", None) else None
    now = timezone.now()
    attempt = DeliveryAttempt.objects.create(
        invoice=invoice,
        to=to,
        attempted_at=now,
        message_id=message_id if not error else "",
        result=DeliveryAttempt.Result.FAILED if error else DeliveryAttempt.Result.SENT,
        error=error,
        attachments=attachments,
        triggered_by=actor,
        reason=reason[:300],
        channel=channel,
    )
    open_failures = InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED,
                                                    state=InvoiceException.State.OPEN)
    if error:
        logger.warning("Delivery of %s failed: %s", invoice.number, error)
        _open_failure(invoice, actor=actor, channel=channel, to=to, error=error)
        return attempt
    for exception in open_failures:
        exception.state = InvoiceException.State.RESOLVED
        exception.resolved_by = actor
        exception.resolved_at = now
        exception.resolution_reason = f"Delivered to {to} ({message_id})"
        save_audited(exception, user=actor, reason="Delivered")
    if invoice.status == Status.POSTED:
        how = {Channel.EMAIL: "E-mailed to", Channel.PEPPOL: "Sent over", Channel.PORTAL: "Published in the"}[channel]
        apply_transition(invoice, "mark_sent", user=actor, reason=f"{how} {to}", label=invoice.number)
        save_audited(invoice, user=actor, reason=f"Sent to {to}")
    logger.info("Delivered %s to %s (%s)", invoice.number, to, message_id)
    return attempt


def _open_failure(invoice: Invoice, *, actor: Any, channel: str, to: str, error: str) -> None:
    """One open DELIVERY_FAILED finding per invoice: repeated failures add attempts, not findings."""
    if InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED,
                                       state=InvoiceException.State.OPEN).exists():
        return
    what = {Channel.EMAIL: "E-mail", Channel.PEPPOL: "Peppol delivery", Channel.PORTAL: "Portal publication"}[channel]
    exception = InvoiceException(
        invoice=invoice,
        code=DELIVERY_FAILED,
        severity=InvoiceException.Severity.WARNING,
        message=f"{what} to {to or 'the client'} failed: {error}"[:2000],
        fix_hint=FIX_HINTS[channel],
    )
    save_audited(exception, user=actor, reason="Delivery failed")


def peppol_receipt_apply(*, transmission_id: str, status: str, errors: list[PeppolError],
                         at: datetime.datetime | None = None) -> DeliveryAttempt | None:
    """Record the access point's delivery receipt (or rejection) on its attempt; a rejection, with its Peppol
    error codes, is a failed delivery for the exception queue. Idempotent: the same receipt twice changes
    nothing. None when no Peppol attempt has this transmission id."""
    with transaction.atomic():
        attempt = (
            DeliveryAttempt.objects.select_for_update()
            .filter(channel=Channel.PEPPOL, message_id=transmission_id).order_by("id").first()
        )
        if attempt is None:
            logger.warning("Peppol receipt for unknown transmission %s", transmission_id)
            return None
        if status not in (DeliveryAttempt.Receipt.DELIVERED, DeliveryAttempt.Receipt.REJECTED):
            return attempt  # still on its way
        if attempt.receipt:
            return attempt  # a receipt is final; a repeated one changes nothing
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=attempt.invoice_id)
        attempt.receipt = status
        attempt.receipt_at = at or timezone.now()
        attempt.receipt_detail = "\n".join(str(e) for e in errors)[:5000]
        fields = ["receipt", "receipt_at", "receipt_detail"]
        if status == DeliveryAttempt.Receipt.REJECTED:
            codes = ", ".join(e.code for e in errors) or "no reason given"
            attempt.result = DeliveryAttempt.Result.FAILED
            attempt.error = f"Rejected on the Peppol network: {codes}"
            fields += ["result", "error"]
            _open_failure(invoice, actor=None, channel=Channel.PEPPOL, to=attempt.to,
                          error=f"rejected ({attempt.receipt_detail or codes})")
        attempt.save(update_fields=fields)
    logger.info("Peppol receipt for %s (%s): %s", invoice.number, transmission_id, status)
    return attempt


def peppol_status_refresh(*, attempt: DeliveryAttempt) -> DeliveryAttempt | None:
    """Ask the access point where a transmission is (when a receipt webhook got lost) and apply the answer."""
    if attempt.channel != Channel.PEPPOL or not attempt.message_id or attempt.receipt:
        return attempt
    try:
        transmission: Transmission = access_point().status(attempt.message_id)
    except AccessPointError as exc:
        logger.warning("Peppol status of %s unavailable: %s", attempt.message_id, exc.message)
        return attempt
    return peppol_receipt_apply(transmission_id=transmission.id, status=transmission.status,
                                errors=transmission.errors)
