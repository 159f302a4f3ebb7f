"""Revenue recognition and the monthly close (docs/rules/revenue.md).

A contract's recognition method, its dated estimates at completion (EAC), the revenue
periods with their close FSM, one schedule row per contract and period, and one journal
entry per entity and period. Once a period is closed its schedules and journals never
change: PostgreSQL triggers (migration 0002) refuse UPDATE and DELETE.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from simple_history.models import HistoricalRecords

from kernel.fields import FX, HOURS, MONEY, TimeStamped, currency_field

ZERO = Decimal("0")


class RecognitionPolicy(TimeStamped):
    """How one contract's revenue is recognised (default: by its billing model)."""

    class Method(models.TextChoices):
        DELIVERED = "delivered", "As delivered (time & materials)"
        PERCENT_COMPLETE = "percent_complete", "Percent complete on hours (fixed fee)"
        MILESTONE = "milestone", "On milestone approval (fixed fee)"
        STRAIGHT_LINE = "straight_line", "Straight-line over the billing period (retainer)"

    contract = models.OneToOneField("billing.Contract", on_delete=models.PROTECT, related_name="recognition_policy")
    method = models.CharField(max_length=20, choices=Method.choices)
    retainer_start = models.DateField(
        null=True, blank=True, help_text="Retainers: first month whose fee is recognised (empty: first billed period)."
    )
    retainer_end = models.DateField(null=True, blank=True, help_text="Retainers: last month with a fee (empty: open).")
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "recognition policies"

    def __str__(self) -> str:
        return f"{self.contract_id}: {self.get_method_display()}"


class Estimate(FSMModelMixin, TimeStamped):
    """An estimate at completion in hours for a fixed-fee contract, dated; PMs propose, finance approves."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    contract = models.ForeignKey("billing.Contract", on_delete=models.PROTECT, related_name="estimates")
    hours = models.DecimalField(**HOURS)
    as_of = models.DateField(help_text="The estimate applies to months ending on or after this date.")
    note = models.TextField(blank=True, default="")
    status = FSMField(default=Status.PROPOSED, choices=Status.choices, protected=True)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        ordering = ["contract_id", "-as_of", "-id"]
        constraints = [models.CheckConstraint(condition=Q(hours__gt=0), name="revenue_estimate_positive_hours")]

    def __str__(self) -> str:
        return f"EAC {self.hours} h as of {self.as_of} ({self.status})"

    @transition(field=status, source=Status.PROPOSED, target=Status.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @transition(field=status, source=Status.PROPOSED, target=Status.REJECTED)
    def reject(self, by=None, description=None) -> None:
        pass


class RevenuePeriod(FSMModelMixin, TimeStamped):
    """A calendar month of the close: open → draft (schedules computed, replaceable) → closed (locked)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DRAFT = "draft", "Draft closed"
        CLOSED = "closed", "Closed"

    start = models.DateField(unique=True, help_text="First day of the month.")
    end = models.DateField()
    status = FSMField(default=Status.OPEN, choices=Status.choices, protected=True)
    drafted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    drafted_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.TextField(blank=True, default="")
    checklist_override = models.TextField(
        blank=True, default="", help_text="Why the period was closed with open checklist items."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="How long the last close run took.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-start"]
        constraints = [models.CheckConstraint(condition=Q(end__gte=models.F("start")), name="revenue_period_bounds")]

    def __str__(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"

    @transition(field=status, source=[Status.OPEN, Status.DRAFT], target=Status.DRAFT)
    def draft(self, by=None, description=None) -> None:
        pass

    @transition(field=status, source=[Status.OPEN, Status.DRAFT], target=Status.CLOSED)
    def close(self, by=None, description=None) -> None:
        pass


class RevenueSchedule(models.Model):
    """One contract's recognition at one period end, in the contract's currency (and converted)."""

    period = models.ForeignKey(RevenuePeriod, on_delete=models.PROTECT, related_name="schedules")
    contract = models.ForeignKey("billing.Contract", on_delete=models.PROTECT, related_name="revenue_schedules")
    method = models.CharField(max_length=20, choices=RecognitionPolicy.Method.choices)
    currency = currency_field()
    cumulative_recognised = models.DecimalField(**MONEY)
    cumulative_billed = models.DecimalField(**MONEY)
    wip = models.DecimalField(**MONEY, help_text="Contract asset: recognised, not yet billed.")
    deferred = models.DecimalField(**MONEY, help_text="Contract liability: billed ahead of delivery.")
    period_revenue = models.DecimalField(**MONEY)
    period_billed = models.DecimalField(**MONEY)
    catch_up = models.DecimalField(**MONEY, help_text="Part of the period revenue that belongs to earlier months.")
    unrecoverable = models.DecimalField(**MONEY, default=ZERO, help_text="Value above the cap: not recognised.")
    hours_to_date = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    estimate_hours = models.DecimalField(**HOURS, null=True, blank=True)
    entity_currency = currency_field()
    fx_rate = models.DecimalField(**FX, help_text="Contract → entity currency at the period end.")
    period_revenue_entity = models.DecimalField(**MONEY)
    period_billed_entity = models.DecimalField(**MONEY)
    wip_change_entity = models.DecimalField(**MONEY)
    deferred_change_entity = models.DecimalField(**MONEY)
    wip_entity = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="WIP carried in entity currency: WIP × the period-end rate."
    )
    deferred_entity = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Deferred revenue carried in entity currency at the period-end rate."
    )
    fx_revaluation_entity = models.DecimalField(
        **MONEY,
        default=ZERO,
        help_text="Gain (+) or loss (−) from carrying the opening WIP and deferred balances at this period-end rate.",
    )

    class Meta:
        ordering = ["period__start", "contract__code"]
        constraints = [
            models.UniqueConstraint(fields=["period", "contract"], name="revenue_schedule_one_per_contract_period"),
            models.CheckConstraint(condition=Q(wip__gte=0) & Q(deferred__gte=0), name="revenue_schedule_balances"),
            models.CheckConstraint(condition=Q(wip=0) | Q(deferred=0), name="revenue_schedule_wip_or_deferred"),
        ]

    def __str__(self) -> str:
        return f"{self.contract_id} @ {self.period_id}"


class EntityAccounts(TimeStamped):
    """The general-ledger accounts of one entity's revenue journal (billing admins edit them)."""

    entity = models.OneToOneField("billing.LegalEntity", on_delete=models.PROTECT, related_name="revenue_accounts")
    revenue = models.CharField(max_length=30, default="4000", help_text="Recognised revenue (credit).")
    billed = models.CharField(
        max_length=30, default="4900", help_text="Invoiced revenue clearing: reverses what invoices booked (debit)."
    )
    wip = models.CharField(max_length=30, default="1250", help_text="Contract asset / unbilled receivables (WIP).")
    deferred = models.CharField(max_length=30, default="2450", help_text="Contract liability / deferred revenue.")
    fx_revaluation = models.CharField(
        max_length=30,
        default="7950",
        help_text="Unrealised FX gains and losses from revaluing foreign-currency WIP and deferred revenue.",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name = "revenue accounts of an entity"
        verbose_name_plural = "revenue accounts of entities"

    def __str__(self) -> str:
        return f"Revenue accounts of {self.entity_id}"


class JournalEntry(TimeStamped):
    """One entity's revenue journal for one period, in the entity's currency."""

    class ErpStatus(models.TextChoices):
        NOT_SENT = "not_sent", "Not sent"
        QUEUED = "queued", "Queued for the ERP"
        POSTED = "posted", "Posted"

    period = models.ForeignKey(RevenuePeriod, on_delete=models.PROTECT, related_name="journals")
    entity = models.ForeignKey("billing.LegalEntity", on_delete=models.PROTECT, related_name="revenue_journals")
    currency = currency_field()
    reference = models.CharField(max_length=60, unique=True)
    erp_status = models.CharField(max_length=20, choices=ErpStatus.choices, default=ErpStatus.NOT_SENT)
    erp_id = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["period__start", "entity__code"]
        verbose_name_plural = "journal entries"
        constraints = [
            models.UniqueConstraint(fields=["period", "entity"], name="revenue_journal_one_per_entity_period")
        ]

    def __str__(self) -> str:
        return self.reference


class JournalLine(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    account = models.CharField(max_length=30)
    label = models.CharField(max_length=200)
    debit = models.DecimalField(**MONEY, default=ZERO)
    credit = models.DecimalField(**MONEY, default=ZERO)

    class Meta:
        ordering = ["entry_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(debit__gte=0) & Q(credit__gte=0) & (Q(debit=0) | Q(credit=0)),
                name="revenue_journal_line_one_side",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.debit}/{self.credit}"
