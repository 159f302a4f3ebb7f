"""Read models of billing's work screens (timesheet, PM queues).

Each runs a fixed number of queries whatever the number of rows."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Page
from django.db.models import Count, Exists, Min, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.forms_work import cell_name, week_key
from billing.models import (
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Expense,
    Invoice,
    Milestone,
    Person,
    Project,
    TimeEntry,
)
from billing.models.contracts import Contract
from billing.models.work import WorkStatus, project_bookable
from kernel.listing import age_label, paginate

ZERO = Decimal("0")
RECENT_WEEKS = 8


@dataclass
class CapFigures:
    """Cap = contract cap + approved change-order deltas; used = net invoiced.

    Net invoiced as the billing engine counts it (§3.8): invoice minus credit-note
    subtotals, every status but cancelled.
    """

    currency: str
    cap: Decimal | None
    deltas: Decimal
    invoiced: Decimal

    @property
    def total(self) -> Decimal | None:
        return None if self.cap is None else self.cap + self.deltas

    @property
    def remaining(self) -> Decimal | None:
        return None if self.cap is None else self.total - self.invoiced

    @property
    def used_pct(self) -> int | None:
        total = self.total
        if total is None or total <= 0:
            return None
        return int(min(self.invoiced / total * 100, Decimal("999")))


def contract_caps(contracts: Iterable[Contract]) -> dict[int, CapFigures]:
    """Cap figures of the given contracts, in two queries (as the billing engine counts them, §3.8)."""
    by_id = {c.pk: c for c in contracts}
    if not by_id:
        return {}
    deltas = dict(
        ChangeOrder.objects.filter(contract_id__in=by_id, status=ChangeOrder.Status.APPROVED)
        .values("contract_id")
        .annotate(total=Sum("cap_delta"))
        .values_list("contract_id", "total")
    )
    invoiced: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for contract_id, kind, total in (
        Invoice.objects.filter(contract_id__in=by_id)
        .exclude(status=Invoice.Status.CANCELLED)
        .values("contract_id", "kind")
        .annotate(total=Sum("subtotal"))
        .values_list("contract_id", "kind", "total")
    ):
        invoiced[contract_id] += -(total or ZERO) if kind == Invoice.Kind.CREDIT_NOTE else (total or ZERO)
    return {
        pk: CapFigures(c.currency, c.cap, deltas.get(pk) or ZERO, invoiced[pk]) for pk, c in by_id.items()
    }


@dataclass
class Cell:
    day: datetime.date
    name: str
    entries: list[TimeEntry]
    editable: bool
    value: str = ""
    error: str = ""

    @property
    def hours(self) -> Decimal:
        return sum((e.hours for e in self.entries), ZERO)

    @property
    def entry(self) -> TimeEntry | None:
        """The one draft or rejected entry behind an editable cell."""
        return self.entries[0] if self.editable and self.entries else None

    @property
    def status(self) -> str:
        statuses = {e.status for e in self.entries}
        return statuses.pop() if len(statuses) == 1 else ("mixed" if statuses else "")

    @property
    def status_label(self) -> str:
        status = self.status
        return "Several" if status == "mixed" else WorkStatus(status).label if status else ""

    @property
    def rejected(self) -> bool:
        return any(e.status == WorkStatus.REJECTED for e in self.entries)

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5


@dataclass
class Row:
    project: Project
    cells: list[Cell]
    note: str = ""
    note_changed: bool = False

    @property
    def total(self) -> Decimal:
        return sum((c.hours for c in self.cells), ZERO)

    @property
    def bookable(self) -> bool:
        return project_bookable(self.project)


@dataclass
class Rejection:
    entry: TimeEntry
    rejected_by: Any
    rejected_at: datetime.datetime | None


@dataclass
class Timesheet:
    person: Person
    monday: datetime.date
    days: list[datetime.date]
    rows: list[Row]
    rejections: list[Rejection]
    other_rejected_weeks: list[str]
    addable: list[tuple[int, str, str]]  # (pk, code, name)

    @property
    def key(self) -> str:
        return week_key(self.monday)

    @property
    def prev_key(self) -> str:
        return week_key(self.monday - datetime.timedelta(days=7))

    @property
    def next_key(self) -> str:
        return week_key(self.monday + datetime.timedelta(days=7))

    @property
    def week_number(self) -> int:
        return self.monday.isocalendar()[1]

    @property
    def sunday(self) -> datetime.date:
        return self.days[-1]

    @property
    def day_totals(self) -> list[tuple[datetime.date, Decimal]]:
        return [(day, sum((row.cells[i].hours for row in self.rows), ZERO)) for i, day in enumerate(self.days)]

    @property
    def total(self) -> Decimal:
        return sum((row.total for row in self.rows), ZERO)

    @property
    def entries(self) -> list[TimeEntry]:
        return [e for row in self.rows for c in row.cells for e in c.entries]

    @property
    def counts(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            found[entry.status] += 1
        return dict(found)

    @property
    def hours_by_status(self) -> list[tuple[str, str, Decimal, int]]:
        hours: dict[str, Decimal] = defaultdict(lambda: ZERO)
        counts: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            hours[entry.status] += entry.hours
            counts[entry.status] += 1
        return [(s.value, s.label, hours[s.value], counts[s.value]) for s in WorkStatus if counts[s.value]]

    @property
    def open_entries(self) -> int:
        """Draft or rejected entries that "Submit week" sends."""
        counts = self.counts
        return counts.get(WorkStatus.DRAFT, 0) + counts.get(WorkStatus.REJECTED, 0)

    @property
    def editable(self) -> bool:
        return any(c.editable for row in self.rows for c in row.cells)


def build_timesheet(person: Person, monday: datetime.date, *, extra_project_ids: Iterable[int] = ()) -> Timesheet:
    """The person's week: rows for projects booked this week, recently (still active), or added; six queries."""
    days = [monday + datetime.timedelta(days=i) for i in range(7)]
    sunday = days[-1]
    entries = list(
        TimeEntry.objects.filter(person=person, date__gte=monday, date__lte=sunday).order_by("date", "pk")
    )
    week_ids = {e.project_id for e in entries}
    recent = TimeEntry.objects.filter(
        person=person, date__gte=monday - datetime.timedelta(weeks=RECENT_WEEKS), date__lte=sunday
    ).values("project_id")
    active = Q(status=Project.Status.ACTIVE, contract__status=Contract.Status.ACTIVE)
    extras = {int(pk) for pk in extra_project_ids if str(pk).isdigit()}
    projects = list(
        Project.objects.filter(Q(pk__in=week_ids) | (active & (Q(pk__in=recent) | Q(pk__in=extras))))
        .select_related("contract", "contract__client")
        .order_by("code")
    )
    by_cell: dict[tuple[int, datetime.date], list[TimeEntry]] = defaultdict(list)
    for entry in entries:
        by_cell[(entry.project_id, entry.date)].append(entry)
    rows = []
    for project in projects:
        row = Row(project=project, cells=[])
        bookable = row.bookable
        for day in days:
            cell_entries = by_cell.get((project.pk, day), [])
            for entry in cell_entries:
                entry.project = project
            editable = bookable and len(cell_entries) <= 1 and all(
                e.status in (WorkStatus.DRAFT, WorkStatus.REJECTED) for e in cell_entries
            )
            cell = Cell(day=day, name=cell_name(project.pk, day), entries=cell_entries, editable=editable)
            cell.value = hours_text(cell.hours) if cell_entries else ""
            row.cells.append(cell)
        row.note = next((e.description for c in row.cells for e in c.entries if e.description), "")
        rows.append(row)

    rejected = [e for e in entries if e.status == WorkStatus.REJECTED]
    logs: dict[int, StateLog] = {}
    if rejected:
        for log in (
            StateLog.objects.filter(
                content_type=ContentType.objects.get_for_model(TimeEntry),
                object_id__in=[str(e.pk) for e in rejected],
                transition="reject",
            )
            .select_related("by")
            .order_by("timestamp")
        ):
            logs[int(log.object_id)] = log
    rejections = [
        Rejection(e, logs[e.pk].by if e.pk in logs else None, logs[e.pk].timestamp if e.pk in logs else None)
        for e in rejected
    ]
    other_weeks = sorted(
        {
            week_key(d - datetime.timedelta(days=d.weekday()))
            for d in TimeEntry.objects.filter(person=person, status=WorkStatus.REJECTED)
            .exclude(date__gte=monday, date__lte=sunday)
            .values_list("date", flat=True)
        }
    )
    # (pk, code, name) of every other active project: the picker lists hundreds in a firm of real size.
    addable = list(
        Project.objects.filter(active)
        .exclude(pk__in=[p.pk for p in projects])
        .order_by("code")
        .values_list("pk", "code", "name")
    )
    return Timesheet(person, monday, days, rows, rejections, other_weeks, addable)


def hours_text(hours: Decimal) -> str:
    return f"{hours.normalize():f}" if hours == hours.to_integral() else f"{hours:.2f}".rstrip("0")


# --- PM: time & expenses ---------------------------------------------------------------------------------


@dataclass
class ProjectWeek:
    project: Project
    cells: list[list[TimeEntry]]

    @property
    def total(self) -> Decimal:
        return sum((e.hours for cell in self.cells for e in cell), ZERO)

    @property
    def day_cells(self) -> list[tuple[list[TimeEntry], Decimal]]:
        """Each day's entries with their sum: a day may hold several entries, stacked in its one cell."""
        return [(cell, sum((e.hours for e in cell), ZERO)) for cell in self.cells]

    @property
    def non_billable(self) -> bool:
        return any(not e.billable for cell in self.cells for e in cell)


@dataclass
class WeekGroup:
    """One person's submitted work in one ISO week on the PM's projects."""

    person_id: int
    person_name: str
    monday: datetime.date
    hours: Decimal = ZERO
    non_billable_hours: Decimal = ZERO
    time_count: int = 0
    expense_count: int = 0
    oldest: datetime.datetime | None = None
    person_user_id: int | None = None
    rows: list[ProjectWeek] = field(default_factory=list)
    expenses: list[Expense] = field(default_factory=list)
    age: str = ""

    @property
    def key(self) -> str:
        return f"{self.person_id}-{week_key(self.monday)}"

    @property
    def week(self) -> str:
        return week_key(self.monday)

    @property
    def days(self) -> list[datetime.date]:
        return [self.monday + datetime.timedelta(days=i) for i in range(7)]

    @property
    def day_totals(self) -> list[Decimal]:
        return [sum((e.hours for row in self.rows for e in row.cells[i]), ZERO) for i in range(7)]

    @property
    def time_ids(self) -> list[int]:
        return [e.pk for row in self.rows for cell in row.cells for e in cell]

    @property
    def expense_totals(self) -> list[tuple[str, Decimal]]:
        totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for expense in self.expenses:
            totals[expense.currency] += expense.amount
        return sorted(totals.items())


@dataclass
class PmTimeQueue:
    page: Page
    groups: list[WeekGroup]
    projects: list[Project]
    people: list[tuple[int, str]]
    total_groups: int
    total_hours: Decimal
    total_items: int


def pm_time_queue(
    user: Any,
    *,
    project: Project | None = None,
    person_id: int | None = None,
    monday: datetime.date | None = None,
    page_number: str | None = None,
) -> PmTimeQueue:
    """Submitted time and expenses of the PM's projects, grouped by person and ISO week, oldest week first."""
    scope = Q(status=WorkStatus.SUBMITTED, project__project_manager=user)
    if project is not None:
        scope &= Q(project=project)
    if person_id is not None:
        scope &= Q(person_id=person_id)
    if monday is not None:
        scope &= Q(date__gte=monday, date__lte=monday + datetime.timedelta(days=6))

    groups: dict[tuple[int, datetime.date], WeekGroup] = {}

    def group(row: dict) -> WeekGroup:
        key = (row["person_id"], row["week"])
        if key not in groups:
            groups[key] = WeekGroup(
                row["person_id"], row["person__name"], row["week"], person_user_id=row["person__user_id"]
            )
        found = groups[key]
        if row["oldest"] and (found.oldest is None or row["oldest"] < found.oldest):
            found.oldest = row["oldest"]
        return found

    weekly = ("person_id", "person__name", "person__user_id", "week")
    for row in (
        TimeEntry.objects.filter(scope)
        .annotate(week=TruncWeek("date"))
        .values(*weekly)
        .annotate(
            total_hours=Sum("hours"),
            non_billable=Sum("hours", filter=Q(billable=False)),
            n=Count("pk"),
            oldest=Min("submitted_at"),
        )
        .order_by()
    ):
        g = group(row)
        g.hours, g.non_billable_hours, g.time_count = row["total_hours"], row["non_billable"] or ZERO, row["n"]
    for row in (
        Expense.objects.filter(scope)
        .annotate(week=TruncWeek("date"))
        .values(*weekly)
        .annotate(n=Count("pk"), oldest=Min("submitted_at"))
        .order_by()
    ):
        group(row).expense_count = row["n"]

    ordered = sorted(groups.values(), key=lambda g: (g.monday, g.person_name, g.person_id))
    page = paginate(ordered, page_number)
    shown: list[WeekGroup] = list(page.object_list)
    now = timezone.now()
    if shown:
        in_page = Q()
        for g in shown:
            in_page |= Q(person_id=g.person_id, date__gte=g.monday, date__lte=g.monday + datetime.timedelta(days=6))
        by_group = {(g.person_id, g.monday): g for g in shown}
        rows: dict[tuple[int, datetime.date, int], ProjectWeek] = {}
        for entry in TimeEntry.objects.filter(scope & in_page).select_related("project").order_by(
            "project__code", "date", "pk"
        ):
            monday_of = entry.date - datetime.timedelta(days=entry.date.weekday())
            g = by_group[(entry.person_id, monday_of)]
            key = (entry.person_id, monday_of, entry.project_id)
            if key not in rows:
                rows[key] = ProjectWeek(entry.project, [[] for _ in range(7)])
                g.rows.append(rows[key])
            rows[key].cells[entry.date.weekday()].append(entry)
        for expense in Expense.objects.filter(scope & in_page).select_related("project").order_by("date", "pk"):
            monday_of = expense.date - datetime.timedelta(days=expense.date.weekday())
            by_group[(expense.person_id, monday_of)].expenses.append(expense)
        for g in shown:
            g.age = age_label(g.oldest, now)

    projects = list(Project.objects.filter(project_manager=user).only("pk", "code", "name").order_by("code"))
    people = sorted({(g.person_id, g.person_name) for g in groups.values()}, key=lambda p: p[1])
    return PmTimeQueue(
        page=page,
        groups=shown,
        projects=projects,
        people=people,
        total_groups=len(ordered),
        total_hours=sum((g.hours for g in ordered), ZERO),
        total_items=sum(g.time_count + g.expense_count for g in ordered),
    )


# --- PM: milestones and change orders --------------------------------------------------------------------


def pm_milestones(user: Any, *, status: str, project: Project | None, page_number: str | None) -> Page:
    qs = (
        Milestone.objects.filter(project__project_manager=user, status=status)
        .select_related("project", "project__contract", "project__contract__client", "completed_by")
        .order_by("completed_at" if status == Milestone.Status.COMPLETED else "due_date", "pk")
    )
    if project is not None:
        qs = qs.filter(project=project)
    return paginate(qs, page_number)


def managed_contracts(user: Any) -> QuerySet[Project]:
    return Project.objects.filter(project_manager=user)


def pm_change_orders(user: Any, *, contract: Contract | None, page_number: str | None) -> Page:
    mine = managed_contracts(user).filter(contract=OuterRef("contract"))
    qs = (
        ChangeOrder.objects.filter(Exists(mine), status=ChangeOrder.Status.SUBMITTED)
        .select_related("contract", "contract__client", "submitted_by")
        .prefetch_related(
            Prefetch("rates", queryset=ChangeOrderRate.objects.select_related("role", "person").order_by("pk")),
            Prefetch("milestones", queryset=ChangeOrderMilestone.objects.select_related("project").order_by("pk")),
        )
        .order_by("submitted_at", "pk")
    )
    if contract is not None:
        qs = qs.filter(contract=contract)
    return paginate(qs, page_number)
