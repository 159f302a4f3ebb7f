"""What a client contact does in the customer portal: dispute lines, add to a dispute, sign off a milestone.

Each service checks the record is their company's (never trust the URL), then calls the owning app's
service (a dispute goes through `disputes.services.disputes.dispute_open`, so it lands in finance's queue and
holds only the disputed amount), audits as the contact's own user and e-mails the owner.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, InvoiceLine, Milestone
from customers import notify
from customers.models import ClientContact, MilestoneSignoff
from disputes.models import Dispute, DisputeNote
from disputes.services.disputes import dispute_add_note, dispute_open
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import ZERO, round_money
from kernel.roles import FINANCE_ANALYST

SOURCE = "customer"
MAX_ATTACHMENT = 10 * 1024 * 1024


def _mine(contact: ClientContact, client_id: int, what: str) -> None:
    if not contact.is_active or client_id != contact.client_id:
        raise PermissionDeniedError(f"This {what} is not one of your company's.")


def default_dispute_owner() -> Any:
    """Who owns a dispute a client raises: the first active finance analyst (then the queue reassigns)."""
    users = get_user_model().objects.filter(is_active=True)
    owner = users.filter(groups__name=FINANCE_ANALYST).order_by("username").first()
    return owner or users.filter(is_superuser=True).order_by("username").first()


def _gross(invoice: Invoice, net: Decimal) -> Decimal:
    gross = net if not invoice.subtotal else round_money(net * invoice.total / invoice.subtotal, invoice.currency)
    return min(gross, invoice.balance)


@transaction.atomic
def customer_dispute_open(
    *,
    contact: ClientContact,
    invoice: Invoice,
    lines: list[tuple[InvoiceLine, Decimal]],
    category: str,
    description: str,
    attachments: list[UploadedFile] | None = None,
) -> Dispute:
    """Dispute the ticked lines of one of the client's invoices (the disputed amount: those lines with tax)."""
    _mine(contact, invoice.client_id, "invoice")
    if not lines:
        raise ApplicationError("Tick the lines you dispute.", field_errors={"lines": ["Tick at least one line."]})
    description = (description or "").strip()
    if not description:
        raise ApplicationError("Tell us what is wrong.", field_errors={"description": ["Required."]})
    for upload in attachments or []:
        if upload.size > MAX_ATTACHMENT:
            raise ApplicationError(f"{upload.name} is larger than 10 MB.", field_errors={"attachments": ["≤ 10 MB."]})
    owner = default_dispute_owner()
    if owner is None:
        raise ApplicationError("Disputes cannot be received right now; please e-mail us.", code="no_owner")
    net = sum((amount for _line, amount in lines), ZERO)
    dispute = dispute_open(
        invoice=invoice,
        category=category,
        disputed_amount=_gross(invoice, net),
        user=contact.user,
        owner=owner,
        customer_reference=f"Portal: {contact.name}",
        description=description,
        lines=lines,
        source=SOURCE,
    )
    for upload in attachments or []:
        dispute_add_note(
            dispute=dispute,
            user=contact.user,
            text=f"Attachment from {contact.name}: {upload.name}",
            attachment=upload,
            source=SOURCE,
        )
    link = notify.portal_base_url() + reverse("disputes:dispute_detail", args=[dispute.pk])
    transaction.on_commit(
        lambda: notify.send(
            [owner.email],
            f"Dispute {dispute.pk} raised by {contact.client.legal_name} on {invoice.number}",
            f"{contact.name} ({contact.email}) disputes {len(lines)} line(s) of {invoice.number}: "
            f"{dispute.disputed_amount} {dispute.currency} held.\n\n{description}\n\n{link}\n",
        )
    )
    return dispute


@transaction.atomic
def customer_dispute_note(
    *, contact: ClientContact, dispute: Dispute, text: str, attachment: UploadedFile | None = None
) -> DisputeNote:
    _mine(contact, dispute.invoice.client_id, "dispute")
    if attachment is not None and attachment.size > MAX_ATTACHMENT:
        raise ApplicationError("At most 10 MB.", field_errors={"attachment": ["≤ 10 MB."]})
    note = dispute_add_note(dispute=dispute, user=contact.user, text=text, attachment=attachment, source=SOURCE)
    owner = dispute.owner
    transaction.on_commit(
        lambda: notify.send([owner.email], f"Dispute {dispute.pk}: a note from {contact.name}", f"{text}\n")
    )
    return note


@transaction.atomic
def milestone_signoff(
    *, contact: ClientContact, milestone: Milestone, ip: str | None, comment: str = ""
) -> MilestoneSignoff:
    """The client signs off a completed milestone of a contract that requires it; then it may be approved."""
    milestone = (
        Milestone.objects.select_for_update(of=("self",))
        .select_related("project", "project__contract")
        .get(pk=milestone.pk)
    )
    contract = milestone.project.contract
    _mine(contact, contract.client_id, "milestone")
    if not contract.requires_customer_signoff:
        raise ApplicationError(f"Contract {contract.code} needs no sign-off.", code="no_signoff_needed")
    if milestone.status != Milestone.Status.COMPLETED:
        raise ApplicationError(
            f"Milestone {milestone.name} is {milestone.get_status_display().lower()}; only a "
            "completed milestone is signed off.",
            code="invalid_transition",
        )
    if MilestoneSignoff.objects.filter(milestone=milestone).exists():
        raise ConflictError(f"Milestone {milestone.name} is signed off already.", code="already_signed_off")
    signoff = MilestoneSignoff.objects.create(
        milestone=milestone,
        contact=contact,
        signed_at=timezone.now(),
        signer_ip=ip or None,
        comment=(comment or "").strip(),
    )
    save_audited(milestone, user=contact.user, reason=f"Signed off by the client ({contact.name})")
    owners = notify.owners_of_contract(contract)
    transaction.on_commit(
        lambda: notify.send(
            owners,
            f"Milestone {milestone.name} signed off by {contact.client.legal_name}",
            f"{contact.name} signed off milestone {milestone} on {signoff.signed_at:%Y-%m-%d %H:%M} UTC. "
            "It can now be approved for billing.\n",
        )
    )
    return signoff
