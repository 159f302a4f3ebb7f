"""Disputes and collections: a customer's objection to an invoice, and the chasing of what is owed.

docs/rules/disputes-and-collections.md. Opening a dispute marks the invoice `disputed` and holds the disputed
amount from dunning (the whole balance for a full dispute; ADR 0038);
resolving it with a credit makes a draft credit note that goes through approval
(`credit_and_reissue` also releases the billed items for the corrected invoice).
Collections works AR aging, dunning levels and the hand-off.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

MONEY = {"max_digits": 18, "decimal_places": 2}


class Dispute(FSMModelMixin, models.Model):
    class Category(models.TextChoices):
        RATE = "rate", "Rate"
        HOURS = "hours", "Hours"
        SCOPE = "scope", "Scope"
        MISSING_PO = "missing_po", "Missing PO"
        TAX = "tax", "Tax"
        DUPLICATE = "duplicate", "Duplicate"
        QUALITY = "quality", "Quality"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        INVESTIGATING = "investigating", "Investigating"
        RESOLVED = "resolved", "Resolved"
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Outcome(models.TextChoices):
        NONE = "", "—"
        UPHELD = "upheld", "Invoice upheld"
        CREDIT = "credit", "Credit"
        CREDIT_AND_REISSUE = "credit_and_reissue", "Credit and reissue"

    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="disputes")
    category = models.CharField(max_length=20, choices=Category.choices)
    disputed_amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    customer_reference = models.CharField(max_length=100, blank=True, default="")
    description = models.TextField(blank=True, default="")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_disputes")
    due_date = models.DateField(help_text="When it should be resolved (the SLA).")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")
    resolution_note = models.TextField(blank=True, default="")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField()
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    credit_note = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The credit note the resolution made.",
    )
    source = models.CharField(max_length=30, blank=True, default="", help_text="Opened in the portal or via API.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(disputed_amount__gt=0), name="disputes_dispute_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="resolved", outcome__in=["upheld", "credit", "credit_and_reissue"])
                | (~Q(status="resolved") & Q(outcome="")),
                name="disputes_dispute_outcome_when_resolved",
            ),
            # One live dispute per invoice: a second objection is a note on the first.
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(status__in=["open", "investigating"]),
                name="disputes_dispute_one_live_per_invoice",
            ),
        ]
        indexes = [models.Index(fields=["status", "due_date"], name="disputes_dispute_status_due")]

    def __str__(self) -> str:
        return f"Dispute {self.pk} on {self.invoice}"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.OPEN, self.Status.INVESTIGATING)

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.OPEN, target=Status.INVESTIGATING)
    def investigate(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.OPEN, Status.INVESTIGATING], target=Status.RESOLVED)
    def resolve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.OPEN, Status.INVESTIGATING], target=Status.WITHDRAWN)
    def withdraw(self, by=None, description=None) -> None:
        pass


class DisputeLine(models.Model):
    """A disputed invoice line (a dispute on the whole invoice has none)."""

    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey("billing.InvoiceLine", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY, help_text="The part of the line disputed (net).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dispute", "invoice_line"], name="disputes_disputeline_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="disputes_disputeline_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.dispute} line {self.invoice_line_id}: {self.amount}"


class DisputeNote(models.Model):
    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    attachment = models.FileField(upload_to="disputes/%Y/%m/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["dispute", "created_at", "id"]

    def __str__(self) -> str:
        return f"Note on {self.dispute} by {self.author}"


class CollectionsProfile(models.Model):
    """Per-client collections settings: dunning offsets and payment plan."""

    client = models.OneToOneField("billing.Client", on_delete=models.CASCADE, related_name="collections_profile")
    dunning_offsets = models.JSONField(
        default=list, blank=True,
        help_text="Days after the due date of each reminder level, e.g. [7, 21, 45]; empty = the firm's default.",
    )
    in_payment_plan = models.BooleanField(default=False, help_text="No reminders while the plan runs.")
    payment_plan_note = models.TextField(blank=True, default="")
    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"Collections profile of {self.client}"


class DunningNotice(models.Model):
    """One reminder sent for an invoice at a level; each level once per invoice."""

    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="dunning_notices")
    level = models.PositiveSmallIntegerField()
    days_overdue = models.PositiveIntegerField()
    balance = models.DecimalField(
        **MONEY, default=Decimal("0"),
        help_text="The amount the reminder asked for: the open balance less any part held in dispute.",
    )
    held_in_dispute = models.DecimalField(
        **MONEY, default=Decimal("0"), db_default=Decimal("0"),
        help_text="The disputed part of the balance, left out of the reminder (ADR 0038).",
    )
    to = models.CharField(max_length=1000)
    sent_at = models.DateTimeField()
    message_id = models.CharField(max_length=300, blank=True, default="")
    result = models.CharField(max_length=10, default="sent", help_text="sent or failed")
    error = models.TextField(blank=True, default="")
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty when the scheduled task sent it.",
    )

    class Meta:
        ordering = ["invoice", "level"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "level"], condition=Q(result="sent"), name="disputes_dunning_level_once"
            ),
        ]

    def __str__(self) -> str:
        return f"Level {self.level} reminder for {self.invoice}"


class CollectionsHandoff(FSMModelMixin, models.Model):
    """An invoice handed to collections follow-up (agency, legal, account manager)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="collections_handoffs")
    reason = models.TextField()
    handed_off_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    handed_off_at = models.DateTimeField()
    assignee = models.CharField(max_length=200, blank=True, default="", help_text="Agency or person it went to.")
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True)
    closed_note = models.TextField(blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-handed_off_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(status="open"), name="disputes_handoff_one_open_per_invoice"
            ),
        ]

    def __str__(self) -> str:
        return f"Hand-off of {self.invoice}"

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.OPEN, target=Status.CLOSED)
    def close(self, by=None, description=None) -> None:
        pass


class DisputeClassifier(models.Model):
    """A trained dispute-category model (disputes/classify.py): its numbers, data size and held-out quality.

    Advice only: it suggests a category beside the field; the person chooses."""

    trained_at = models.DateTimeField(auto_now_add=True)
    algorithm = models.CharField(max_length=100)
    parameters = models.JSONField(default=dict, help_text="Vocabulary, class priors, per-word log-probabilities.")
    samples = models.PositiveIntegerField()
    test_samples = models.PositiveIntegerField(default=0)
    accuracy = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    baseline_accuracy = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="Always the most common category."
    )
    per_class = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    trained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-trained_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="disputes_one_active_classifier"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} of {self.trained_at:%Y-%m-%d}"
