"""Issued invoice documents: the PDF and the UBL e-invoice, stored once and never changed.

A document is rendered the first time it is asked for (download, `render_invoice`)
and its bytes are kept with their SHA-256: every later download returns exactly
those bytes, whatever templates or libraries change afterwards. Only
`billing.services.documents` writes rows; a PostgreSQL trigger (migration 0006)
refuses any UPDATE or DELETE, and the admin shows them read-only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact

from billing.models.invoices import Invoice


class InvoiceDocument(models.Model):
    class Kind(models.TextChoices):
        PDF = "pdf", "PDF"
        UBL = "ubl", "UBL e-invoice (EN 16931)"

    CONTENT_TYPES = {Kind.PDF: "application/pdf", Kind.UBL: "application/xml"}
    EXTENSIONS = {Kind.PDF: "pdf", Kind.UBL: "xml"}

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="documents")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64, help_text="Hex SHA-256 of the content, as served.")
    size = models.PositiveIntegerField()
    generator = models.CharField(
        max_length=200, blank=True, default="", help_text="What produced the bytes (renderer and its version)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["invoice", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "kind"], name="billing_invoicedocument_once_per_kind"),
            models.CheckConstraint(condition=Q(kind__in=["pdf", "ubl"]), name="billing_invoicedocument_kind_valid"),
            models.CheckConstraint(condition=Exact(Length("sha256"), 64), name="billing_invoicedocument_sha256_length"),
            models.CheckConstraint(condition=Q(size__gt=0), name="billing_invoicedocument_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} {self.get_kind_display()}"

    @property
    def content_type(self) -> str:
        return self.CONTENT_TYPES[self.kind]

    @property
    def filename(self) -> str:
        return f"{self.invoice.number}.{self.EXTENSIONS[self.kind]}"


class DeliveryAttempt(models.Model):
    """One delivery of an issued invoice, successful or not (the delivery log).

    By e-mail to the client's billing addresses, to its Peppol access point (then `message_id` is the
    access point's transmission id and the receipt fields record the delivery receipt), or by
    publishing it in the customer portal.
    """

    class Result(models.TextChoices):
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        PEPPOL = "peppol", "Peppol"
        PORTAL = "portal", "Customer portal"

    class Receipt(models.TextChoices):
        NONE = "", "No receipt (yet)"
        DELIVERED = "delivered", "Delivered to the buyer's access point"
        REJECTED = "rejected", "Rejected"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="delivery_attempts")
    to = models.CharField(max_length=1000, help_text="Comma-separated recipients.")
    attempted_at = models.DateTimeField()
    message_id = models.CharField(max_length=300, blank=True, default="")
    result = models.CharField(max_length=10, choices=Result.choices)
    error = models.TextField(blank=True, default="")
    attachments = models.JSONField(default=list, blank=True, help_text="File names sent.")
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300, blank=True, default="", help_text="First delivery, resend, ...")
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL,
                               db_default=Channel.EMAIL)
    receipt = models.CharField(max_length=10, choices=Receipt.choices, blank=True, default="", db_default="",
                               help_text="Peppol: the access point's delivery receipt (or rejection).")
    receipt_at = models.DateTimeField(null=True, blank=True)
    receipt_detail = models.TextField(blank=True, default="", db_default="",
                                      help_text="The rejection's Peppol error codes and texts.")

    class Meta:
        ordering = ["invoice", "-attempted_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(result__in=["sent", "failed"]), name="billing_deliveryattempt_result"),
            models.CheckConstraint(condition=Q(channel__in=["email", "peppol", "portal"]),
                                   name="billing_deliveryattempt_channel"),
            models.CheckConstraint(condition=Q(receipt="") | Q(channel="peppol", receipt_at__isnull=False),
                                   name="billing_deliveryattempt_receipt_is_peppol"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} → {self.to}: {self.result}"
