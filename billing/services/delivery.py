"""Customer delivery of issued invoices and credit notes by e-mail, with a delivery log (issue #7).

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

import functools
import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import make_msgid
from django.db import transaction
from django.utils import timezone

from billing.models import DeliveryAttempt, Invoice, InvoiceDocument, InvoiceException
from billing.services.documents import invoice_document
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
    """E-mail an issued invoice or credit note now and log the attempt; `posted → sent` on the first success."""
    invoice = Invoice.objects.select_related("client", "entity", "credit_of").get(pk=invoice.pk)
    if invoice.status not in DELIVERABLE or not invoice.number:
        raise ApplicationError(
            f"{invoice.display_number} is {invoice.get_status_display().lower()}: only posted invoices are sent.",
            code="not_deliverable",
        )
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


@transaction.atomic
def _record(invoice: Invoice, *, user: Any, reason: str, to: str, message_id: str, error: str,
            attachments: list[str]) -> DeliveryAttempt:
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
    )
    open_failures = InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED,
                                                    state=InvoiceException.State.OPEN)
    if error:
        logger.warning("Delivery of %s failed: %s", invoice.number, error)
        if not open_failures.exists():
            exception = InvoiceException(
                invoice=invoice,
                code=DELIVERY_FAILED,
                severity=InvoiceException.Severity.WARNING,
                message=f"E-mail to {to or 'the client'} failed: {error}",
                fix_hint="Fix the client's billing e-mail addresses or the mail server, then resend.",
            )
            save_audited(exception, user=actor, reason="Delivery failed")
        return attempt
    for exception in open_failures:
        exception.state = InvoiceException.State.RESOLVED
        exception.resolved_by = actor
        exception.resolved_at = now
        exception.resolution_reason = f"Delivered to {to} ({message_id})"
        save_audited(exception, user=actor, reason="Delivered")
    if invoice.status == Status.POSTED:
        apply_transition(invoice, "mark_sent", user=actor, reason=f"E-mailed to {to}", label=invoice.number)
        save_audited(invoice, user=actor, reason=f"Sent to {to}")
    logger.info("Delivered %s to %s (%s)", invoice.number, to, message_id)
    return attempt
