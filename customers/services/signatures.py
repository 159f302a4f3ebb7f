"""Signatures of change orders: send for signature, click-to-sign in the portal, e-signature webhooks
(docs/rules/customers.md, ADR 0096/0097).

A signature is recorded once, as a `SignedDocument` (the PDF with its certificate page, its SHA-256,
who, when, from where). Billing's change-order approval asks the signature seam (`billing.signatures`)
whether one exists; a contract that requires signed change orders refuses approval until then.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from billing import rules as billing_rules
from billing.models import ChangeOrder
from customers import documents, notify
from customers.esign.adapter import ESignatureError, get_adapter, verify_webhook
from customers.models import ClientContact, SignatureEnvelope, SignedDocument, WebhookReceipt
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.workflow import apply_transition

Provider = SignatureEnvelope.Provider
Status = SignatureEnvelope.Status


def _label(change_order: ChangeOrder) -> str:
    return f"change order {change_order.contract.code}/{change_order.code}"


def can_send(user: Any, change_order: ChangeOrder) -> bool:
    """Whoever may decide the change order (a manager of one of its projects, a finance controller), or a superuser."""
    return bool(getattr(user, "is_superuser", False)) or billing_rules.can_reject_change_order.test(user, change_order)


@transaction.atomic
def envelope_send(*, change_order: ChangeOrder, contact: ClientContact, provider: str, user: Any) -> SignatureEnvelope:
    """Send a submitted change order to a contact of its client: in the portal, or through the e-signature provider."""
    change_order = (
        ChangeOrder.objects.select_for_update(of=("self",))
        .select_related("contract", "contract__client", "contract__entity")
        .get(pk=change_order.pk)
    )
    if not can_send(user, change_order):
        raise PermissionDeniedError(
            f"Only a manager of contract {change_order.contract.code}'s projects or a finance controller sends its "
            "change orders for signature."
        )
    if provider not in Provider.values:
        raise ApplicationError(f"Unknown signature provider {provider!r}.")
    if change_order.status != ChangeOrder.Status.SUBMITTED:
        raise ApplicationError(
            f"Only a submitted change order is sent for signature; {_label(change_order)} is "
            f"{change_order.get_status_display().lower()}.",
            code="invalid_transition",
        )
    if contact.client_id != change_order.contract.client_id or not contact.is_active:
        raise ApplicationError(
            "The signer must be an active contact of the contract's client.",
            field_errors={"contact": ["Not a contact of this client."]},
        )
    if SignedDocument.objects.filter(change_order=change_order).exists():
        raise ConflictError(f"{_label(change_order)} is signed already.", code="already_signed")
    if SignatureEnvelope.objects.filter(change_order=change_order, status=Status.SENT).exists():
        raise ConflictError(f"{_label(change_order)} is out for signature already.", code="envelope_live")
    pdf = documents.change_order_pdf(change_order)
    envelope = SignatureEnvelope(
        change_order=change_order,
        contact=contact,
        provider=provider,
        document=pdf,
        document_sha256=documents.sha256(pdf),
        sent_by=user,
        sent_at=timezone.now(),
    )
    if provider == Provider.ESIGN:
        callback = notify.portal_base_url() + reverse("customers:esign_webhook")
        envelope.external_id = get_adapter().send_envelope(
            document=pdf,
            name=f"Change order {change_order}",
            recipient_email=contact.email,
            recipient_name=contact.name,
            callback_url=callback,
            expires_in_days=int(getattr(settings, "ESIGN_EXPIRES_IN_DAYS", 14)),
        )
    save_audited(envelope, user=user, reason=f"Sent for signature to {contact.email} ({provider})")
    save_audited(change_order, user=user, reason=f"Sent for signature to {contact.email}")
    transaction.on_commit(
        lambda: notify.send(
            [contact.email],
            f"Please sign change order {change_order}",
            f"Hello {contact.name},\n\nChange order {change_order} awaits your signature"
            + (
                " in the customer portal:\n"
                + notify.portal_base_url()
                + reverse("customers:change_order", args=[change_order.pk])
                if provider == Provider.PORTAL
                else " (you will receive the provider's e-mail)."
            )
            + "\n",
        )
    )
    return envelope


def _record(
    envelope: SignatureEnvelope,
    *,
    content: bytes,
    original: bytes | None,
    signer_name: str,
    signer_email: str,
    signer_ip: str | None,
    signed_at,
    actor: Any,
) -> SignedDocument:
    change_order = envelope.change_order
    if change_order.status != ChangeOrder.Status.SUBMITTED:
        raise ApplicationError(
            f"{_label(change_order)} is {change_order.get_status_display().lower()}; nothing to sign.",
            code="invalid_transition",
        )
    apply_transition(envelope, "sign", user=actor, reason="Signed", label=f"envelope {envelope.pk}")
    envelope.decided_at = signed_at
    save_audited(envelope, user=actor, reason=f"Signed by {signer_name}")
    try:
        with transaction.atomic():
            signed = SignedDocument.objects.create(
                change_order=change_order,
                envelope=envelope,
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
                original_sha256=envelope.document_sha256,
                signer_name=signer_name,
                signer_email=signer_email,
                signer_ip=signer_ip or None,
                signed_at=signed_at,
                method=envelope.provider,
            )
    except IntegrityError as exc:
        raise ConflictError(f"{_label(change_order)} is signed already.", code="already_signed") from exc
    change_order.signed_on = timezone.localdate(signed_at)
    save_audited(
        change_order,
        user=actor,
        reason=f"Signed by {signer_name} ({envelope.get_provider_display()}, sha256 {signed.sha256[:12]})",
    )
    owners = notify.owners_of_contract(change_order.contract)
    transaction.on_commit(
        lambda: notify.send(
            owners,
            f"Change order {change_order} signed by the client",
            f"{signer_name} signed change order {change_order} on {signed_at:%Y-%m-%d %H:%M} UTC. "
            "It can now be approved.\n",
        )
    )
    return signed


@transaction.atomic
def change_order_sign(
    *, contact: ClientContact, change_order: ChangeOrder, signer_name: str, agree: bool, ip: str | None
) -> SignedDocument:
    """The portal's click-to-sign: the contact types their name and agrees; the PDF gets a certificate page."""
    change_order = (
        ChangeOrder.objects.select_for_update(of=("self",))
        .select_related("contract", "contract__client", "contract__entity")
        .get(pk=change_order.pk)
    )
    if change_order.contract.client_id != contact.client_id:
        raise PermissionDeniedError("This change order is not one of your company's.")
    envelope = (
        SignatureEnvelope.objects.select_for_update().filter(change_order=change_order, status=Status.SENT).first()
    )
    if envelope is None or envelope.provider != Provider.PORTAL:
        raise ApplicationError(
            f"{_label(change_order)} is not awaiting a signature in the portal.", code="not_awaiting_signature"
        )
    if envelope.contact_id != contact.pk:
        raise PermissionDeniedError(f"{_label(change_order)} was sent to {envelope.contact.name} for signature.")
    signer_name = (signer_name or "").strip()
    if not signer_name:
        raise ApplicationError("Type your full name to sign.", field_errors={"signer_name": ["Required."]})
    if not agree:
        raise ApplicationError(
            "Tick the box to confirm you sign this change order.", field_errors={"agree": ["Required."]}
        )
    original = bytes(envelope.document)  # exactly what was sent for signature
    if documents.sha256(original) != envelope.document_sha256:
        raise ConflictError(
            f"{_label(change_order)}: the stored document differs from the one sent; ask for a new one.",
            code="document_changed",
        )
    now = timezone.now()
    content = documents.with_certificate(
        original,
        change_order=change_order,
        signer_name=signer_name,
        signer_email=contact.email,
        signer_ip=ip,
        signed_at=now,
        method="Customer portal click-to-sign",
        reference=f"envelope {envelope.pk}",
    )
    return _record(
        envelope,
        content=content,
        original=original,
        signer_name=signer_name,
        signer_email=contact.email,
        signer_ip=ip,
        signed_at=now,
        actor=contact.user,
    )


@transaction.atomic
def envelope_decline(*, contact: ClientContact, change_order: ChangeOrder, reason: str) -> SignatureEnvelope:
    envelope = (
        SignatureEnvelope.objects.select_for_update()
        .filter(change_order_id=change_order.pk, status=Status.SENT, contact=contact, provider=Provider.PORTAL)
        .first()
    )
    if envelope is None:
        raise ApplicationError("Nothing awaits your signature here.", code="not_awaiting_signature")
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why you decline.", field_errors={"reason": ["Required."]})
    apply_transition(envelope, "decline", user=contact.user, reason=reason, label=f"envelope {envelope.pk}")
    envelope.decided_at, envelope.detail = timezone.now(), reason
    save_audited(envelope, user=contact.user, reason=f"Declined: {reason}")
    owners = notify.owners_of_contract(change_order.contract)
    transaction.on_commit(
        lambda: notify.send(
            owners, f"Change order {change_order} declined by the client", f"{contact.name} declined: {reason}\n"
        )
    )
    return envelope


class WebhookRefused(ApplicationError):
    pass


@transaction.atomic
def esign_webhook_receive(*, body: bytes, signature: str) -> SignatureEnvelope:
    """A provider event: verified (HMAC, freshness), recorded once (a replay is refused), then applied.

    `envelope.signed`: the signed PDF is downloaded from the provider (never taken from the webhook) and stored.
    """
    try:
        event = verify_webhook(body, signature)
    except ESignatureError as exc:
        raise WebhookRefused(exc.message, code=exc.code) from exc
    envelope = (
        SignatureEnvelope.objects.select_for_update()
        .select_related("change_order", "change_order__contract", "contact")
        .filter(provider=Provider.ESIGN, external_id=str(event["envelope_id"]))
        .first()
    )
    if envelope is None:
        raise WebhookRefused("No such envelope.", code="unknown_envelope")
    try:
        with transaction.atomic():
            WebhookReceipt.objects.create(
                event_id=str(event["event_id"])[:100], envelope=envelope, event=str(event.get("event", ""))[:30]
            )
    except IntegrityError as exc:
        raise WebhookRefused("This event was received already (replay).", code="replayed") from exc
    kind = event.get("event")
    if envelope.status != Status.SENT:
        raise WebhookRefused(f"Envelope {envelope.pk} is {envelope.status} already.", code="envelope_closed")
    adapter = get_adapter()
    actual = adapter.status(envelope.external_id)  # ask the provider: the webhook only says "look"
    system = envelope.contact.user
    if kind == "envelope.signed" and actual == "signed":
        content = adapter.download_signed(envelope.external_id)
        if not content.startswith(b"%PDF"):
            raise WebhookRefused("The provider's signed document is not a PDF.", code="bad_document")
        signer = event.get("signer") or {}
        _record(
            envelope,
            content=content,
            original=None,
            signer_name=str(signer.get("name") or envelope.contact.name),
            signer_email=str(signer.get("email") or envelope.contact.email),
            signer_ip=None,
            signed_at=timezone.now(),
            actor=system,
        )
    elif kind == "envelope.declined" and actual == "declined":
        apply_transition(
            envelope, "decline", user=system, reason="Declined at the provider", label=f"envelope {envelope.pk}"
        )
        envelope.decided_at, envelope.detail = timezone.now(), str(event.get("reason", ""))[:1000]
        save_audited(envelope, user=system, reason="Declined at the e-signature provider")
    elif kind == "envelope.expired" and actual == "expired":
        apply_transition(envelope, "expire", user=system, reason="Expired", label=f"envelope {envelope.pk}")
        envelope.decided_at = timezone.now()
        save_audited(envelope, user=system, reason="Expired at the e-signature provider")
    else:
        raise WebhookRefused(f"Event {kind!r} does not match the provider's status {actual!r}.", code="status_mismatch")
    return envelope
