"""Invoices and credit notes, their lines, taxes, exceptions, numbering, payments, runs."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from billing.models.contracts import Contract, Project
from billing.models.masterdata import Client, LegalEntity, Role
from kernel.fields import MONEY, PERCENT, RATE, TimeStamped, currency_field


class BillingRun(FSMModelMixin, TimeStamped):
    """One execution of the billing engine over a period; its summary is kept.

    A running run beats (`heartbeat_at`) after each committed chunk; a run whose
    heartbeat is older than `BILLING_RUN_STALE_AFTER_SECONDS` lost its worker and is
    moved to `interrupted` (ADR 0037). Resuming it queues a new run over what is
    left (`resumes` points back); the interrupted run ends as `resumed`.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"
        RESUMED = "resumed", "Resumed"

    #: States in which no worker will touch the run again (the page stops polling).
    ENDED_STATUSES = (Status.DONE, Status.FAILED, Status.INTERRUPTED, Status.RESUMED)

    period_start = models.DateField()
    period_end = models.DateField()
    run_date = models.DateField(help_text="Issue date of the invoices it makes.")
    contract_codes = models.JSONField(default=list, blank=True, help_text="Empty: every contract.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    status = FSMField(default=Status.QUEUED, choices=Status.choices, protected=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker (after each committed chunk)."
    )
    resumes = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="resumed_by",
        help_text="The interrupted run this run resumes (it bills what that run left).",
    )
    contracts_total = models.PositiveIntegerField(default=0)
    contracts_done = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")), name="billing_billingrun_period_ordered"
            ),
            # An interrupted run is resumed once: two clicks never queue two resuming runs.
            models.UniqueConstraint(fields=["resumes"], name="billing_billingrun_resumed_once"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} {self.period_start}–{self.period_end}"

    @property
    def is_ended(self) -> bool:
        return self.status in self.ENDED_STATUSES

    @transition(field=status, source=Status.QUEUED, target=Status.RUNNING)
    def start(self) -> None:
        pass

    @transition(field=status, source=Status.RUNNING, target=Status.DONE)
    def finish(self) -> None:
        pass

    @transition(field=status, source=[Status.QUEUED, Status.RUNNING], target=Status.FAILED)
    def fail(self) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.RUNNING, target=Status.INTERRUPTED)
    def interrupt(self, by=None, description=None) -> None:
        """The worker stopped beating (killed, crashed, lost): no one will finish this run."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.INTERRUPTED, target=Status.RESUMED)
    def resume(self, by=None, description=None) -> None:
        """A new run (`resumed_by`) bills what this one left."""


class Invoice(FSMModelMixin, TimeStamped):
    """An invoice or credit note. Numbered on approval; immutable from then on."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        EXCEPTION = "exception", "Exception"
        PENDING_APPROVAL = "pending_approval", "Pending approval"
        APPROVED = "approved", "Approved"
        POSTED = "posted", "Posted"
        SENT = "sent", "Sent"
        PARTIALLY_PAID = "partially_paid", "Partially paid"
        PAID = "paid", "Paid"
        DISPUTED = "disputed", "Disputed"
        CREDITED = "credited", "Credited"
        CANCELLED = "cancelled", "Cancelled"

    EDITABLE_STATUSES = (Status.DRAFT, Status.EXCEPTION, Status.PENDING_APPROVAL)
    LIVE_EXCLUDED = (Status.CANCELLED,)

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.INVOICE)
    credit_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes")
    entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="invoices")
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="invoices")
    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="invoices")
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
        help_text="Set when the contract invoices per project.",
    )
    billing_run = models.ForeignKey(
        BillingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    number = models.CharField(max_length=40, null=True, blank=True, unique=True)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    retainer_period = models.DateField(
        null=True, blank=True, help_text="Period start of the retainer fee this invoice bills (once per period)."
    )
    # The dates the invoice bills (docs/rules/billing.md §13): min/max over its lines, not the run's period.
    service_start = models.DateField(null=True, blank=True, help_text="First date of the work it bills.")
    service_end = models.DateField(null=True, blank=True, help_text="Last date of the work it bills.")
    issue_date = models.DateField()
    due_date = models.DateField()
    currency = currency_field()
    po_number = models.CharField(max_length=60, blank=True, default="")
    purchase_order = models.ForeignKey(
        "billing.PurchaseOrder",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
        help_text="The PO this invoice (or credit note) draws on or gives back to.",
    )
    consolidated = models.BooleanField(
        default=False,
        db_default=False,  # raw-SQL writers (the bench floor) leave it out
        help_text="One invoice for several contracts of a consolidating client; each line names its contract.",
    )
    subtotal = models.DecimalField(**MONEY, default=Decimal("0"))
    tax_total = models.DecimalField(**MONEY, default=Decimal("0"))
    total = models.DecimalField(**MONEY, default=Decimal("0"))
    status = FSMField(default=Status.DRAFT, choices=Status.choices, protected=True)
    prepared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    erp_id = models.CharField(max_length=100, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    # Running figures kept by the credit-note and payment services under a row lock on the invoice;
    # they are not frozen by the numbering trigger, and the checks below hold them to the total.
    credited_amount = models.DecimalField(
        **MONEY,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="Σ approved and pending credit notes (gross) against this invoice.",
    )
    paid_amount = models.DecimalField(
        **MONEY, default=Decimal("0"), db_default=Decimal("0"), help_text="Σ payments applied to this invoice."
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-issue_date", "-id"]
        constraints = [
            # Never more credited than invoiced (docs/rules/disputes-and-collections.md): the credit-note
            # service locks the invoice
            # and adds to `credited_amount`; the database refuses what would exceed the total.
            models.CheckConstraint(
                condition=Q(credited_amount__gte=0) & Q(credited_amount__lte=models.F("total")),
                name="billing_invoice_credited_within_total",
            ),
            models.CheckConstraint(condition=Q(paid_amount__gte=0), name="billing_invoice_paid_not_negative"),
            models.CheckConstraint(
                condition=Q(kind="invoice", credit_of__isnull=True) | Q(kind="credit_note", credit_of__isnull=False),
                name="billing_invoice_credit_note_references_invoice",
            ),
            models.CheckConstraint(
                condition=Q(due_date__gte=models.F("issue_date")), name="billing_invoice_due_after_issue"
            ),
            models.CheckConstraint(
                condition=Q(number__isnull=True)
                | Q(status__in=["approved", "posted", "sent", "partially_paid", "paid", "disputed", "credited"]),
                name="billing_invoice_numbered_only_when_approved",
            ),
            # The retainer fee of a period is billed once per contract, whatever runs race.
            models.UniqueConstraint(
                fields=["contract", "retainer_period"],
                condition=Q(retainer_period__isnull=False, kind="invoice") & ~Q(status__in=["cancelled", "credited"]),
                name="billing_invoice_one_retainer_fee_per_period",
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="billing_invoice_status"),
            # Runs look up the (few) consolidated invoices per chunk (§13): never a scan of all invoices.
            models.Index(fields=["status"], condition=Q(consolidated=True), name="billing_invoice_consolidated"),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft {self.pk}"

    @property
    def display_number(self) -> str:
        return self.number or f"DRAFT-{self.pk}"

    @property
    def is_numbered(self) -> bool:
        return bool(self.number)

    @property
    def balance(self) -> Decimal:
        """What the customer still owes: total − credits − payments (docs/rules/disputes-and-collections.md)."""
        return self.total - self.credited_amount - self.paid_amount

    # --- transitions (guards only; services do the work and the audit) ---
    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DRAFT, target=Status.EXCEPTION)
    def flag_exception(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DRAFT, target=Status.PENDING_APPROVAL)
    def submit_for_approval(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.EXCEPTION, target=Status.DRAFT)
    def reopen_draft(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.EXCEPTION, target=Status.PENDING_APPROVAL)
    def override(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING_APPROVAL, target=Status.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING_APPROVAL, target=Status.DRAFT)
    def reject(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.APPROVED, target=Status.POSTED)
    def mark_posted(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.POSTED, Status.DISPUTED], target=Status.SENT)
    def mark_sent(self, by=None, description=None) -> None:
        pass

    # Payments (billing.services.payments): a posted-but-not-yet-sent invoice may be paid too (the customer
    # had it another way, or delivery failed); a disputed one keeps its status until the dispute ends.
    @fsm_log_by
    @fsm_log_description
    @transition(
        field=status, source=[Status.POSTED, Status.SENT, Status.PARTIALLY_PAID], target=Status.PARTIALLY_PAID
    )
    def record_partial_payment(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(
        field=status, source=[Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.DISPUTED], target=Status.PAID
    )
    def record_full_payment(self, by=None, description=None) -> None:
        """Balance reached 0 by payments; from `disputed`: a dispute on a fully paid invoice ended."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.SENT, Status.POSTED, Status.PARTIALLY_PAID], target=Status.DISPUTED)
    def dispute(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(
        field=status,
        source=[Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.PAID, Status.DISPUTED],
        target=Status.CREDITED,
    )
    def mark_credited(self, by=None, description=None) -> None:
        """Credit notes now cover the whole total (billing.services.credit_notes.credit_note_issued)."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DISPUTED, target=Status.PARTIALLY_PAID)
    def resume_partially_paid(self, by=None, description=None) -> None:
        """A dispute on a partly paid invoice ended (upheld, withdrawn or partly credited)."""

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.DRAFT, Status.EXCEPTION], target=Status.CANCELLED)
    def cancel(self, by=None, description=None) -> None:
        pass


class InvoiceLine(models.Model):
    """One line; time lines keep the rate applied and where it came from."""

    class Kind(models.TextChoices):
        TIME = "time", "Time"
        OVERAGE = "overage", "Retainer overage"
        EXPENSE = "expense", "Expense"
        MILESTONE = "milestone", "Milestone"
        RETAINER = "retainer", "Retainer fee"
        DISCOUNT = "discount", "Discount"
        WRITE_DOWN = "write_down", "Cap write-down"
        CREDIT = "credit", "Credit"

    class RateSource(models.TextChoices):
        NONE = "", "—"
        RATE_CARD = "rate_card", "Rate card"
        CONTRACT_OVERRIDE = "contract_override", "Contract override"
        CHANGE_ORDER = "change_order", "Change order"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    contract = models.ForeignKey(
        Contract,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The contract the line bills (consolidated invoices carry several).",
    )
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=500, blank=True, default="")
    quantity = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("1.00"))
    unit_price = models.DecimalField(**RATE)
    amount = models.DecimalField(**MONEY)
    rate_source = models.CharField(max_length=20, choices=RateSource.choices, blank=True, default="")
    rate_source_id = models.BigIntegerField(null=True, blank=True, help_text="Id of the rate row applied.")
    rate_source_label = models.CharField(max_length=200, blank=True, default="")
    # First and last date of the items the line bills (docs/rules/billing.md §13).
    service_start = models.DateField(null=True, blank=True)
    service_end = models.DateField(null=True, blank=True)
    credited_line = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_lines",
        help_text="For credit-note lines: the original line credited.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.quantity} × {self.unit_price} = {self.amount}"


class InvoiceTax(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="taxes")
    category = models.CharField(max_length=2)
    rate = models.DecimalField(**PERCENT)
    base = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    legal_note = models.CharField(max_length=300, blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "invoice taxes"
        constraints = [
            models.UniqueConstraint(fields=["invoice", "category", "rate"], name="billing_invoicetax_unique")
        ]

    def __str__(self) -> str:
        return f"{self.category} {self.rate}% on {self.base}: {self.amount}"


class InvoiceException(TimeStamped):
    """A validation finding on an invoice: blocking, or a warning for the approver."""

    class Severity(models.TextChoices):
        BLOCKING = "blocking", "Blocking"
        WARNING = "warning", "Warning"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        OVERRIDDEN = "overridden", "Overridden"

    #: Codes raised after issue (delivery, cash); they show in the exception queue's "after issue" section.
    FOLLOW_UP_CODES = (
        "DELIVERY_FAILED",  # the e-mail to the client's billing addresses failed
        "PAYMENT_UNMATCHED",  # a payment names no invoice we know: unapplied cash
        "PAYMENT_CURRENCY_MISMATCH",  # a payment in another currency than its invoice
        "OVERPAYMENT",  # more paid than the balance
        "PAYMENT_ON_CLOSED_INVOICE",  # paid after a full credit or a cancellation
    )

    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.CASCADE, related_name="exceptions",
        help_text="Empty only for a payment that names no known invoice.",
    )
    payment = models.ForeignKey(
        "billing.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="exceptions"
    )
    code = models.CharField(max_length=40)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.TextField()
    fix_hint = models.CharField(max_length=300, blank=True, default="")
    fix_url = models.CharField(max_length=300, blank=True, default="")
    amount = models.DecimalField(**MONEY, null=True, blank=True, help_text="E.g. the cap excess.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_reason = models.TextField(blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["invoice", "severity", "code"]
        indexes = [models.Index(fields=["state", "code"], name="billing_exception_state_code")]

    def __str__(self) -> str:
        return f"{self.code} ({self.severity})"


class InvoiceNumberSequence(models.Model):
    """Gapless counter per (entity, year, series); locked while a number is taken."""

    entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="+")
    year = models.PositiveSmallIntegerField()
    series = models.CharField(max_length=20, choices=Invoice.Kind.choices)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity", "year", "series"], name="billing_numbersequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.entity.code} {self.year} {self.series}: {self.last_number}"


class Payment(TimeStamped):
    """Cash received. Without an invoice it is unapplied cash (of a client when known), for finance to apply."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Entered by finance"
        API = "api", "API"
        WEBHOOK = "webhook", "Payment webhook"

    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="payments")
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(**MONEY)
    currency = currency_field()
    date = models.DateField()
    external_reference = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    invoice_reference = models.CharField(
        max_length=100, blank=True, default="", help_text="The invoice number as the payer quoted it."
    )
    note = models.TextField(blank=True, default="")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-date", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="billing_payment_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} on {self.date} ({self.external_reference})"
