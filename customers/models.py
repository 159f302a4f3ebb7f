"""Client contacts (the customer portal's users), signature envelopes, signed documents and sign-offs.

A contact is a Django user bound to exactly one client; it logs in only through the customer
portal (its own authentication backend and session flag, `customers/auth.py`). Signed documents
and sign-offs are written once and never change (the model refuses, and on PostgreSQL a trigger).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from kernel.errors import ApplicationError


class ClientContact(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="client_contact")
    client = models.ForeignKey("billing.Client", on_delete=models.PROTECT, related_name="portal_contacts")
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    invited_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True, help_text="When the contact first set a password.")
    is_active = models.BooleanField(default=True, help_text="Off: the contact can no longer log in.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["client", "name"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}> ({self.client})"


class SignatureEnvelope(FSMModelMixin, models.Model):
    """A change order sent to a client contact for signature: in the portal (click-to-sign) or through a provider."""

    class Provider(models.TextChoices):
        PORTAL = "portal", "Customer portal (click-to-sign)"
        ESIGN = "esign", "E-signature provider"

    class Status(models.TextChoices):
        SENT = "sent", "Sent"
        SIGNED = "signed", "Signed"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Expired"
        VOIDED = "voided", "Voided"

    change_order = models.ForeignKey("billing.ChangeOrder", on_delete=models.PROTECT, related_name="envelopes")
    contact = models.ForeignKey(ClientContact, on_delete=models.PROTECT, related_name="envelopes")
    provider = models.CharField(max_length=10, choices=Provider.choices)
    external_id = models.CharField(max_length=100, blank=True, default="", help_text="The provider's envelope id.")
    document = models.BinaryField(default=b"", help_text="The PDF sent for signature, as sent.")
    document_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the document sent for signature.")
    status = FSMField(default=Status.SENT, choices=Status.choices, protected=True)
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    sent_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True, default="", help_text="Decline reason, expiry, provider message.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-sent_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"], condition=~Q(external_id=""), name="customers_envelope_external_id"
            ),
            models.UniqueConstraint(
                fields=["change_order"], condition=Q(status="sent"), name="customers_envelope_one_live_per_co"
            ),
        ]

    def __str__(self) -> str:
        return f"Envelope {self.pk} for {self.change_order_id} ({self.status})"

    @transition(field=status, source=Status.SENT, target=Status.SIGNED)
    def sign(self, by=None, description=None) -> None:
        pass

    @transition(field=status, source=Status.SENT, target=Status.DECLINED)
    def decline(self, by=None, description=None) -> None:
        pass

    @transition(field=status, source=Status.SENT, target=Status.EXPIRED)
    def expire(self, by=None, description=None) -> None:
        pass

    @transition(field=status, source=Status.SENT, target=Status.VOIDED)
    def void(self, by=None, description=None) -> None:
        pass


class WriteOnce(models.Model):
    """Written once: the model refuses an update or a delete (PostgreSQL triggers too, migration 0001)."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ApplicationError(f"A {self._meta.verbose_name} never changes once recorded.", code="immutable")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any):
        raise ApplicationError(f"A {self._meta.verbose_name} is never deleted.", code="immutable")


class SignedDocument(WriteOnce):
    """The signed PDF of a change order (with its certificate page) and its SHA-256."""

    change_order = models.OneToOneField("billing.ChangeOrder", on_delete=models.PROTECT, related_name="signed_pdf")
    envelope = models.OneToOneField(SignatureEnvelope, on_delete=models.PROTECT, related_name="signed_document")
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    original_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the document before signature.")
    signer_name = models.CharField(max_length=200)
    signer_email = models.EmailField()
    signer_ip = models.GenericIPAddressField(null=True, blank=True)
    signed_at = models.DateTimeField()
    method = models.CharField(max_length=10, choices=SignatureEnvelope.Provider.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "signed document"

    def __str__(self) -> str:
        return f"Signed {self.change_order_id} ({self.sha256[:12]})"


class MilestoneSignoff(WriteOnce):
    """A client contact's sign-off of a completed milestone (the contract requires it before billing)."""

    milestone = models.OneToOneField("billing.Milestone", on_delete=models.PROTECT, related_name="customer_signoff")
    contact = models.ForeignKey(ClientContact, on_delete=models.PROTECT, related_name="signoffs")
    signed_at = models.DateTimeField()
    signer_ip = models.GenericIPAddressField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "milestone sign-off"

    def __str__(self) -> str:
        return f"Sign-off of milestone {self.milestone_id}"


class WebhookReceipt(models.Model):
    """Each accepted e-signature event id, once: a replayed event is refused (unique)."""

    event_id = models.CharField(max_length=100, unique=True)
    envelope = models.ForeignKey(SignatureEnvelope, on_delete=models.PROTECT, related_name="webhook_receipts")
    event = models.CharField(max_length=30)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.event_id
