"""Reads of the customer portal. Every read starts from the contact's client: a contact never reaches
another client's records (an object of another client is simply not found: 404)."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone

from billing.models import ChangeOrder, Invoice, InvoiceLine, Milestone
from customers.models import ClientContact, MilestoneSignoff, SignatureEnvelope, SignedDocument
from disputes.models import Dispute, DisputeNote
from disputes.selectors.collections import ClientStatement, client_statement
from disputes.selectors.disputes import dispute_timeline

S = Invoice.Status
#: What a client sees: issued and posted documents (an approved invoice not yet posted is still ours).
VISIBLE = (S.POSTED, S.SENT, S.PARTIALLY_PAID, S.PAID, S.DISPUTED, S.CREDITED)
OPEN = (S.POSTED, S.SENT, S.PARTIALLY_PAID, S.DISPUTED)
LIVE_DISPUTE = (Dispute.Status.OPEN, Dispute.Status.INVESTIGATING)


def contact_for_user(user: Any) -> ClientContact | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return ClientContact.objects.select_related("client").filter(user_id=user.pk, is_active=True).first()


def documents(contact: ClientContact) -> QuerySet[Invoice]:
    return Invoice.objects.filter(client_id=contact.client_id, number__isnull=False, status__in=VISIBLE)


@dataclass
class InvoiceLists:
    open: list[Invoice]
    paid: list[Invoice]
    credit_notes: list[Invoice]


def invoice_lists(contact: ClientContact) -> InvoiceLists:
    rows = list(documents(contact).select_related("credit_of").order_by("-issue_date", "-id")[:500])
    invoices = [i for i in rows if i.kind == Invoice.Kind.INVOICE]
    return InvoiceLists(
        open=[i for i in invoices if i.status in OPEN],
        paid=[i for i in invoices if i.status not in OPEN],
        credit_notes=[i for i in rows if i.kind == Invoice.Kind.CREDIT_NOTE],
    )


def contact_invoice(contact: ClientContact, pk: int) -> Invoice:
    invoice = documents(contact).select_related("client", "credit_of").filter(pk=pk).first()
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


def invoice_lines(invoice: Invoice) -> list[InvoiceLine]:
    return list(invoice.lines.order_by("position"))


def live_dispute(invoice: Invoice) -> Dispute | None:
    return Dispute.objects.filter(invoice=invoice, status__in=LIVE_DISPUTE).first()


def statement(contact: ClientContact, *, as_of: datetime.date | None = None) -> ClientStatement:
    as_of = as_of or timezone.localdate()
    return client_statement(client=contact.client, as_of=as_of, since=as_of - datetime.timedelta(days=365))


def contact_disputes(contact: ClientContact) -> list[Dispute]:
    return list(
        Dispute.objects.filter(invoice__client_id=contact.client_id)
        .select_related("invoice", "owner")
        .order_by("-opened_at")[:200]
    )


def contact_dispute(contact: ClientContact, pk: int) -> Dispute:
    dispute = (
        Dispute.objects.filter(pk=pk, invoice__client_id=contact.client_id)
        .select_related("invoice", "owner", "opened_by")
        .prefetch_related("lines__invoice_line")
        .first()
    )
    if dispute is None:
        raise Http404("No such dispute.")
    return dispute


def dispute_notes(contact: ClientContact, dispute: Dispute) -> list[DisputeNote]:
    """The messages the client's contacts wrote; finance's notes are internal (call logs, evidence)."""
    return list(
        dispute.notes.filter(author__client_contact__client_id=contact.client_id)
        .select_related("author")
        .order_by("created_at", "id")
    )


def dispute_history(dispute: Dispute) -> list[Any]:
    """The dispute's state changes (opened, investigating, resolved …), newest first; no internal notes."""
    return [entry for entry in dispute_timeline(dispute) if entry.kind == "transition"]


def contact_note(contact: ClientContact, pk: int) -> DisputeNote:
    note = DisputeNote.objects.filter(
        pk=pk, dispute__invoice__client_id=contact.client_id, author__client_contact__client_id=contact.client_id
    ).first()
    if note is None or not note.attachment:
        raise Http404("No such attachment.")
    return note


# --- change orders and milestones -------------------------------------------------------------------


def contact_change_orders(contact: ClientContact) -> list[ChangeOrder]:
    """Change orders of the client's contracts that were submitted (or decided): the ones a client signs."""
    return list(
        ChangeOrder.objects.filter(contract__client_id=contact.client_id)
        .exclude(status=ChangeOrder.Status.DRAFT)
        .select_related("contract")
        .annotate(signed=Exists(SignedDocument.objects.filter(change_order_id=OuterRef("pk"))))
        .order_by("-created_at", "-id")[:200]
    )


def contact_change_order(contact: ClientContact, pk: int) -> ChangeOrder:
    change_order = (
        ChangeOrder.objects.filter(pk=pk, contract__client_id=contact.client_id)
        .exclude(status=ChangeOrder.Status.DRAFT)
        .select_related("contract", "contract__client")
        .first()
    )
    if change_order is None:
        raise Http404("No such change order.")
    return change_order


def signed_document(change_order: ChangeOrder) -> SignedDocument | None:
    return SignedDocument.objects.filter(change_order=change_order).select_related("envelope").first()


def live_envelope(change_order: ChangeOrder) -> SignatureEnvelope | None:
    return SignatureEnvelope.objects.filter(change_order=change_order, status=SignatureEnvelope.Status.SENT).first()


def change_order_is_signed(change_order: ChangeOrder) -> bool:
    """The seam's answer: a signed document whose bytes still hash to the recorded SHA-256."""
    document = (
        SignedDocument.objects.filter(change_order_id=change_order.pk, envelope__status=SignatureEnvelope.Status.SIGNED)
        .only("content", "sha256")
        .first()
    )
    return document is not None and hashlib.sha256(bytes(document.content)).hexdigest() == document.sha256


def contact_milestones(contact: ClientContact) -> list[Milestone]:
    """Milestones of contracts that require the client's sign-off: completed ones wait for it."""
    return list(
        Milestone.objects.filter(
            project__contract__client_id=contact.client_id, project__contract__requires_customer_signoff=True
        )
        .exclude(status=Milestone.Status.PLANNED)
        .select_related("project", "project__contract")
        .annotate(signed_off=Exists(MilestoneSignoff.objects.filter(milestone_id=OuterRef("pk"))))
        .order_by("status", "due_date", "id")[:200]
    )


def contact_milestone(contact: ClientContact, pk: int) -> Milestone:
    milestone = (
        Milestone.objects.filter(
            pk=pk, project__contract__client_id=contact.client_id, project__contract__requires_customer_signoff=True
        )
        .select_related("project", "project__contract")
        .first()
    )
    if milestone is None:
        raise Http404("No such milestone.")
    return milestone


def milestone_is_signed_off(milestone: Milestone) -> bool:
    return MilestoneSignoff.objects.filter(milestone_id=milestone.pk).exists()
