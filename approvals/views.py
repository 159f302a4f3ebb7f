"""Approval screens: the consultant's timesheet and expenses, the PM's queues, "my approvals", delegation.

Thin views: every change goes through a service (`billing.services.work`,
`.milestones`, `.change_orders`, `approvals.services`), whose
`ApplicationError.message` is shown as it is. Who may open what is checked
here per object (403 on another PM's project or another person's work); the
services and the approval engine check again, including segregation of duties.

The read models of these screens live in the "screen models" section below;
each runs a fixed number of queries whatever the number of rows.
TODO(selectors): move that section to `approvals/selectors.py` (reported to the lead).
"""

from __future__ import annotations

import datetime
import functools
import mimetypes
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Count, Exists, Min, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncWeek
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_fsm_log.models import StateLog

from approvals.forms import (
    DecisionForm,
    DelegationForm,
    ExpenseForm,
    ReasonForm,
    cell_name,
    parse_hours,
    parse_week,
    week_key,
)
from approvals.models import ApprovalDecision, ApprovalRequest, ApprovalStep, Delegation, SubjectType
from approvals.registry import subject_label
from approvals.selectors import approvals_of, my_approvals
from approvals.services import (
    approval_decide,
    approval_reject,
    check_decider,
    delegation_create,
    delegation_end,
)
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
from billing.models.work import MAX_HOURS_PER_DAY, WorkStatus
from billing.services.change_orders import change_order_approve, change_order_reject
from billing.services.milestones import milestone_approve, milestone_complete, milestone_resubmit
from billing.services.work import (
    expense_create,
    expense_update_draft,
    time_entry_create,
    time_entry_discard_draft,
    time_entry_update_draft,
    work_approve_bulk,
    work_redraft,
    work_reject,
    work_submit,
    work_submit_bulk,
)
from kernel.errors import ApplicationError, ConflictError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.params import int_param
from kernel.roles import (
    AUDITOR,
    BILLING_ADMIN,
    CONSULTANT,
    FINANCE_ANALYST,
    FINANCE_CONTROLLER,
    PROJECT_MANAGER,
    has_role,
)
from kernel.roles import cached_user_roles as memoised_user_roles

PAGE_SIZE = 50
ZERO = Decimal("0")
RECENT_WEEKS = 8
READ_ALL_ROLES = {FINANCE_ANALYST, FINANCE_CONTROLLER, AUDITOR, BILLING_ADMIN}


# =====================================================================================================
# Screen models (reads)
# =====================================================================================================


def paginate(items: QuerySet | list, page_number: str | None, *, per_page: int = PAGE_SIZE) -> Page:
    return Paginator(items, per_page).get_page(page_number)


def age_label(since: datetime.datetime | None, now: datetime.datetime) -> str:
    """Compact age for queues: `45 min`, `7 h`, `3 d`."""
    if since is None:
        return ""
    seconds = max((now - since).total_seconds(), 0)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def display_name(user: Any) -> str:
    if user is None:
        return "system"
    return user.get_full_name() or user.get_username()


# --- contract caps ------------------------------------------------------------------------------------


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


# --- approval requests of listed subjects ----------------------------------------------------------------


@dataclass
class Routing:
    """Where a subject's approval stands, for a queue row."""

    request: ApprovalRequest | None
    can_decide: bool

    @property
    def pending(self) -> bool:
        return self.request is not None and self.request.status == ApprovalRequest.Status.PENDING

    @property
    def step(self) -> ApprovalStep | None:
        if self.request is None:
            return None
        return next((s for s in self.request.policy.steps.all() if s.order == self.request.current_step), None)

    @property
    def step_count(self) -> int:
        return len(self.request.policy.steps.all()) if self.request else 0

    @property
    def last_decision(self) -> ApprovalDecision | None:
        decisions = list(self.request.decisions.all()) if self.request else []
        return decisions[-1] if decisions else None


def routings(user: Any, model: type, ids: list[int]) -> dict[int, Routing]:
    """Latest approval request of each subject and whether `user` may decide it now (four queries + my_approvals')."""
    if not ids:
        return {}
    content_type = ContentType.objects.get_for_model(model)
    latest: dict[int, ApprovalRequest] = {}
    for request in (
        ApprovalRequest.objects.filter(content_type=content_type, object_id__in=ids)
        .select_related("policy")
        .prefetch_related(
            Prefetch("policy__steps", queryset=ApprovalStep.objects.order_by("order")),
            Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("approver").order_by("step_order")),
        )
        .order_by("object_id", "-pk")
    ):
        latest.setdefault(request.object_id, request)
    decidable = set(
        my_approvals(user).filter(content_type=content_type, object_id__in=ids).values_list("object_id", flat=True)
    )
    return {pk: Routing(latest.get(pk), pk in decidable) for pk in ids}


# --- timesheet ------------------------------------------------------------------------------------------


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
        return self.project.status == Project.Status.ACTIVE and self.project.contract.status == Contract.Status.ACTIVE


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
    addable: list[Project]

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
            cell.value = _hours_text(cell.hours) if cell_entries else ""
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
    addable = list(
        Project.objects.filter(active)
        .exclude(pk__in=[p.pk for p in projects])
        .only("pk", "code", "name")
        .order_by("code")
    )
    return Timesheet(person, monday, days, rows, rejections, other_weeks, addable)


def _hours_text(hours: Decimal) -> str:
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


# =====================================================================================================
# Access
# =====================================================================================================


def _roles(request: HttpRequest) -> frozenset[str]:
    return memoised_user_roles(request.user)


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "approvals/forbidden.html", {"reason": reason}, status=403)


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _render(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Full page; for htmx (after an inline action) the swapped region shows the messages itself."""
    context = {**context, "inline_messages": _is_htmx(request), "here": request.get_full_path(),
               "ap_roles": _roles(request)}
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response



def consultant_view(view: Callable) -> Callable:
    """Login required and a consultant record (Person) linked to the login: `request.person`."""

    @functools.wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        person = Person.objects.filter(user=request.user).select_related("role").first()
        if person is None:
            return forbidden(
                request,
                "Your login is not linked to a consultant record, so you have no timesheet or expenses here. "
                "Ask a billing admin to link it.",
            )
        request.person = person
        return view(request, *args, **kwargs)

    return wrapped


def pm_view(view: Callable) -> Callable:
    """Login required; project managers (by role, or managing at least one project) only."""

    @functools.wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if PROJECT_MANAGER not in _roles(request) and not managed_contracts(request.user).exists():
            return forbidden(request, "These queues are for project managers: they show the work of their projects.")
        return view(request, *args, **kwargs)

    return wrapped


def _own_project(request: HttpRequest, code_or_pk: str | None) -> Project | HttpResponse | None:
    """The `project` filter: one of the PM's projects; another PM's project is a 403, an unknown one a 404."""
    if not code_or_pk:
        return None
    lookup = Q(code=code_or_pk) | (Q(pk=int(code_or_pk)) if code_or_pk.isdigit() else Q())
    project = Project.objects.filter(lookup).first()
    if project is None:
        raise Http404("No such project.")
    if project.project_manager_id != request.user.pk:
        return forbidden(request, f"Project {project.code} is managed by someone else; you act on your own projects.")
    return project


# =====================================================================================================
# Views
# =====================================================================================================


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Each role lands on what waits for it (docs/rules/screens.md)."""
    roles = _roles(request)
    if PROJECT_MANAGER in roles:
        return redirect("approvals:pm_time")
    if CONSULTANT in roles:
        return redirect("approvals:timesheet")
    return redirect("approvals:mine")


# --- consultant: timesheet ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@consultant_view
def timesheet(request: HttpRequest) -> HttpResponse:
    person: Person = request.person
    source = request.POST if request.method == "POST" else request.GET
    monday = parse_week(source.get("week"))
    extra = [*source.getlist("row"), *source.getlist("add")]
    sheet = build_timesheet(person, monday, extra_project_ids=extra)
    if request.method == "POST":
        action = request.POST.get("action", "save")
        if action == "add" and not request.POST.get("add"):
            messages.info(request, "Choose a project to add a row for it.")
        errors, done = _save_timesheet(sheet, request.POST, request.user, submit=action == "submit")
        if errors:
            messages.error(request, "Nothing was saved: " + " ".join(errors))
            sheet = _as_posted(sheet, request.POST, extra)
            return _render(request, "approvals/timesheet.html", {"sheet": sheet, "person": person})
        _report_timesheet(request, sheet, done)
        query: dict[str, Any] = {"week": sheet.key}
        if action == "add" and request.POST.get("add"):
            # Rows without hours yet exist only in the URL: keep them, and the new one.
            empty_rows = [str(row.project.pk) for row in sheet.rows if not any(c.entries for c in row.cells)]
            query["add"] = [*empty_rows, request.POST["add"]]
        return HttpResponseSeeOther(f"{reverse('approvals:timesheet')}?{urlencode(query, doseq=True)}")
    return _render(request, "approvals/timesheet.html", {"sheet": sheet, "person": person})


def _as_posted(failed: Timesheet, post: Any, extra: list[str]) -> Timesheet:
    """The week as stored (the failed save was rolled back), showing what was typed and each cell's error."""
    errors = {c.name: c.error for row in failed.rows for c in row.cells if c.error}
    sheet = build_timesheet(failed.person, failed.monday, extra_project_ids=extra)
    for row in sheet.rows:
        note = post.get(f"note-{row.project.pk}")
        if note is not None:
            row.note = note.strip()[:500]
        for cell in row.cells:
            if cell.editable and cell.name in post:
                cell.value = post.get(cell.name, "").strip()
                cell.error = errors.get(cell.name, "")
    return sheet


@dataclass
class SheetChanges:
    created: int = 0
    changed: int = 0
    discarded: int = 0
    submitted: int = 0
    submitted_hours: Decimal = ZERO


def _save_timesheet(sheet: Timesheet, post: Any, user: Any, *, submit: bool) -> tuple[list[str], SheetChanges]:
    """Apply the grid to the person's draft entries; all or nothing. Returns (errors, what changed).

    Decreases go first, so moving hours between projects of one day never trips the 24 h limit halfway.
    Rejected entries are taken back to draft when changed, or when the week is submitted.
    """
    done = SheetChanges()
    errors: list[str] = []
    operations: list[tuple[int, Row, Cell, Decimal]] = []
    for row in sheet.rows:
        posted_note = post.get(f"note-{row.project.pk}")
        note_changed = posted_note is not None and posted_note.strip() != row.note
        if posted_note is not None:
            row.note = posted_note.strip()[:500]
        row.note_changed = note_changed
        for cell in row.cells:
            if not cell.editable or cell.name not in post:
                continue
            raw = post.get(cell.name, "")
            cell.value = raw.strip()
            value = parse_hours(raw)
            if value is None:
                cell.error = "Enter hours from 0 to 24, at most two decimals."
                errors.append(f"{row.project.code} {cell.day:%a %d %b}: {cell.error}")
                continue
            current = cell.hours
            operations.append((0 if value < current else 1, row, cell, value))
    if errors:
        return errors, done
    day_totals: dict[datetime.date, Decimal] = defaultdict(lambda: ZERO)
    for _, _row, cell, value in operations:
        day_totals[cell.day] += value - cell.hours
    for day, base in sheet.day_totals:
        if base + day_totals[day] > MAX_HOURS_PER_DAY:
            errors.append(f"{day:%a %d %b}: {base + day_totals[day]} h booked; at most 24 h a day.")
    if errors:
        return errors, done

    with transaction.atomic():
        for _, row, cell, value in sorted(operations, key=lambda op: op[0]):
            try:
                _apply_cell(sheet.person, row, cell, value, user, submit=submit, done=done)
            except ApplicationError as exc:
                cell.error = exc.message
                errors.append(f"{row.project.code} {cell.day:%a %d %b}: {exc.message}")
        if not errors and submit:
            drafts = list(
                TimeEntry.objects.filter(
                    person=sheet.person, date__gte=sheet.monday, date__lte=sheet.sunday, status=WorkStatus.DRAFT
                )
            )
            try:
                done.submitted = work_submit_bulk(items=drafts, user=user)
                done.submitted_hours = sum((e.hours for e in drafts), ZERO)
            except ApplicationError as exc:
                errors.append(exc.message)
        if errors:
            transaction.set_rollback(True)
    return errors, done


def _apply_cell(
    person: Person, row: Row, cell: Cell, value: Decimal, user: Any, *, submit: bool, done: SheetChanges
) -> None:
    entry = cell.entry
    description = row.note if row.note_changed else None
    if entry is None:
        if value > 0:
            time_entry_create(
                person=person,
                project=row.project,
                date=cell.day,
                hours=value,
                description=row.note,
                user=user,
            )
            done.created += 1
        return
    changed = value != entry.hours or description is not None
    if entry.status == WorkStatus.REJECTED:
        if not (changed or submit):
            return
        work_redraft(item=entry, user=user)
    if value == 0:
        time_entry_discard_draft(entry=entry, user=user)
        done.discarded += 1
    elif changed:
        time_entry_update_draft(entry=entry, hours=value, description=description, user=user)
        done.changed += 1


def _report_timesheet(request: HttpRequest, sheet: Timesheet, done: SheetChanges) -> None:
    week = f"Week {sheet.week_number} ({sheet.monday:%d %b}–{sheet.sunday:%d %b %Y})"
    parts = [
        f"{n} {label}"
        for n, label in ((done.created, "added"), (done.changed, "changed"), (done.discarded, "removed"))
        if n
    ]
    if done.submitted:
        extra = f" ({', '.join(parts)})" if parts else ""
        messages.success(
            request,
            f"{week} submitted: {done.submitted} entr{'y' if done.submitted == 1 else 'ies'}, "
            f"{_hours_text(done.submitted_hours)} h, sent to your project managers for approval{extra}.",
        )
    elif parts:
        messages.success(request, f"{week} saved as draft: {', '.join(parts)}. Submit the week when it is complete.")
    elif request.POST.get("action") != "add":
        verb = "save or submit" if request.POST.get("action") == "submit" else "save"
        messages.info(request, f"{week}: nothing to {verb}.")


# --- consultant: expenses ----------------------------------------------------------------------------------


def _bookable_projects(extra: Project | None = None) -> QuerySet[Project]:
    active = Q(status=Project.Status.ACTIVE, contract__status=Contract.Status.ACTIVE)
    if extra is not None:
        active |= Q(pk=extra.pk)
    return Project.objects.filter(active).select_related("contract").order_by("code")


def _own_expense(request: HttpRequest, pk: int) -> Expense | HttpResponse:
    expense = Expense.objects.select_related("project", "project__contract", "person").filter(pk=pk).first()
    if expense is None:
        raise Http404("No such expense.")
    if expense.person_id != request.person.pk:
        return forbidden(request, "This expense is someone else's; you can only change your own.")
    return expense


@require_GET
@consultant_view
def expense_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    qs = Expense.objects.filter(person=request.person).select_related("project").order_by("-date", "-pk")
    if status in WorkStatus.values:
        qs = qs.filter(status=status)
    counts = dict(
        Expense.objects.filter(person=request.person)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    tabs = [("", "All", sum(counts.values()))] + [(s.value, s.label, counts.get(s.value, 0)) for s in WorkStatus]
    return _render(
        request,
        "approvals/expense_list.html",
        {"page": paginate(qs, request.GET.get("page")), "status": status, "tabs": tabs},
    )


def _expense_form_response(request: HttpRequest, form: ExpenseForm, expense: Expense | None) -> HttpResponse:
    return _render(request, "approvals/expense_form.html", {"form": form, "expense": expense})


@require_http_methods(["GET", "POST"])
@consultant_view
def expense_new(request: HttpRequest) -> HttpResponse:
    projects = _bookable_projects()
    if request.method == "POST":
        form = ExpenseForm(request.POST, request.FILES, projects=projects)
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    expense = expense_create(
                        person=request.person,
                        project=data["project"],
                        date=data["date"],
                        amount=data["amount"],
                        currency=data["currency"],
                        category=data["category"],
                        description=data["description"],
                        billable=data["billable"],
                        receipt=data["receipt"],
                        user=request.user,
                    )
                    if request.POST.get("action") == "submit":
                        work_submit(item=expense, user=request.user)
            except ApplicationError as exc:
                _form_errors(form, exc)
            else:
                _expense_saved(request, expense)
                return HttpResponseSeeOther(reverse("approvals:expense_list"))
    else:
        initial = {"date": timezone.localdate(), "currency": "EUR", "billable": True}
        project_id = request.GET.get("project", "")
        if project_id.isdigit():
            initial["project"] = project_id
        form = ExpenseForm(initial=initial, projects=projects)
    return _expense_form_response(request, form, None)


@require_http_methods(["GET", "POST"])
@consultant_view
def expense_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Correct a draft or rejected expense (a rejected one goes back to draft first), then save or submit."""
    expense = _own_expense(request, pk)
    if isinstance(expense, HttpResponse):
        return expense
    if expense.status not in (WorkStatus.DRAFT, WorkStatus.REJECTED):
        messages.warning(request, f"Expense {expense.pk} is {expense.get_status_display().lower()}; it can no longer "
                                  "be changed.")
        return HttpResponseSeeOther(reverse("approvals:expense_list"))
    projects = _bookable_projects(extra=expense.project)
    if request.method == "POST":
        form = ExpenseForm(request.POST, request.FILES, projects=projects)
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    if expense.status == WorkStatus.REJECTED:
                        work_redraft(item=expense, user=request.user)
                    if data["project"].pk != expense.project_id:
                        raise ApplicationError(
                            "An expense stays on its project; record a new one for another project.",
                            field_errors={"project": ["Cannot move an expense to another project."]},
                        )
                    expense_update_draft(
                        expense=expense,
                        user=request.user,
                        date=data["date"],
                        amount=data["amount"],
                        currency=data["currency"],
                        category=data["category"],
                        description=data["description"],
                        billable=data["billable"],
                        receipt=data["receipt"],
                    )
                    if request.POST.get("action") == "submit":
                        work_submit(item=expense, user=request.user)
            except ApplicationError as exc:
                expense.refresh_from_db()
                _form_errors(form, exc)
            else:
                _expense_saved(request, expense)
                return HttpResponseSeeOther(reverse("approvals:expense_list"))
    else:
        form = ExpenseForm(
            initial={
                "project": expense.project_id,
                "date": expense.date,
                "category": expense.category,
                "amount": expense.amount,
                "currency": expense.currency,
                "description": expense.description,
                "billable": expense.billable,
            },
            projects=projects,
        )
    return _expense_form_response(request, form, expense)


def _form_errors(form: Any, exc: ApplicationError) -> None:
    placed = False
    for name, errors in exc.field_errors.items():
        if name in form.fields:
            for error in errors:
                form.add_error(name, error)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


def _expense_saved(request: HttpRequest, expense: Expense) -> None:
    what = f"Expense of {expense.amount:,} {expense.currency} on {expense.date:%d %b %Y} ({expense.project.code})"
    if expense.status == WorkStatus.SUBMITTED:
        messages.success(request, f"{what} submitted to the project's manager for approval.")
    else:
        messages.success(request, f"{what} saved as draft; submit it when it is complete.")


@require_POST
@consultant_view
def expense_submit(request: HttpRequest, pk: int) -> HttpResponse:
    expense = _own_expense(request, pk)
    if isinstance(expense, HttpResponse):
        return expense
    try:
        work_submit(item=expense, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        _expense_saved(request, expense)
    return HttpResponseSeeOther(safe_next(request, reverse("approvals:expense_list")))


@require_GET
@login_required
def expense_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """The receipt file, to its owner, the project's manager, finance, billing admins and auditors."""
    expense = Expense.objects.select_related("person", "project").filter(pk=pk).first()
    if expense is None or not expense.receipt:
        raise Http404("No receipt.")
    user = request.user
    allowed = (
        expense.person.user_id == user.pk
        or expense.project.project_manager_id == user.pk
        or bool(_roles(request) & READ_ALL_ROLES)
        or user.is_superuser
    )
    if not allowed:
        return forbidden(request, "Receipts are shown to the person, the project's manager and finance.")
    name = expense.receipt.name.rsplit("/", 1)[-1]
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(expense.receipt.open("rb"), content_type=content_type, filename=name)
    response["Content-Disposition"] = response["Content-Disposition"].replace("attachment", "inline")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return response


# --- PM: time & expenses -------------------------------------------------------------------------------------


@require_GET
@pm_view
def pm_time(request: HttpRequest) -> HttpResponse:
    project = _own_project(request, request.GET.get("project", "").strip())
    if isinstance(project, HttpResponse):
        return project
    week_text = request.GET.get("week", "").strip()
    monday = parse_week(week_text) if week_text else None
    queue = pm_time_queue(
        request.user,
        project=project,
        person_id=int_param(request.GET, "person"),
        monday=monday,
        page_number=request.GET.get("page"),
    )
    return _render(
        request,
        "approvals/pm_time.html",
        {
            "queue": queue,
            "project": project,
            "person_filter": int_param(request.GET, "person"),
            "week_filter": week_key(monday) if monday else "",
            "filtered": bool(project or monday or request.GET.get("person")),
        },
    )


def _items_of_pm(request: HttpRequest, model: type, ids: list[int]) -> list | HttpResponse:
    """The listed items, each on one of the PM's projects (else 403)."""
    items = list(model.objects.filter(pk__in=ids).select_related("project", "person"))
    foreign = [i for i in items if i.project.project_manager_id != request.user.pk]
    if foreign:
        return forbidden(
            request, f"{_kind_label(foreign[0]).capitalize()} {foreign[0].pk} is on project {foreign[0].project.code}, "
                     "which someone else manages."
        )
    return items


def _kind_label(item: Any) -> str:
    return "time entry" if isinstance(item, TimeEntry) else "expense"


def _ids(values: list[str]) -> list[int]:
    return sorted({int(v) for v in values if v.isdigit()})


@require_POST
@pm_view
def pm_time_approve_week(request: HttpRequest) -> HttpResponse:
    """Approve the week the PM saw (its listed items), all or nothing, through the approval engine."""
    back = safe_next(request, reverse("approvals:pm_time"))
    entries = _items_of_pm(request, TimeEntry, _ids(request.POST.getlist("time")))
    if isinstance(entries, HttpResponse):
        return entries
    expenses = _items_of_pm(request, Expense, _ids(request.POST.getlist("expense")))
    if isinstance(expenses, HttpResponse):
        return expenses
    waiting = [i for i in [*entries, *expenses] if i.status == WorkStatus.SUBMITTED]
    if not waiting:
        messages.warning(request, "Nothing left to approve in this week: it was decided meanwhile.")
        return HttpResponseSeeOther(back)
    person = waiting[0].person
    week = week_key(waiting[0].date - datetime.timedelta(days=waiting[0].date.weekday()))
    try:
        approved = work_approve_bulk(items=waiting, user=request.user)
    except ApplicationError as exc:
        messages.error(request, f"Nothing was approved. {exc.message}")
        return HttpResponseSeeOther(back)
    time_waiting = [i for i in waiting if isinstance(i, TimeEntry)]
    hours = sum((e.hours for e in time_waiting), ZERO)
    skipped = len(entries) + len(expenses) - len(waiting)
    n_time, n_expenses = len(time_waiting), len(waiting) - len(time_waiting)
    text = (
        f"Approved {person.name}'s week {week}: {n_time} time entr{'y' if n_time == 1 else 'ies'} "
        f"({_hours_text(hours)} h) and {n_expenses} expense{'' if n_expenses == 1 else 's'}."
    )
    if approved < len(waiting):
        text += f" {len(waiting) - approved} wait for a further approval step."
    if skipped:
        text += f" {skipped} item(s) had been decided meanwhile and were skipped."
    messages.success(request, text)
    return HttpResponseSeeOther(back)


@require_POST
@pm_view
def pm_work_reject(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Reject one time entry or expense with a reason (inline); the person sees the reason."""
    model = {"time": TimeEntry, "expense": Expense}.get(kind)
    if model is None:
        raise Http404("Unknown kind of work.")
    items = _items_of_pm(request, model, [pk])
    if isinstance(items, HttpResponse):
        return items
    if not items:
        raise Http404("No such item.")
    item = items[0]
    back = safe_next(request, reverse("approvals:pm_time"))
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        work_reject(item=item, user=request.user, reason=form.cleaned_data.get("reason", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        what = f"{_hours_text(item.hours)} h" if isinstance(item, TimeEntry) else f"{item.amount:,} {item.currency}"
        messages.success(
            request,
            f"Rejected {item.person.name}'s {what} on {item.date:%a %d %b} ({item.project.code}): "
            f"“{item.rejection_reason}”. They see the reason and can fix and resubmit.",
        )
    return HttpResponseSeeOther(back)


# --- PM: milestones ---------------------------------------------------------------------------------------


MILESTONE_TABS = (
    (Milestone.Status.COMPLETED.value, "Awaiting approval"),
    (Milestone.Status.PLANNED.value, "Planned · to complete"),
)


@require_GET
@pm_view
def pm_milestone_queue(request: HttpRequest) -> HttpResponse:
    project = _own_project(request, request.GET.get("project", "").strip())
    if isinstance(project, HttpResponse):
        return project
    status = request.GET.get("status") or Milestone.Status.COMPLETED
    if status not in dict(MILESTONE_TABS):
        status = Milestone.Status.COMPLETED
    page = pm_milestones(request.user, status=status, project=project, page_number=request.GET.get("page"))
    rows = list(page.object_list)
    caps = contract_caps({m.project.contract for m in rows})
    routes = routings(request.user, Milestone, [m.pk for m in rows]) if status == Milestone.Status.COMPLETED else {}
    counts = dict(
        Milestone.objects.filter(project__project_manager=request.user, status__in=dict(MILESTONE_TABS))
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    items = [
        {"milestone": m, "cap": caps.get(m.project.contract_id), "routing": routes.get(m.pk),
         "completed_by_me": m.completed_by_id == request.user.pk}
        for m in rows
    ]
    return _render(
        request,
        "approvals/pm_milestones.html",
        {
            "page": page,
            "items": items,
            "status": status,
            "tabs": [(key, label, counts.get(key, 0)) for key, label in MILESTONE_TABS],
            "today": timezone.localdate(),
            "project": project,
            "projects": Project.objects.filter(project_manager=request.user)
            .only("pk", "code", "name")
            .order_by("code"),
        },
    )


def _pending_request(subject: Any) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)),
        object_id=subject.pk,
        status=ApprovalRequest.Status.PENDING,
    ).first()


@require_POST
@pm_view
def pm_milestone_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    milestone = Milestone.objects.select_related("project").filter(pk=pk).first()
    if milestone is None:
        raise Http404("No such milestone.")
    if milestone.project.project_manager_id != request.user.pk:
        return forbidden(request, f"Milestone '{milestone.name}' is on project {milestone.project.code}, which "
                                  "someone else manages.")
    back = safe_next(request, reverse("approvals:pm_milestones"))
    form = ReasonForm(request.POST)
    form.is_valid()
    reason, evidence = form.cleaned_data.get("reason", ""), form.cleaned_data.get("evidence", "")
    label = f"Milestone '{milestone.name}' ({milestone.project.code})"
    try:
        if action == "approve":
            milestone = milestone_approve(milestone=milestone, user=request.user)
            if milestone.status == Milestone.Status.APPROVED:
                messages.success(request, f"{label} approved: {milestone.amount:,} "
                                          f"{milestone.project.contract.currency} can be invoiced.")
            else:
                messages.success(request, f"{label}: your step is approved; it waits for the next approval step.")
        elif action == "reject":
            request_ = _pending_request(milestone)
            if request_ is None:
                raise ConflictError(f"{label} is not awaiting approval any more.")
            approval_reject(request=request_, user=request.user, reason=reason)
            messages.success(request, f"{label} rejected: “{reason}”. It stays completed until it is resubmitted.")
        elif action == "resubmit":
            milestone_resubmit(milestone=milestone, user=request.user, evidence=evidence)
            messages.success(request, f"{label} resubmitted for approval.")
        elif action == "complete":
            milestone_complete(milestone=milestone, user=request.user, evidence=evidence)
            messages.success(request, f"{label} marked completed and routed for approval.")
        else:
            raise Http404("Unknown action.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return HttpResponseSeeOther(back)


# --- PM: change orders ---------------------------------------------------------------------------------------


@require_GET
@pm_view
def pm_change_order_queue(request: HttpRequest) -> HttpResponse:
    contracts = list(
        Contract.objects.filter(Exists(managed_contracts(request.user).filter(contract=OuterRef("pk"))))
        .only("pk", "code", "name")
        .order_by("code")
    )
    code = request.GET.get("contract", "").strip()
    contract = next((c for c in contracts if c.code == code), None)
    if code and contract is None:
        if not Contract.objects.filter(code=code).exists():
            raise Http404("No such contract.")
        return forbidden(request, f"Contract {code} has no project you manage.")
    page = pm_change_orders(request.user, contract=contract, page_number=request.GET.get("page"))
    rows = list(page.object_list)
    caps = contract_caps({co.contract for co in rows})
    routes = routings(request.user, ChangeOrder, [co.pk for co in rows])
    items = [
        {"co": co, "cap": caps.get(co.contract_id), "routing": routes.get(co.pk),
         "submitted_by_me": co.submitted_by_id == request.user.pk,
         "new_cap": caps[co.contract_id].total + co.cap_delta if caps[co.contract_id].total is not None else None,
         "growth_pct": _growth_pct(co.cap_delta, caps[co.contract_id].total)}
        for co in rows
    ]
    return _render(
        request,
        "approvals/pm_change_orders.html",
        {"page": page, "items": items, "contracts": contracts, "contract": contract},
    )


def _growth_pct(delta: Decimal, cap: Decimal | None) -> Decimal | None:
    """The cap growth a change order asks for, in % of today's cap (shown next to the delta)."""
    if cap is None or cap <= 0 or not delta:
        return None
    return (delta / cap * 100).quantize(Decimal("0.1"))


@require_POST
@pm_view
def pm_change_order_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    change_order = ChangeOrder.objects.select_related("contract").filter(pk=pk).first()
    if change_order is None:
        raise Http404("No such change order.")
    if not managed_contracts(request.user).filter(contract_id=change_order.contract_id).exists():
        return forbidden(request, f"Change order {change_order} is on a contract none of whose projects you manage.")
    back = safe_next(request, reverse("approvals:pm_change_orders"))
    form = ReasonForm(request.POST)
    form.is_valid()
    reason = form.cleaned_data.get("reason", "")
    label = f"Change order {change_order}"
    try:
        if action == "approve":
            change_order = change_order_approve(change_order=change_order, user=request.user, reason=reason)
            if change_order.status == ChangeOrder.Status.APPROVED:
                messages.success(request, f"{label} approved and applied to the contract (rates, milestones, cap).")
            else:
                messages.success(request, f"{label}: your step is approved; it now waits for a finance controller.")
        elif action == "reject":
            change_order_reject(change_order=change_order, user=request.user, reason=reason)
            messages.success(request, f"{label} rejected: “{reason}”. Nothing of it is applied.")
        else:
            raise Http404("Unknown action.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return HttpResponseSeeOther(back)


# --- everyone: my approvals ------------------------------------------------------------------------------------


@dataclass
class QueueRow:
    request: ApprovalRequest
    subject: Any
    label: str
    age: str
    overdue: bool
    step: ApprovalStep | None
    step_count: int


def _queue_rows(requests: Iterable[ApprovalRequest], now: datetime.datetime) -> list[QueueRow]:
    rows = []
    for request in requests:
        steps = list(request.policy.steps.all())
        subject = request.subject
        rows.append(
            QueueRow(
                request=request,
                subject=subject,
                label=subject_label(subject) if subject is not None else f"{request.subject_type} {request.object_id}",
                age=age_label(request.created_at, now),
                overdue=request.sla_due_at < now,
                step=next((s for s in steps if s.order == request.current_step), None),
                step_count=len(steps),
            )
        )
    return rows


@require_GET
@login_required
def my_queue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    kind = request.GET.get("type", "")
    overdue_only = request.GET.get("overdue") == "1"
    qs = my_approvals(request.user, now=now).select_related("prepared_by").prefetch_related(
        Prefetch("policy__steps", queryset=ApprovalStep.objects.order_by("order"))
    )
    if kind in SubjectType.values:
        qs = qs.filter(subject_type=kind)
    if overdue_only:
        qs = qs.filter(sla_due_at__lt=now)
    page = paginate(qs, request.GET.get("page"))
    rows = _queue_rows(page.object_list, now)
    delegations = list(
        Delegation.objects.filter(
            delegate=request.user, starts_on__lte=now.date(), ends_on__gte=now.date(), delegator__is_active=True
        ).select_related("delegator")
    )
    return _render(
        request,
        "approvals/my_queue.html",
        {
            "page": page,
            "rows": rows,
            "kind": kind,
            "overdue_only": overdue_only,
            "types": SubjectType.choices,
            "acting_for": delegations,
        },
    )


def _may_view_request(request: HttpRequest, approval: ApprovalRequest) -> bool:
    user = request.user
    if user.is_superuser or _roles(request) & READ_ALL_ROLES:
        return True
    if user.pk in (approval.prepared_by_id, approval.requested_by_id):
        return True
    if approval.project_id and approval.project.project_manager_id == user.pk:
        return True
    if approval.contract_id and managed_contracts(user).filter(contract_id=approval.contract_id).exists():
        return True
    if approval.decisions.filter(Q(approver=user) | Q(on_behalf_of=user)).exists():
        return True
    return my_approvals(user).filter(pk=approval.pk).exists()


def _get_request(pk: int) -> ApprovalRequest:
    approval = (
        ApprovalRequest.objects.select_related("policy", "project", "contract", "prepared_by", "requested_by")
        .filter(pk=pk)
        .first()
    )
    if approval is None:
        raise Http404("No such approval.")
    return approval


@require_GET
@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    approval = _get_request(pk)
    if not _may_view_request(request, approval):
        return forbidden(request, "This approval is about work you neither prepared, manage nor may decide.")
    now = timezone.now()
    subject = approval.subject
    refusal = ""
    can_decide = False
    if approval.status == ApprovalRequest.Status.PENDING:
        try:
            check_decider(request=approval, user=request.user)
            can_decide = True
        except ApplicationError as exc:
            refusal = exc.message
    steps = list(approval.policy.steps.order_by("order"))
    decisions = {d.step_order: d for d in approval.decisions.select_related("approver", "on_behalf_of")}
    history = [r for r in approvals_of(subject) if r.pk != approval.pk] if subject is not None else []
    return _render(
        request,
        "approvals/request_detail.html",
        {
            "approval": approval,
            "subject": subject,
            "label": subject_label(subject) if subject is not None else "",
            "steps": [(s, decisions.get(s.order)) for s in steps],
            "can_decide": can_decide,
            "refusal": refusal,
            "age": age_label(approval.created_at, now),
            "overdue": approval.is_overdue,
            "history": history,
        },
    )


@require_POST
@login_required
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject the open step the user saw; a conflict or a refusal comes back as a message."""
    approval = _get_request(pk)
    if not _may_view_request(request, approval):
        return forbidden(request, "This approval is about work you neither prepared, manage nor may decide.")
    back = safe_next(request, reverse("approvals:request_detail", args=[pk]))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject.")
        return HttpResponseSeeOther(back)
    data = form.cleaned_data
    if data.get("step"):
        approval.current_step = data["step"]  # the step the user saw: a later one is a conflict
    label = subject_label(approval.subject) if approval.subject is not None else f"approval {approval.pk}"
    try:
        decided = approval_decide(
            request=approval, user=request.user, decision=data["decision"], comment=data.get("comment", "")
        )
    except ConflictError as exc:
        messages.warning(request, f"{label.capitalize()}: {exc.message}")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        if decided.status == ApprovalRequest.Status.APPROVED:
            messages.success(request, f"{label.capitalize()} approved.")
        elif decided.status == ApprovalRequest.Status.REJECTED:
            messages.success(request, f"{label.capitalize()} rejected: “{decided.outcome_reason}”.")
        else:
            messages.success(request, f"{label.capitalize()}: step approved; step {decided.current_step} is next.")
    return HttpResponseSeeOther(back)


# --- everyone: delegation -------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def delegations(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and has_role(request.user, AUDITOR):
        return forbidden(request, "Auditors read everything and change nothing.")
    if request.method == "POST":
        form = DelegationForm(request.POST, user=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                delegation = delegation_create(
                    delegator=request.user,
                    delegate=data["delegate"],
                    starts_on=data["starts_on"],
                    ends_on=data["ends_on"],
                    reason=data["reason"],
                    user=request.user,
                )
            except ApplicationError as exc:
                _form_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{display_name(delegation.delegate)} may decide your approvals from "
                    f"{delegation.starts_on:%d %b} to {delegation.ends_on:%d %b %Y}.",
                )
                return HttpResponseSeeOther(reverse("approvals:delegation"))
    else:
        form = DelegationForm(user=request.user)
    today = timezone.localdate()
    show = request.GET.get("show", "current")
    given = Delegation.objects.filter(delegator=request.user).select_related("delegate").order_by("-ends_on", "-pk")
    if show == "current":
        given = given.filter(ends_on__gte=today)
    elif show == "ended":
        given = given.filter(ends_on__lt=today)
    received = (
        Delegation.objects.filter(delegate=request.user, ends_on__gte=today)
        .select_related("delegator")
        .order_by("starts_on", "pk")
    )
    return _render(
        request,
        "approvals/delegation.html",
        {
            "form": form,
            "page": paginate(given, request.GET.get("page")),
            "received": list(received[:PAGE_SIZE]),
            "today": today,
            "show": show,
            "show_choices": [("current", "Current & upcoming"), ("ended", "Ended"), ("all", "All")],
        },
    )


@require_POST
@login_required
def delegation_end_view(request: HttpRequest, pk: int) -> HttpResponse:
    delegation = Delegation.objects.select_related("delegate", "delegator").filter(pk=pk).first()
    if delegation is None:
        raise Http404("No such delegation.")
    if delegation.delegator_id != request.user.pk:
        return forbidden(request, "You can only end your own delegations.")
    if has_role(request.user, AUDITOR):
        return forbidden(request, "Auditors read everything and change nothing.")
    try:
        ended = delegation_end(delegation=delegation, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        who = display_name(delegation.delegate)
        if ended is None:
            messages.success(request, f"Delegation to {who} withdrawn before it started.")
        else:
            messages.success(request, f"Delegation to {who} ended: it was valid up to {ended.ends_on:%d %b %Y}.")
    return HttpResponseSeeOther(reverse("approvals:delegation"))
