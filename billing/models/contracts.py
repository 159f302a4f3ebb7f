"""Contracts, their effective-dated rate overrides, change orders and projects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models import F, Q
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from billing.models.masterdata import Client, LegalEntity, Person, RateCard, Role
from billing.models.purchase_orders import PurchaseOrder
from kernel.errors import ApplicationError
from kernel.fields import (
    MONEY,
    PERCENT,
    RATE,
    ExternallyIdentified,
    TimeStamped,
    currency_field,
    supported_currency_constraint,
)

#: The commercial terms of a contract (docs/rules/approvals.md): once it has left `draft` they change only
#: through an approved change order (`billing.services.change_orders`).
CONTRACT_TERMS = (
    "client", "entity", "billing_model", "currency", "rate_card", "cap", "expense_markup_pct", "discount_pct",
    "po_number", "payment_terms_days", "billing_frequency", "retainer_amount", "included_hours", "purchase_order",
    # The customer-side gates: switching them off on a live contract would lift a control.
    "requires_signed_change_orders", "requires_customer_signoff",
)
_TERMS_UNLOCKED: ContextVar[str] = ContextVar("contract_terms_unlocked", default="")
#: PostgreSQL setting the triggers of migration billing/0021 read (transaction-local).
TERMS_UNLOCK_SETTING = "billable.contract_terms_unlocked"


class ContractTermsLockedError(ApplicationError):
    """A write that would change the terms of a live contract without an approved change order."""

    code = "contract_terms_locked"


@contextlib.contextmanager
def contract_terms_unlocked(why: str) -> Iterator[None]:
    """Let the enclosed writes change the terms of live contracts: approved change orders and data seeding only.

    One transaction: on PostgreSQL the database triggers accept the writes only while the
    transaction-local setting is on, so the permission never outlives the block.
    """
    if terms_unlocked():  # already inside an unlocked block
        with transaction.atomic():
            yield
        return
    token = _TERMS_UNLOCKED.set(why or "unlocked")
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, 'on', true)", [TERMS_UNLOCK_SETTING])
            yield
            if connection.vendor == "postgresql":  # on an error the savepoint's rollback reverts it
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, 'off', true)", [TERMS_UNLOCK_SETTING])
    finally:
        _TERMS_UNLOCKED.reset(token)


def terms_unlocked() -> bool:
    return bool(_TERMS_UNLOCKED.get())


def _term_attnames() -> tuple[str, ...]:
    return tuple(Contract._meta.get_field(name).attname for name in CONTRACT_TERMS)


class Contract(FSMModelMixin, ExternallyIdentified, TimeStamped):
    class BillingModel(models.TextChoices):
        TIME_AND_MATERIALS = "time_and_materials", "Time & materials"
        FIXED_FEE = "fixed_fee", "Fixed fee"
        RETAINER = "retainer", "Retainer"

    class Frequency(models.TextChoices):
        MONTHLY = "monthly", "Monthly"
        QUARTERLY = "quarterly", "Quarterly"
        ON_MILESTONE = "on_milestone", "On milestone"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    code = models.CharField(max_length=40, unique=True, help_text="Contract number.")
    name = models.CharField(max_length=200, blank=True, default="")
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="contracts")
    entity = models.ForeignKey(LegalEntity, on_delete=models.PROTECT, related_name="contracts")
    billing_model = models.CharField(max_length=20, choices=BillingModel.choices)
    currency = currency_field()
    rate_card = models.ForeignKey(RateCard, null=True, blank=True, on_delete=models.PROTECT, related_name="contracts")
    cap = models.DecimalField(**MONEY, null=True, blank=True, help_text="Not-to-exceed amount, before tax.")
    expense_markup_pct = models.DecimalField(**PERCENT, default=Decimal("0"), validators=[MinValueValidator(0)])
    discount_pct = models.DecimalField(
        **PERCENT, default=Decimal("0"), validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    po_number = models.CharField(max_length=60, blank=True, default="")
    purchase_order = models.ForeignKey(
        PurchaseOrder,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="contracts",
        help_text="The client's PO this contract draws on; the PO number then comes from it.",
    )
    payment_terms_days = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: the client's.")
    billing_frequency = models.CharField(max_length=20, choices=Frequency.choices, default=Frequency.MONTHLY)
    invoice_per_project = models.BooleanField(default=False)
    retainer_amount = models.DecimalField(**MONEY, null=True, blank=True)
    included_hours = models.DecimalField(max_digits=9, decimal_places=2, null=True, blank=True)
    sow_document = models.FileField(upload_to="contracts/sow/", blank=True)
    sow_signed_on = models.DateField(null=True, blank=True)
    # The customer side (docs/rules/customers.md): signatures and sign-offs that gate approvals.
    requires_signed_change_orders = models.BooleanField(
        default=False, db_default=False,
        help_text="A change order is approved only once the client signed it (portal click-to-sign or e-signature).",
    )
    requires_customer_signoff = models.BooleanField(
        default=False, db_default=False,
        help_text="A milestone becomes billable only after a client contact signed it off in the customer portal.",
    )
    status = FSMField(default=Status.DRAFT, choices=Status.choices, protected=True)
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["code"]
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.CheckConstraint(
                condition=Q(cap__isnull=True) | Q(cap__gte=0), name="billing_contract_cap_non_negative"
            ),
            models.CheckConstraint(condition=Q(expense_markup_pct__gte=0), name="billing_contract_markup_non_negative"),
            models.CheckConstraint(
                condition=Q(discount_pct__gte=0) & Q(discount_pct__lte=100), name="billing_contract_discount_range"
            ),
            models.CheckConstraint(
                condition=~Q(billing_model="retainer")
                | (Q(retainer_amount__isnull=False) & Q(retainer_amount__gte=0) & Q(included_hours__gte=0)),
                name="billing_contract_retainer_terms",
            ),
            supported_currency_constraint("contract"),
            # Billing on milestones only makes sense where milestones are billed (docs/rules/billing.md §13).
            models.CheckConstraint(
                condition=~Q(billing_frequency="on_milestone") | Q(billing_model="fixed_fee"),
                name="billing_contract_on_milestone_fixed_fee_only",
                violation_error_message="Billing on milestones is for fixed-fee contracts only.",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    # --- the terms guard: a live contract's terms change only through an approved change order -----------

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        loaded = dict(zip(field_names, values, strict=False))
        instance._stored_terms = {k: loaded[k] for k in (*_term_attnames(), "status") if k in loaded}
        return instance

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        stored = getattr(self, "_stored_terms", None) or {}
        for attname in (*_term_attnames(), "status"):
            if attname in self.__dict__:
                stored[attname] = self.__dict__[attname]
        self._stored_terms = stored

    @property
    def terms_locked(self) -> bool:
        """Live (active, suspended or closed): the terms change only through an approved change order."""
        return self.status != self.Status.DRAFT

    def changed_terms(self) -> list[str]:
        """Terms that differ from the stored row (one query when the instance was not loaded from it)."""
        if self.pk is None or self._state.adding:
            return []
        stored = getattr(self, "_stored_terms", None)
        if not stored or "status" not in stored:
            stored = Contract.objects.filter(pk=self.pk).values(*_term_attnames(), "status").first()
            if stored is None:
                return []
            self._stored_terms = stored
        names = dict(zip(_term_attnames(), CONTRACT_TERMS, strict=True))
        return [names[a] for a in names if a in stored and stored[a] != getattr(self, a)]

    def check_terms_unchanged(self) -> None:
        """Refuse a save that changes the terms of a contract that is no longer a draft."""
        if terms_unlocked():
            return
        changed = self.changed_terms()
        if changed and self._stored_terms.get("status") != self.Status.DRAFT:
            raise ContractTermsLockedError(
                f"Contract {self.code} is {self._stored_terms.get('status')}: its terms ({', '.join(changed)}) "
                "change only through an approved change order. Raise a change order instead.",
                field_errors={name: ["Changes only through an approved change order."] for name in changed},
            )

    def clean(self) -> None:
        super().clean()
        if self.purchase_order_id and self.client_id and self.purchase_order.client_id != self.client_id:
            from django.core.exceptions import ValidationError

            raise ValidationError({"purchase_order": "A contract's PO must belong to its client."})

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.purchase_order_id:
            # The PO number comes from the linked purchase order (docs/rules/billing.md §13).
            self.po_number = self.purchase_order.number
            if self.client_id and self.purchase_order.client_id != self.client_id:
                raise ApplicationError(
                    f"PO {self.purchase_order.number} belongs to another client than contract {self.code}.",
                    field_errors={"purchase_order": ["A contract's PO must belong to its client."]},
                )
        update_fields = kwargs.get("update_fields")
        if update_fields is None or set(update_fields) & {*CONTRACT_TERMS, *_term_attnames()}:
            self.check_terms_unchanged()
        super().save(*args, **kwargs)
        self._stored_terms = {a: getattr(self, a) for a in (*_term_attnames(), "status")}

    @property
    def effective_payment_terms_days(self) -> int:
        return self.payment_terms_days if self.payment_terms_days is not None else self.client.payment_terms_days

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DRAFT, target=Status.ACTIVE)
    def activate(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.ACTIVE, target=Status.SUSPENDED)
    def suspend(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.SUSPENDED, target=Status.ACTIVE)
    def resume(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.ACTIVE, Status.SUSPENDED], target=Status.CLOSED)
    def close(self, by=None, description=None) -> None:
        pass


class ContractRate(models.Model):
    """Contract-level rate override for a role or a person, effective-dated.

    Rows created by an approved change order point at it (rate provenance).
    """

    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="rates")
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rate = models.DecimalField(**RATE, validators=[MinValueValidator(0)])
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)
    change_order = models.ForeignKey(
        "billing.ChangeOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="applied_rates"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["contract", "effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(role__isnull=False) & Q(person__isnull=True))
                | (Q(role__isnull=True) & Q(person__isnull=False)),
                name="billing_contractrate_role_xor_person",
            ),
            models.CheckConstraint(condition=Q(rate__gte=0), name="billing_contractrate_rate_non_negative"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="billing_contractrate_period_ordered",
            ),
            models.UniqueConstraint(
                fields=["contract", "role", "person", "effective_from", "change_order"],
                name="billing_contractrate_unique_start",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        who = self.person or self.role
        return f"{self.contract.code} {who} {self.rate} from {self.effective_from}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_contract_amendable()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any):
        self.check_contract_amendable()
        return super().delete(*args, **kwargs)

    def check_contract_amendable(self) -> None:
        """A rate of a live contract is added, changed or removed only by an approved change order."""
        if terms_unlocked():
            return
        status = Contract.objects.filter(pk=self.contract_id).values_list("status", flat=True).first()
        if status is not None and status != Contract.Status.DRAFT:
            code = getattr(self.contract, "code", self.contract_id)
            raise ContractTermsLockedError(
                f"Contract {code} is {status}: its rates change only through an approved change order. "
                "Raise a change order with the new rate instead.",
                field_errors={"rate": ["Changes only through an approved change order."]},
            )


class ChangeOrder(FSMModelMixin, TimeStamped):
    """A contract amendment; only an approved one changes billing."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="change_orders")
    code = models.CharField(max_length=40)
    description = models.TextField(blank=True, default="")
    cap_delta = models.DecimalField(**MONEY, default=Decimal("0"))
    # New terms the approval writes on the contract (empty: unchanged).
    new_cap = models.DecimalField(
        **MONEY, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Sets a not-to-exceed cap on a contract that has none (a contract with a cap: use the cap delta).",
    )
    new_payment_terms_days = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="New payment terms (days) of the contract; empty: unchanged.",
    )
    new_po_number = models.CharField(
        max_length=60, blank=True, default="", db_default="", help_text="New PO number; empty: unchanged."
    )
    new_billing_frequency = models.CharField(
        max_length=20, choices=Contract.Frequency.choices, blank=True, default="", db_default="",
        help_text="New billing frequency; empty: unchanged.",
    )
    new_purchase_order = models.ForeignKey(
        PurchaseOrder, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The client's PO the contract draws on from approval (its PO number follows); empty: unchanged.",
    )
    signed_document = models.FileField(upload_to="contracts/change_orders/", blank=True)
    signed_on = models.DateField(null=True, blank=True)
    status = FSMField(default=Status.DRAFT, choices=Status.choices, protected=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")
    history = HistoricalRecords()

    class Meta:
        ordering = ["contract", "code"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "code"], name="billing_changeorder_unique_code"),
            models.CheckConstraint(
                condition=Q(new_cap__isnull=True) | Q(new_cap__gte=0), name="billing_changeorder_new_cap_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contract.code}/{self.code}"

    def term_changes(self) -> dict[str, Any]:
        """The contract terms this change order sets on approval (field name → new value)."""
        changes: dict[str, Any] = {}
        if self.new_cap is not None:
            changes["cap"] = self.new_cap
        if self.new_payment_terms_days is not None:
            changes["payment_terms_days"] = self.new_payment_terms_days
        if self.new_po_number:
            changes["po_number"] = self.new_po_number
        if self.new_billing_frequency:
            changes["billing_frequency"] = self.new_billing_frequency
        if self.new_purchase_order_id:
            changes["purchase_order"] = self.new_purchase_order
        return changes

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.DRAFT, target=Status.SUBMITTED)
    def submit(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.SUBMITTED, target=Status.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.SUBMITTED, target=Status.REJECTED)
    def reject(self, by=None, description=None) -> None:
        pass


class ChangeOrderRate(models.Model):
    """A rate the change order introduces from a date (applied on approval)."""

    change_order = models.ForeignKey(ChangeOrder, on_delete=models.CASCADE, related_name="rates")
    role = models.ForeignKey(Role, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rate = models.DecimalField(**RATE, validators=[MinValueValidator(0)])
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(role__isnull=False) & Q(person__isnull=True))
                | (Q(role__isnull=True) & Q(person__isnull=False)),
                name="billing_changeorderrate_role_xor_person",
            ),
            models.CheckConstraint(condition=Q(rate__gte=0), name="billing_changeorderrate_rate_non_negative"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="billing_changeorderrate_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.change_order}: {self.person or self.role} {self.rate} from {self.effective_from}"


class ChangeOrderMilestone(models.Model):
    """A milestone the change order adds to a project (created on approval)."""

    change_order = models.ForeignKey(ChangeOrder, on_delete=models.CASCADE, related_name="milestones")
    project = models.ForeignKey("billing.Project", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    amount = models.DecimalField(**MONEY, validators=[MinValueValidator(0)])
    due_date = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="billing_changeordermilestone_amount_non_negative")
        ]

    def __str__(self) -> str:
        return f"{self.change_order}: {self.name}"


class Project(FSMModelMixin, ExternallyIdentified, TimeStamped):
    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        ACTIVE = "active", "Active"
        ON_HOLD = "on_hold", "On hold"
        COMPLETED = "completed", "Completed"
        CLOSED = "closed", "Closed"

    BILLABLE_STATUSES = (Status.ACTIVE, Status.COMPLETED)

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="projects")
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    business_unit = models.CharField(max_length=60, blank=True, default="", help_text="Practice.")
    project_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="managed_projects"
    )
    status = FSMField(default=Status.PLANNED, choices=Status.choices, protected=True)
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}".strip()

    @property
    def is_billable(self) -> bool:
        return self.status in self.BILLABLE_STATUSES

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=[Status.PLANNED, Status.ON_HOLD], target=Status.ACTIVE)
    def activate(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.ACTIVE, target=Status.ON_HOLD)
    def hold(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.ACTIVE, target=Status.COMPLETED)
    def complete(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.COMPLETED, target=Status.CLOSED)
    def close(self, by=None, description=None) -> None:
        pass
