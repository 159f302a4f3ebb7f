"""Integration records: API clients and their idempotency keys, the ERP outbox, webhooks, imports.

Billable sits between CRM/PSA and the ERP (docs/rules/integrations.md). Each external system is an
`IntegrationClient` with a token (only its hash is stored), scopes and its own
service user, so everything it changes is audited like a person's change. The
ERP is reached only through the `OutboxMessage` table, written in the same
transaction as the business change that needs posting.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords


class IntegrationClient(models.Model):
    """An external system (CRM, PSA, ERP middleware, payment provider) allowed to call the API."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True, default="")
    source = models.CharField(
        max_length=30, blank=True, default="", help_text="Default `source` of the records it upserts, e.g. psa."
    )
    scopes = models.JSONField(default=list, blank=True, help_text="E.g. read:billing, write:time.")
    token_prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the token, to find it.")
    token_hash = models.CharField(max_length=64, help_text="Hex SHA-256 of the whole token; the token is not kept.")
    webhook_secret = models.CharField(
        max_length=100, blank=True, default="", help_text="Shared HMAC-SHA256 secret of its signed webhooks."
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="integration_client",
        help_text="Service user its changes are recorded under (history, transition log).",
    )
    throttle_rate = models.CharField(max_length=20, default="1200/min", help_text="DRF rate, e.g. 1200/min.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_active=True, revoked_at__isnull=True) | Q(is_active=False, revoked_at__isnull=False),
                name="integrations_client_revoked_consistent",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class IdempotencyRecord(models.Model):
    """The stored answer to a POST with an `Idempotency-Key`, replayed for the same key and body."""

    client = models.ForeignKey(IntegrationClient, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_sha256 = models.CharField(max_length=64, help_text="Hash of method, path and body.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty while in progress.")
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="integrations_idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.key}"


class OutboxMessage(FSMModelMixin, models.Model):
    """A document to deliver to the ERP, written with the business change that needs it (transactional outbox).

    `idempotency_key` is derived from the document (kind + id + version), so a re-send after
    an unclear outcome is recognised by the ERP and by the look-up before re-sending.
    """

    class Kind(models.TextChoices):
        UPSERT_CUSTOMER = "upsert_customer", "Upsert customer"
        POST_INVOICE = "post_invoice", "Post invoice"
        POST_CREDIT_NOTE = "post_credit_note", "Post credit note"
        POST_JOURNAL = "post_journal", "Post journal entry"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retry scheduled)"
        DEAD = "dead", "Dead letter"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    endpoint = models.CharField(max_length=50, default="erp", help_text="Adapter endpoint name (circuit per endpoint).")
    idempotency_key = models.CharField(max_length=200, unique=True)
    invoice = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="outbox_messages"
    )
    client = models.ForeignKey(
        "billing.Client", null=True, blank=True, on_delete=models.PROTECT, related_name="outbox_messages"
    )
    payload = models.JSONField(help_text="The canonical document, frozen when the message was written.")
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="Lease of the worker delivering it; expired leases are picked up again."
    )
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True, default="", help_text="The ERP's id, once delivered.")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="integrations_outbox_due")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(delivered_at__isnull=False),
                name="integrations_outbox_delivered_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.idempotency_key} ({self.status})"

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.PENDING, Status.FAILED], target=Status.DELIVERED)
    def mark_delivered(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.PENDING, Status.FAILED], target=Status.FAILED)
    def mark_failed(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.PENDING, Status.FAILED], target=Status.DEAD)
    def mark_dead(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DEAD, target=Status.PENDING)
    def retry(self, by=None, description=None) -> None:
        pass


class EndpointCircuit(models.Model):
    """Circuit breaker state of one outbound endpoint, shared by every worker."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half open"

    endpoint = models.CharField(max_length=50, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(null=True, blank=True)
    last_failure = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.endpoint}: {self.state}"


class WebhookEvent(models.Model):
    """A received payment webhook; the unique event id makes a replay an acknowledgement, not a second payment."""

    class Result(models.TextChoices):
        APPLIED = "applied", "Applied"
        EXCEPTION = "exception", "Recorded as an exception for finance"
        REJECTED = "rejected", "Rejected"

    client = models.ForeignKey(IntegrationClient, on_delete=models.PROTECT, related_name="webhook_events")
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=100, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField(default=dict)
    result = models.CharField(max_length=10, choices=Result.choices)
    detail = models.TextField(blank=True, default="")
    payment = models.ForeignKey(
        "billing.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="webhook_events"
    )
    correlation_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "event_id"], name="integrations_webhook_event_once"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.event_id}: {self.result}"


class ImportBatch(models.Model):
    """One inbound import (CSV upload or command, or an API bulk call): what came in and what became of it."""

    class Kind(models.TextChoices):
        CSV_TIME = "csv_time", "CSV time export"
        API_BULK = "api_bulk", "API bulk upsert"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Imported"
        DRY_RUN = "dry_run", "Dry run (nothing saved)"
        FAILED = "failed", "Failed (nothing saved)"
        PARTIAL = "partial", "Imported but for the rows in error"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    resource = models.CharField(max_length=40, blank=True, default="", help_text="E.g. time_entries, clients.")
    source = models.CharField(max_length=30, blank=True, default="")
    filename = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    dry_run = models.BooleanField(default=False)
    all_or_nothing = models.BooleanField(default=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, field_errors, message}] per bad row.")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    integration_client = models.ForeignKey(
        IntegrationClient, null=True, blank=True, on_delete=models.PROTECT, related_name="imports"
    )
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "import batches"
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.filename or self.resource} ({self.status})"


class ErpEntityMapping(models.Model):
    """Which company of the ERP books a legal entity's invoices, and with which accounts (Tryton adapter).

    Editable in admin by billing admins; the adapter checks it (and the tax mapping) against the ERP
    before it posts (`manage.py erp_check` does the same on demand). Blank accounts use the ERP
    company's defaults (the party's receivable account, the chart's first revenue account).
    """

    entity = models.OneToOneField("billing.LegalEntity", on_delete=models.CASCADE, related_name="erp_mapping")
    erp_company = models.CharField(
        max_length=200, help_text="The ERP company's name (Tryton: the company's party name)."
    )
    receivable_account = models.CharField(
        max_length=50, blank=True, default="", help_text="Account code for customer receivables (blank: the party's)."
    )
    revenue_account = models.CharField(
        max_length=50, blank=True, default="", help_text="Account code invoice lines are booked to (blank: default)."
    )
    journal = models.CharField(max_length=50, blank=True, default="", help_text="Journal code (blank: revenue).")
    close_journal = models.CharField(
        max_length=50,
        blank=True,
        default="",
        help_text="Journal code of the revenue close's journal entries (blank: MISC, else the first general journal).",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "ERP company mapping"

    def __str__(self) -> str:
        return f"{self.entity.code} → {self.erp_company}"


class ErpTaxMapping(models.Model):
    """One Billable tax (category and rate) of one legal entity → the ERP tax that books it."""

    entity = models.ForeignKey("billing.LegalEntity", on_delete=models.CASCADE, related_name="erp_tax_mappings")
    category = models.CharField(max_length=2, help_text="Billable's tax category (S, AE, O, Z, E, …).")
    rate = models.DecimalField(max_digits=5, decimal_places=2, help_text="Rate in percent, as on the invoice.")
    erp_tax = models.CharField(max_length=200, help_text="The ERP tax's name (Tryton: account.tax name).")
    history = HistoricalRecords()

    class Meta:
        verbose_name = "ERP tax mapping"
        constraints = [
            models.UniqueConstraint(fields=["entity", "category", "rate"], name="integrations_erptaxmapping_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.entity.code} {self.category} {self.rate}% → {self.erp_tax}"
