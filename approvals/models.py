"""Approval policies, requests, decisions, delegations and reminders (docs/rules/approvals.md).

One engine for every approvable subject (invoice, credit note, milestone, change
order, time entry, expense): an `ApprovalPolicy` matched on the subject's facts
yields ordered `ApprovalStep`s; the subject gets one pending `ApprovalRequest`
that walks the steps; each step is settled by exactly one `ApprovalDecision`
(a unique constraint, so the database settles races). The models hold data,
constraints and FSM guards only; `approvals.services` does the work.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from approvals.registry import billing_model_choices, subject_type_choices
from kernel import roles
from kernel.fields import MONEY, PERCENT, TimeStamped

ROLE_CHOICES = [(name, name.replace("_", " ").capitalize()) for name in roles.ALL_ROLES]


class ApprovalPolicy(TimeStamped):
    """Which steps a subject needs, given its type and facts.

    Every condition left empty matches anything. Amounts are in the entity's
    currency; the range is `min_amount ≤ amount < max_amount`. An amount that
    cannot be converted (no FX rate) counts as the highest band: it only matches
    policies without `max_amount`. Among matching active policies the lowest
    `priority` wins, then the most specific (most conditions set).
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, default="")
    subject_type = models.CharField(max_length=20, choices=subject_type_choices)
    min_amount = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Inclusive, in the entity's currency. Empty: no lower bound."
    )
    max_amount = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Exclusive, in the entity's currency. Empty: no upper bound."
    )
    entity = models.ForeignKey("billing.LegalEntity", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    client = models.ForeignKey("billing.Client", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    billing_model = models.CharField(
        max_length=20, choices=billing_model_choices, blank=True, default="", help_text="Empty: any."
    )
    requires_warning = models.CharField(
        max_length=40,
        blank=True,
        default="",
        help_text="Only invoices with this (unresolved) exception code, e.g. ANOMALY or CLIENT_ON_CREDIT_HOLD.",
    )
    min_cap_growth_pct = models.DecimalField(
        **PERCENT,
        null=True,
        blank=True,
        help_text="Change orders only: matches when the cap grows by more than this percentage.",
    )
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower wins.")
    active = models.BooleanField(default=True)
    allow_override = models.BooleanField(
        default=True,
        db_default=True,
        help_text="Two finance controllers (one requests with a reason, another confirms) may skip the rest of "
        "the route. Untick to forbid overrides of this policy's route.",
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "approval policies"
        ordering = ["subject_type", "priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_amount__isnull=True) | Q(max_amount__isnull=True) | Q(max_amount__gt=F("min_amount")),
                name="approvals_policy_amount_range_ordered",
            ),
            models.CheckConstraint(
                condition=Q(min_cap_growth_pct__isnull=True) | Q(min_cap_growth_pct__gte=0),
                name="approvals_policy_cap_growth_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def specificity(self) -> int:
        """How many conditions the policy sets (more = more specific)."""
        return sum(
            1
            for value in (
                self.min_amount,
                self.max_amount,
                self.entity_id,
                self.client_id,
                self.billing_model or None,
                self.requires_warning or None,
                self.min_cap_growth_pct,
            )
            if value is not None
        )


class ApprovalStep(models.Model):
    """One step of a policy: who decides (a role, a named user, or the project's PM) and by when."""

    class ApproverKind(models.TextChoices):
        ROLE = "role", "Role"
        USER = "user", "Named user"
        PROJECT_MANAGER = "project_manager", "The project's manager"

    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField(help_text="Steps are decided in ascending order.")
    approver_kind = models.CharField(max_length=20, choices=ApproverKind.choices)
    role = models.CharField(max_length=40, choices=ROLE_CHOICES, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sla_hours = models.PositiveIntegerField(default=48, help_text="Hours the step may stay open before escalating.")
    escalation_role = models.CharField(
        max_length=40,
        choices=ROLE_CHOICES,
        blank=True,
        default=roles.FINANCE_CONTROLLER,
        help_text="Who gets the step when it is overdue (and may then decide it). Empty: nobody.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["policy", "order"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "order"], name="approvals_step_unique_order"),
            models.CheckConstraint(
                condition=(Q(approver_kind="role") & ~Q(role=""))
                | (Q(approver_kind="user") & Q(user__isnull=False))
                | Q(approver_kind="project_manager"),
                name="approvals_step_approver_given",
            ),
            models.CheckConstraint(condition=Q(sla_hours__gt=0), name="approvals_step_sla_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.order}. {self.approver_label}"

    @property
    def approver_label(self) -> str:
        if self.approver_kind == self.ApproverKind.USER:
            return approver_label(self.approver_kind, self.role, str(self.user) if self.user_id else None)
        return approver_label(self.approver_kind, self.role, None)


_ROLE_LABELS = dict(ROLE_CHOICES)


def approver_label(kind: str, role: str, user_name: str | None) -> str:
    """Who decides a step, from its columns alone: queues read them with the request, not as steps."""
    if kind == ApprovalStep.ApproverKind.ROLE:
        return _ROLE_LABELS.get(role, role)
    if kind == ApprovalStep.ApproverKind.USER:
        return user_name or "—"
    return "Project manager"


class ApprovalRequest(FSMModelMixin, TimeStamped):
    """The one pending approval of a subject, walking its policy's steps.

    `current_step` is the `order` of the open step. The subject's facts that the
    routing needs are copied when the request opens (amount, contract, project,
    the person barred by segregation of duties) so queues can filter in SQL.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    class EscalationReason(models.TextChoices):
        NONE = "", "—"
        SLA = "sla", "Past its SLA"
        NO_ELIGIBLE_APPROVER = "no_eligible_approver", "Designated approver barred (segregation of duties)"

    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.PositiveBigIntegerField()
    subject = GenericForeignKey("content_type", "object_id")
    subject_type = models.CharField(max_length=20, choices=subject_type_choices)
    policy = models.ForeignKey(ApprovalPolicy, on_delete=models.PROTECT, related_name="requests")
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True)
    current_step = models.PositiveSmallIntegerField(help_text="Order of the step now open.")
    step_opened_at = models.DateTimeField(default=timezone.now)
    sla_due_at = models.DateTimeField(help_text="When the open step becomes overdue.")
    escalated = models.BooleanField(default=False)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalation_reason = models.CharField(
        max_length=30, choices=EscalationReason.choices, blank=True, default=EscalationReason.NONE
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prepared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Preparer, owner, completer or submitter of the subject: may not decide any step.",
    )
    contract = models.ForeignKey("billing.Contract", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey("billing.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    entity_amount = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="In the entity's currency; empty: no FX rate (highest band)."
    )
    warning_codes = models.JSONField(default=list, blank=True, help_text="Warnings the policy was matched on.")
    decided_at = models.DateTimeField(null=True, blank=True)
    outcome_reason = models.TextField(blank=True, default="", help_text="Reason of a rejection or cancellation.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["sla_due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "object_id"],
                condition=Q(status="pending"),
                name="approvals_one_pending_request_per_subject",
            ),
            models.CheckConstraint(
                condition=Q(escalated=False) | Q(escalated_at__isnull=False),
                name="approvals_request_escalated_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "sla_due_at"], name="approvals_request_status_due"),
            models.Index(fields=["content_type", "object_id"], name="approvals_request_subject"),
        ]

    def __str__(self) -> str:
        return f"Approval {self.pk} of {self.get_subject_type_display().lower()} {self.object_id}"

    @property
    def is_overdue(self) -> bool:
        return self.status == self.Status.PENDING and self.sla_due_at < timezone.now()

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.REJECTED)
    def reject(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.CANCELLED)
    def cancel(self, by=None, description=None) -> None:
        pass


class ApprovalDecision(models.Model):
    """Who decided which step, how, when, and on whose behalf. One per step: the DB settles races."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    step_order = models.PositiveSmallIntegerField()
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Set when the approver acted as the delegate of this user.",
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True, default="")
    override = models.ForeignKey(
        "ApprovalOverride",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decisions",
        help_text="Set when the step was skipped by a confirmed route override (four eyes).",
    )
    step_opened_at = models.DateTimeField(null=True, blank=True, help_text="For approval latency (docs/rules/kpis.md).")
    decided_at = models.DateTimeField(default=timezone.now)
    history = HistoricalRecords()

    class Meta:
        ordering = ["request", "step_order"]
        constraints = [
            models.UniqueConstraint(fields=["request", "step_order"], name="approvals_one_decision_per_step"),
            models.CheckConstraint(
                condition=Q(on_behalf_of__isnull=True) | ~Q(on_behalf_of=F("approver")),
                name="approvals_decision_not_on_behalf_of_self",
            ),
            models.CheckConstraint(
                condition=Q(decision="approve") | ~Q(comment=""), name="approvals_decision_reject_has_reason"
            ),
            models.CheckConstraint(
                condition=Q(override__isnull=True) | (Q(decision="approve") & ~Q(comment="")),
                name="approvals_decision_override_approves_with_reason",
            ),
        ]

    def __str__(self) -> str:
        who = f"{self.approver} on behalf of {self.on_behalf_of}" if self.on_behalf_of_id else str(self.approver)
        return f"Step {self.step_order}: {self.get_decision_display()} by {who}"


class ApprovalOverride(FSMModelMixin, TimeStamped):
    """A controller's request to skip the rest of a pending route, and a second controller's confirmation.

    Four eyes in the database too: a reason is required, the confirmer is never
    the requester, and a request has at most one override awaiting confirmation.
    Confirming records an approval on every step not yet decided (`decisions`).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting a second controller"
        CONFIRMED = "confirmed", "Confirmed"
        WITHDRAWN = "withdrawn", "Withdrawn"
        LAPSED = "lapsed", "Lapsed (the approval was settled otherwise)"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="overrides")
    status = FSMField(default=Status.PENDING, choices=Status.choices, protected=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(help_text="Why the route may be skipped (required, shown on the subject's page).")
    from_step = models.PositiveSmallIntegerField(help_text="The step open when the override was requested.")
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True, default="", help_text="The confirmer's comment, or why it was withdrawn.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="approvals_override_has_reason"),
            models.CheckConstraint(
                condition=Q(confirmed_by__isnull=True) | ~Q(confirmed_by=F("requested_by")),
                name="approvals_override_four_eyes",
            ),
            models.CheckConstraint(
                condition=~Q(status="confirmed") | Q(confirmed_by__isnull=False, confirmed_at__isnull=False),
                name="approvals_override_confirmed_has_confirmer",
            ),
            models.UniqueConstraint(
                fields=["request"], condition=Q(status="pending"), name="approvals_one_pending_override_per_request"
            ),
        ]

    def __str__(self) -> str:
        return f"Override of approval {self.request_id} ({self.get_status_display().lower()})"

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.CONFIRMED)
    def confirm(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.WITHDRAWN)
    def withdraw(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PENDING, target=Status.LAPSED)
    def lapse(self, by=None, description=None) -> None:
        pass


class Delegation(TimeStamped):
    """Out of office: from `starts_on` to `ends_on` (inclusive) the delegate may act for the delegator."""

    delegator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="delegations_given")
    delegate = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="delegations_received"
    )
    starts_on = models.DateField()
    ends_on = models.DateField()
    reason = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-starts_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="approvals_delegation_period_ordered"
            ),
            models.CheckConstraint(condition=~Q(delegate=F("delegator")), name="approvals_delegation_not_to_self"),
        ]
        indexes = [models.Index(fields=["delegate", "starts_on", "ends_on"], name="approvals_delegation_active")]

    def __str__(self) -> str:
        return f"{self.delegator} → {self.delegate} ({self.starts_on}–{self.ends_on})"

    def is_active_on(self, day) -> bool:
        return self.starts_on <= day <= self.ends_on


class Reminder(models.Model):
    """A reminder or escalation e-mail that went out; the unique key stops a second one the same day."""

    class Kind(models.TextChoices):
        SLA_ESCALATION = "sla_escalation", "Escalation of an overdue approval"
        APPROVAL_OVERDUE = "approval_overdue", "Overdue approval"
        MISSING_TIME = "missing_time", "Missing or unsubmitted time"
        EXCEPTION_DIGEST = "exception_digest", "Weekly exception digest"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    subject_key = models.CharField(max_length=200, help_text="What the reminder is about, e.g. approval-request:42.")
    sent_on = models.DateField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "recipient", "subject_key", "sent_on"], name="approvals_reminder_once_a_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} on {self.sent_on} ({self.subject_key})"
