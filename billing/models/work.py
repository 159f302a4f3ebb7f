"""Delivered work: time entries, expenses and milestones, each with its FSM.

A billed item points at the one invoice line that bills it (`invoice_line`);
the column holds one value, so an item can never sit on two lines, and the
check constraint ties the `invoiced` status to that link. Cancelling a draft or
a full credit note clears the link and returns the item to `approved`.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, FSMModelMixin, transition
from django_fsm_log.decorators import fsm_log_by, fsm_log_description
from simple_history.models import HistoricalRecords

from billing.models.contracts import Contract, Project
from billing.models.masterdata import Person
from kernel.fields import (
    HOURS,
    MONEY,
    ExternallyIdentified,
    TimeStamped,
    currency_field,
    supported_currency_constraint,
)

#: Nobody works more than a day: the hours one person books on one date never exceed this.
MAX_HOURS_PER_DAY = Decimal("24")


def timesheet_cutoff(period_end: date) -> date:
    """The day from which a month's time is late (the LATE_TIME rule, the missing-time reminder): the one home.

    `BILLING_TIMESHEET_CUTOFF_DAYS` (default 2) days after the day following the month's last day;
    the cut-off instant is 00:00 UTC of that day.
    """
    return period_end + timedelta(days=1 + int(getattr(settings, "BILLING_TIMESHEET_CUTOFF_DAYS", 2)))



def bookable_projects() -> Q:
    """Projects open to new work (the project and its contract active), as a filter on `Project`."""
    return Q(status=Project.Status.ACTIVE, contract__status=Contract.Status.ACTIVE)


def project_bookable(project: Project) -> bool:
    """The same rule for one project (its contract loaded): the timesheet's editable rows."""
    return project.status == Project.Status.ACTIVE and project.contract.status == Contract.Status.ACTIVE


def booking_refusal(person: Person, project: Project) -> tuple[str, str, str, str] | None:
    """Why `person` may not book work on `project` now, or None: the one home of "work must be bookable".

    New work needs an active person on an active project of an active contract. Returns
    `(code, message, party, short)`: `party` is "person" or "project" (which input is wrong) and
    `short` the field error; each caller names the field in its own input shape.
    """
    if not person.active:
        return "person_inactive", f"{person} is inactive and cannot book work.", "person", "Person is inactive."
    if project.status != Project.Status.ACTIVE:
        return (
            "project_not_active",
            f"Project {project.code} is {project.get_status_display().lower()}; work can only be booked "
            "on an active project.",
            "project",
            "Project is not active.",
        )
    contract = project.contract
    if contract.status != contract.Status.ACTIVE:
        return (
            "contract_not_active",
            f"Contract {contract.code} is {contract.get_status_display().lower()}; "
            "work can only be booked under an active contract.",
            "project",
            "Contract is not active.",
        )
    return None


class WorkStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    INVOICED = "invoiced", "Invoiced"


#: Condition of the status indexes of time and expenses: billed work (the bulk of the table, which
#: queries reach by project, line or person) is not in them.
NOT_INVOICED = ~Q(status="invoiced")
OPEN_WORK = Q(status__in=["draft", "rejected", "submitted"])


def _invoiced_iff_linked(prefix: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=(Q(status="invoiced") & Q(invoice_line__isnull=False))
        | (~Q(status="invoiced") & Q(invoice_line__isnull=True)),
        name=f"billing_{prefix}_invoiced_iff_linked",
    )


class SubmittedWork(FSMModelMixin, ExternallyIdentified, TimeStamped):
    """Shared FSM of time entries and expenses (docs/rules/domain.md)."""

    Status = WorkStatus

    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    date = models.DateField()
    description = models.CharField(max_length=500, blank=True, default="")
    billable = models.BooleanField(default=True)
    status = FSMField(default=WorkStatus.DRAFT, choices=WorkStatus.choices, protected=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True, default="")
    invoice_line = models.ForeignKey(
        "billing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        abstract = True

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.DRAFT, target=WorkStatus.SUBMITTED)
    def submit(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.SUBMITTED, target=WorkStatus.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.SUBMITTED, target=WorkStatus.REJECTED)
    def reject(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.REJECTED, target=WorkStatus.DRAFT)
    def redraft(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.APPROVED, target=WorkStatus.SUBMITTED)
    def reopen(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.APPROVED, target=WorkStatus.INVOICED)
    def mark_invoiced(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field="status", source=WorkStatus.INVOICED, target=WorkStatus.APPROVED)
    def release(self, by=None, description=None) -> None:
        pass


class TimeEntry(SubmittedWork):
    # No index of its own: `billing_time_person_date` (person, date) serves every look-up by person.
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="time_entries", db_index=False)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="time_entries")
    hours = models.DecimalField(**HOURS)
    invoice_line = models.ForeignKey(
        "billing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="time_entries"
    )
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        verbose_name_plural = "time entries"
        ordering = ["date", "id"]
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.CheckConstraint(
                condition=Q(hours__gt=0) & Q(hours__lte=MAX_HOURS_PER_DAY), name="billing_timeentry_hours_range"
            ),
            _invoiced_iff_linked("timeentry"),
        ]
        indexes = [
            # Work in flight only: queries filter a status before billing (submitted, approved); the
            # billing run's link (approved → invoiced) then leaves this index alone (ADR 0110).
            models.Index(fields=["status", "date"], name="billing_time_status_date", condition=NOT_INVOICED),
            models.Index(fields=["person", "date"], name="billing_time_person_date"),
            # Open work by project: the PM's queue and every page's navigation count read it. Small (only
            # what waits for a consultant or a PM) and never touched by approval-to-invoice updates.
            models.Index(fields=["project", "status"], name="billing_time_open_project", condition=OPEN_WORK),
        ]

    def __str__(self) -> str:
        return f"{self.person} {self.date} {self.hours}h {self.project.code}"


class Expense(SubmittedWork):
    class Category(models.TextChoices):
        TRAVEL = "travel", "Travel"
        LODGING = "lodging", "Lodging"
        MEALS = "meals", "Meals"
        SOFTWARE = "software", "Software"
        OTHER = "other", "Other"

    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="expenses")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="expenses")
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.OTHER)
    amount = models.DecimalField(**MONEY)
    currency = currency_field()
    receipt = models.FileField(upload_to="expenses/receipts/", blank=True)
    invoice_line = models.ForeignKey(
        "billing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="expenses"
    )
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["date", "id"]
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.CheckConstraint(condition=Q(amount__gt=0), name="billing_expense_amount_positive"),
            supported_currency_constraint("expense"),
            _invoiced_iff_linked("expense"),
        ]
        indexes = [models.Index(fields=["status", "date"], name="billing_expense_status_date", condition=NOT_INVOICED)]

    def __str__(self) -> str:
        return f"{self.person} {self.date} {self.amount} {self.currency}"


class Milestone(FSMModelMixin, ExternallyIdentified, TimeStamped):
    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        COMPLETED = "completed", "Completed"
        APPROVED = "approved", "Approved"
        INVOICED = "invoiced", "Invoiced"

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="milestones")
    name = models.CharField(max_length=200)
    amount = models.DecimalField(**MONEY)
    due_date = models.DateField(null=True, blank=True)
    evidence = models.TextField(blank=True, default="", help_text="What proves the milestone was delivered.")
    status = FSMField(default=Status.PLANNED, choices=Status.choices, protected=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    change_order = models.ForeignKey(
        "billing.ChangeOrder", null=True, blank=True, on_delete=models.PROTECT, related_name="added_milestones"
    )
    invoice_line = models.ForeignKey(
        "billing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="milestones"
    )
    history = HistoricalRecords()

    class Meta(ExternallyIdentified.Meta):
        ordering = ["project", "due_date", "id"]
        constraints = [
            *ExternallyIdentified.Meta.constraints,
            models.CheckConstraint(condition=Q(amount__gte=Decimal("0")), name="billing_milestone_amount_non_negative"),
            _invoiced_iff_linked("milestone"),
        ]

    def __str__(self) -> str:
        return f"{self.project.code}: {self.name}"

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.PLANNED, target=Status.COMPLETED)
    def complete(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.COMPLETED, target=Status.APPROVED)
    def approve(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.APPROVED, target=Status.INVOICED)
    def mark_invoiced(self, by=None, description=None) -> None:
        pass

    @fsm_log_by
    @fsm_log_description
    @transition(field=status, source=Status.INVOICED, target=Status.APPROVED)
    def release(self, by=None, description=None) -> None:
        pass
