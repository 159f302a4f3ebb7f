"""Assistive intelligence records (docs/rules/assistive.md): scores with their reasons, trained models, SOW suggestions.

Everything here is advisory: a score never approves or blocks anything by itself;
the ANOMALY warning it raises is routed by the approval policies like any other.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords


class InvoiceScore(models.Model):
    """The latest anomaly and dispute-risk scores of an invoice, with the reasons that drove them."""

    invoice = models.OneToOneField("billing.Invoice", on_delete=models.CASCADE, related_name="score")
    anomaly_score = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    anomaly_reasons = models.JSONField(default=list, blank=True, help_text="[{feature, value, median, z}]")
    risk_score = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="Probability of a dispute, 0–1."
    )
    risk_reasons = models.JSONField(default=list, blank=True, help_text="[{feature, value, contribution}]")
    risk_model = models.ForeignKey("insights.RiskModel", null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=300, blank=True, default="", help_text="E.g. too little history to score.")
    scored_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(risk_score__isnull=True) | (Q(risk_score__gte=0) & Q(risk_score__lte=1)),
                name="insights_score_risk_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Scores of {self.invoice}"


class RiskModel(models.Model):
    """A trained dispute-risk model: its parameters, training data size and held-out quality."""

    trained_at = models.DateTimeField(auto_now_add=True)
    algorithm = models.CharField(max_length=100)
    features = models.JSONField(default=list)
    parameters = models.JSONField(default=dict, help_text="Coefficients, scaling: enough to score and explain.")
    samples = models.PositiveIntegerField()
    positives = models.PositiveIntegerField()
    roc_auc = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    baseline_auc = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    is_active = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-trained_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="insights_one_active_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} of {self.trained_at:%Y-%m-%d}"


class SowSuggestion(models.Model):
    """A term suggested from a contract's statement of work, with the sentence it came from, for a person to judge."""

    class Field(models.TextChoices):
        PAYMENT_TERMS = "payment_terms_days", "Payment terms (days)"
        RATE = "rate", "Rate per role"
        CAP = "cap", "Not-to-exceed cap"
        PO_NUMBER = "po_number", "PO number"
        BILLING_FREQUENCY = "billing_frequency", "Billing frequency"

    class Decision(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    contract = models.ForeignKey("billing.Contract", on_delete=models.CASCADE, related_name="sow_suggestions")
    field = models.CharField(max_length=30, choices=Field.choices)
    value = models.CharField(max_length=200)
    role_code = models.CharField(max_length=40, blank=True, default="", help_text="For rates: the role.")
    sentence = models.TextField(help_text="The sentence of the SOW it came from.")
    confidence = models.DecimalField(max_digits=4, decimal_places=3, default=0)
    decision = models.CharField(max_length=10, choices=Decision.choices, default=Decision.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    document_name = models.CharField(max_length=255, blank=True, default="")
    change_order = models.ForeignKey(
        "billing.ChangeOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="sow_suggestions",
        help_text="Accepted on a live contract: the draft change order that carries the term.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "SOW suggestion"
        ordering = ["contract", "field", "id"]

    def __str__(self) -> str:
        return f"{self.get_field_display()} = {self.value}"


class SowReading(models.Model):
    """One uploaded statement of work being read in the background (django-q2), with its outcome.

    The web request only stores the file; a worker extracts the text in a child process with a
    page cap and a time limit, so a pathological PDF can neither stall the web server nor hold
    a lock (docs/rules/assistive.md; docs/decisions/0033-sow-reading-in-the-background.md).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        READING = "reading", "Reading"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    OPEN = (Status.QUEUED, Status.READING)

    contract = models.ForeignKey("billing.Contract", on_delete=models.CASCADE, related_name="sow_readings")
    document = models.FileField(upload_to="contracts/sow/")
    document_name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True, default="", help_text="Why the reading failed, in words for the user.")
    pages = models.PositiveIntegerField(null=True, blank=True)
    suggestions_created = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.document_name} ({self.get_status_display().lower()})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class RoleSynonym(models.Model):
    """A title the firm's statements of work use for one of its roles ("Principal" → PARTNER).

    SOW extraction matches a rate's role by the role's code and name, these synonyms, and a few
    built-in titles mapped onto roles whose name is a usual grade (docs/rules/assistive.md).
    """

    role = models.ForeignKey("billing.Role", on_delete=models.CASCADE, related_name="synonyms")
    phrase = models.CharField(max_length=100, unique=True, help_text="As written in contracts; matched ignoring case.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["phrase"]
        constraints = [
            models.CheckConstraint(condition=~Q(phrase=""), name="insights_role_synonym_not_blank"),
        ]

    def __str__(self) -> str:
        return f"{self.phrase} → {self.role_id}"

    def save(self, *args, **kwargs) -> None:
        self.phrase = " ".join(self.phrase.lower().split())
        super().save(*args, **kwargs)


class KpiSnapshot(models.Model):
    """The KPIs of one period and filter set as computed at `computed_at` (docs/rules/kpis.md, "Snapshots").

    Written by `insights.snapshots` (the scheduled refresh, or a reader that found none
    fresh enough); dashboards and `/api/v1/kpis/` read it and show its time. `payload` keeps the
    selectors' exact values (Decimals, dates) in a typed JSON encoding.
    """

    key = models.CharField(max_length=64, unique=True, help_text="Hash of the metrics, period and filters.")
    period_start = models.DateField()
    period_end = models.DateField()
    filters = models.JSONField(default=dict, help_text="Entity, client, business unit, as-of date, currency.")
    metrics = models.JSONField(default=list)
    payload = models.JSONField(default=dict)
    computed_at = models.DateTimeField()
    compute_ms = models.PositiveIntegerField(default=0, help_text="How long the live computation took.")

    class Meta:
        indexes = [models.Index(fields=["computed_at"], name="insights_snapshot_computed")]

    def __str__(self) -> str:
        return f"KPIs {self.period_start}–{self.period_end} at {self.computed_at:%Y-%m-%d %H:%M}"
