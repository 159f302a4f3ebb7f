"""Read models of the portal shell: the user's roles, "My work" and the navigation.

Every query here aggregates in the database (`.values().annotate()` or conditional
`Count`), so the number of queries is fixed whatever the number of rows. The
result is memoised on the user object, so the navigation and the home page of one
request share one set of queries.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, DecimalField, Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing.selectors import OPEN_RECEIVABLE_STATUSES
from kernel.http import screen_url
from kernel.roles import (
    ALL_ROLES,
    AUDITOR,
    BILLING_ADMIN,
    COLLECTIONS,
    CONSULTANT,
    FINANCE_ANALYST,
    FINANCE_CONTROLLER,
    FINANCE_ROLES,
    PROJECT_MANAGER,
    cached_user_roles,
    is_auditor,
)

ROLES = ALL_ROLES
_COUNTS_ATTR = "_portal_work_counts"


def week_bounds(day: datetime.date) -> tuple[datetime.date, datetime.date]:
    """Monday and Sunday of the week of `day`."""
    monday = day - datetime.timedelta(days=day.weekday())
    return monday, monday + datetime.timedelta(days=6)


@dataclass(frozen=True)
class Money:
    currency: str
    amount: Decimal


@dataclass(frozen=True)
class ExceptionGroup:
    code: str
    severity: str
    invoices: int
    totals: tuple[Money, ...]


@dataclass
class WorkCounts:
    """Everything that waits for one user, as numbers. Only the user's roles are queried."""

    today: datetime.date
    week_start: datetime.date
    week_end: datetime.date
    roles: frozenset[str]
    # consultant
    my_time_draft_week: int = 0
    my_time_rejected_week: int = 0
    my_time_rejected_all: int = 0
    my_expenses_draft: int = 0
    my_expenses_rejected: int = 0
    # project manager
    pm_time_submitted: int = 0
    pm_expenses_submitted: int = 0
    pm_milestones_completed: int = 0
    pm_change_orders_submitted: int = 0
    # finance analyst
    invoices_draft: int = 0
    invoices_exception: int = 0
    exception_groups: list[ExceptionGroup] = field(default_factory=list)
    # finance controller
    invoices_pending_approval: int = 0
    invoices_pending_prepared_by_me: int = 0
    #: Invoices and credit notes whose open approval step the user may decide now ("My approvals").
    invoices_at_my_step: int = 0
    pending_approval_totals: list[Money] = field(default_factory=list)
    # collections
    overdue_receivables: int = 0
    overdue_totals: list[Money] = field(default_factory=list)
    #: Whether the money figures (exception groups, totals) were computed, not only the counts.
    with_totals: bool = True

    @property
    def pm_approvals(self) -> int:
        return (
            self.pm_time_submitted
            + self.pm_expenses_submitted
            + self.pm_milestones_completed
            + self.pm_change_orders_submitted
        )

    @property
    def invoices_awaiting_me(self) -> int:
        """Pending invoices whose open step is mine to decide: not those at an earlier step (an analyst's),
        nor those segregation of duties keeps from me (prepared by me, or a step I already decided)."""
        return self.invoices_at_my_step


def _money_list(rows, amount_key: str) -> list[Money]:
    return [Money(r["currency"], r[amount_key] or Decimal("0")) for r in rows]


def work_counts(user, *, today: datetime.date | None = None, totals: bool = True) -> WorkCounts:
    """What waits for `user`, for each of their roles, in a bounded number of queries.

    `totals=False` (the navigation on every page): the counts only, without the money figures
    "My work" shows (exception groups, pending and overdue totals), which cost a query or a sum each.
    """
    from billing.models import ChangeOrder, Expense, Invoice, InvoiceException, Milestone, Payment, TimeEntry
    from billing.models.work import OPEN_WORK

    today = today or timezone.localdate()
    cached = getattr(user, _COUNTS_ATTR, None)
    if cached is not None and cached.today == today and (cached.with_totals or not totals):
        return cached

    roles = cached_user_roles(user)
    week_start, week_end = week_bounds(today)
    counts = WorkCounts(today=today, week_start=week_start, week_end=week_end, roles=roles, with_totals=totals)
    is_consultant = CONSULTANT in roles
    is_pm = PROJECT_MANAGER in roles
    this_week = Q(date__gte=week_start, date__lte=week_end)

    if is_consultant or is_pm:
        # One query over time entries serves both the consultant and the PM view.
        mine = Q(person__user=user)
        managed = Q(project__project_manager=user)
        scope = (mine if is_consultant else Q(pk__in=[])) | (managed if is_pm else Q(pk__in=[]))
        # Only open work counts: the status condition lets the database read the (partial) status index
        # instead of every entry of the PM's projects, whose history grows by the month.
        scope &= OPEN_WORK
        agg = TimeEntry.objects.filter(scope).aggregate(
            draft_week=Count("pk", filter=mine & this_week & Q(status="draft")),
            rejected_week=Count("pk", filter=mine & this_week & Q(status="rejected")),
            rejected_all=Count("pk", filter=mine & Q(status="rejected")),
            pm_submitted=Count("pk", filter=managed & Q(status="submitted")),
        )
        exp = Expense.objects.filter(scope).aggregate(
            draft=Count("pk", filter=mine & Q(status="draft")),
            rejected=Count("pk", filter=mine & Q(status="rejected")),
            pm_submitted=Count("pk", filter=managed & Q(status="submitted")),
        )
        if is_consultant:
            counts.my_time_draft_week = agg["draft_week"]
            counts.my_time_rejected_week = agg["rejected_week"]
            counts.my_time_rejected_all = agg["rejected_all"]
            counts.my_expenses_draft = exp["draft"]
            counts.my_expenses_rejected = exp["rejected"]
        if is_pm:
            counts.pm_time_submitted = agg["pm_submitted"]
            counts.pm_expenses_submitted = exp["pm_submitted"]

    if is_pm:
        counts.pm_milestones_completed = Milestone.objects.filter(
            project__project_manager=user, status="completed"
        ).count()
        counts.pm_change_orders_submitted = (
            ChangeOrder.objects.filter(status="submitted")
            .filter(Exists(_projects_managed_by(user).filter(contract=OuterRef("contract"))))
            .count()
        )

    if roles & FINANCE_ROLES:
        agg = Invoice.objects.filter(status__in=["draft", "exception", "pending_approval"]).aggregate(
            draft=Count("pk", filter=Q(status="draft")),
            exception=Count("pk", filter=Q(status="exception")),
            pending=Count("pk", filter=Q(status="pending_approval")),
            pending_mine=Count("pk", filter=Q(status="pending_approval", prepared_by=user)),
        )
        counts.invoices_draft = agg["draft"]
        counts.invoices_exception = agg["exception"]
        counts.invoices_pending_approval = agg["pending"]
        counts.invoices_pending_prepared_by_me = agg["pending_mine"]

    if FINANCE_ANALYST in roles and totals:
        # One row per (invoice, code): skip a repeat of the same open code on one invoice.
        repeat = InvoiceException.objects.filter(
            invoice=OuterRef("invoice"), code=OuterRef("code"), state="open", pk__lt=OuterRef("pk")
        )
        rows = (
            InvoiceException.objects.filter(invoice__status="exception", state="open")
            .exclude(Exists(repeat))
            .values("code", "severity", "invoice__currency")
            .annotate(invoices=Count("invoice", distinct=True), total=Sum("invoice__total"))
            .order_by("code", "severity", "invoice__currency")
        )
        groups: dict[tuple[str, str], dict] = {}
        for r in rows:
            g = groups.setdefault((r["code"], r["severity"]), {"invoices": 0, "totals": []})
            g["invoices"] += r["invoices"]
            g["totals"].append(Money(r["invoice__currency"], r["total"] or Decimal("0")))
        counts.exception_groups = sorted(
            (
                ExceptionGroup(code, severity, g["invoices"], tuple(g["totals"]))
                for (code, severity), g in groups.items()
            ),
            key=lambda g: (g.severity != "blocking", -g.invoices, g.code),
        )

    if FINANCE_CONTROLLER in roles:
        if totals:
            rows = (
                Invoice.objects.filter(status="pending_approval")
                .values("currency")
                .annotate(total=Sum("total"))
                .order_by("currency")
            )
            counts.pending_approval_totals = _money_list(rows, "total")
        from approvals.selectors import my_invoice_approvals_count

        counts.invoices_at_my_step = my_invoice_approvals_count(user, today=today)

    if COLLECTIONS in roles:
        overdue = Invoice.objects.filter(kind="invoice", status__in=OPEN_RECEIVABLE_STATUSES, due_date__lt=today)
        if not totals:
            counts.overdue_receivables = overdue.count()
        else:
            paid = (
                Payment.objects.filter(invoice=OuterRef("pk"))
                .values("invoice")
                .annotate(s=Sum("amount"))
                .values("s")
            )
            zero = Value(Decimal("0"), output_field=DecimalField(max_digits=18, decimal_places=2))
            rows = list(
                overdue.annotate(paid=Coalesce(Subquery(paid), zero))
                .values("currency")
                .annotate(n=Count("pk"), outstanding=Sum(F("total") - F("paid")))
                .order_by("currency")
            )
            counts.overdue_receivables = sum(r["n"] for r in rows)
            counts.overdue_totals = _money_list(rows, "outstanding")

    setattr(user, _COUNTS_ATTR, counts)
    return counts


def _projects_managed_by(user):
    from billing.models import Project

    return Project.objects.filter(project_manager=user)


# --- screen models: sections of "My work" and the navigation ------------------------------------


@dataclass
class WorkItem:
    label: str
    count: int | None = None
    url: str | None = None
    hint: str = ""
    totals: list[Money] = field(default_factory=list)
    attention: bool = False  # something waits; shown as a text badge, never colour alone


@dataclass
class WorkSection:
    role: str
    title: str
    items: list[WorkItem]
    note: str = ""


@dataclass
class NavItem:
    label: str
    url: str
    count: int | None = None
    key: str = ""
    current: bool = False
    match: str = ""  # the path prefix of the section it stands for, when wider than its URL's path


def _admin_url(user, model: str, params: dict | None = None, *, view: str = "changelist") -> str | None:
    """Admin changelist URL of `billing.<model>`, or None when `user` cannot open it.

    The portal's own queues replace these links as they are built.
    """
    if not (user.is_active and user.is_staff):
        return None
    if not (is_auditor(user) or user.has_perm(f"billing.view_{model}") or user.has_perm(f"billing.change_{model}")):
        return None
    try:
        url = reverse(f"admin:billing_{model}_{view}")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode(params)}" if params else url


def _screen_or_admin(user, screen: str, screen_params: dict | None, model: str, admin_params: dict | None = None):
    """The portal's own screen when it exists, else the filtered admin changelist."""
    return screen_url(screen, screen_params) or _admin_url(user, model, admin_params)


def admin_index_url(user) -> str | None:
    if not (user.is_active and user.is_staff):
        return None
    return reverse("admin:index")


def my_work(user, *, today: datetime.date | None = None) -> list[WorkSection]:
    """The home page: one section per role of the user, each a list of counted links."""
    c = work_counts(user, today=today)
    sections: list[WorkSection] = []
    week = {"date__gte": c.week_start.isoformat(), "date__lte": c.week_end.isoformat()}

    if CONSULTANT in c.roles:
        sections.append(
            WorkSection(
                CONSULTANT,
                f"My time and expenses · week of {c.week_start:%d %b %Y}",
                [
                    WorkItem(
                        "Draft time entries this week, not yet submitted",
                        c.my_time_draft_week,
                        _screen_or_admin(
                            user, "approvals:timesheet", None, "timeentry",
                            {"mine": "1", "status__exact": "draft", **week},
                        ),
                        attention=c.my_time_draft_week > 0,
                    ),
                    WorkItem(
                        "Rejected time entries this week, to fix",
                        c.my_time_rejected_week,
                        _screen_or_admin(
                            user, "approvals:timesheet", None, "timeentry",
                            {"mine": "1", "status__exact": "rejected", **week},
                        ),
                        hint=f"{c.my_time_rejected_all} rejected in all weeks" if c.my_time_rejected_all else "",
                        attention=c.my_time_rejected_week > 0,
                    ),
                    WorkItem(
                        "Draft expenses",
                        c.my_expenses_draft,
                        _screen_or_admin(
                            user, "approvals:expense_list", {"status": "draft"}, "expense",
                            {"mine": "1", "status__exact": "draft"},
                        ),
                    ),
                    WorkItem(
                        "Rejected expenses, to fix",
                        c.my_expenses_rejected,
                        _screen_or_admin(
                            user, "approvals:expense_list", {"status": "rejected"}, "expense",
                            {"mine": "1", "status__exact": "rejected"},
                        ),
                        attention=c.my_expenses_rejected > 0,
                    ),
                ],
            )
        )

    if PROJECT_MANAGER in c.roles:
        mine = {"managed_by_me": "1"}
        sections.append(
            WorkSection(
                PROJECT_MANAGER,
                "Approvals on my projects",
                [
                    WorkItem(
                        "Submitted time entries",
                        c.pm_time_submitted,
                        _screen_or_admin(
                            user, "approvals:pm_time", None, "timeentry", {**mine, "status__exact": "submitted"}
                        ),
                        attention=c.pm_time_submitted > 0,
                    ),
                    WorkItem(
                        "Submitted expenses",
                        c.pm_expenses_submitted,
                        _screen_or_admin(
                            user, "approvals:pm_time", None, "expense", {**mine, "status__exact": "submitted"}
                        ),
                        attention=c.pm_expenses_submitted > 0,
                    ),
                    WorkItem(
                        "Completed milestones to approve",
                        c.pm_milestones_completed,
                        _screen_or_admin(
                            user, "approvals:pm_milestones", None, "milestone", {**mine, "status__exact": "completed"}
                        ),
                        attention=c.pm_milestones_completed > 0,
                    ),
                    WorkItem(
                        "Submitted change orders",
                        c.pm_change_orders_submitted,
                        _screen_or_admin(
                            user, "approvals:pm_change_orders", None, "changeorder",
                            {**mine, "status__exact": "submitted"},
                        ),
                        attention=c.pm_change_orders_submitted > 0,
                    ),
                ],
            )
        )

    if FINANCE_ANALYST in c.roles:
        items = [
            WorkItem(
                f"{g.code}" + (" (warning)" if g.severity == "warning" else ""),
                g.invoices,
                _screen_or_admin(
                    user,
                    "billing:exception_queue",
                    {"code": g.code},
                    "invoice",
                    {"status__exact": "exception", "exception_code": g.code},
                ),
                totals=list(g.totals),
                attention=True,
            )
            for g in c.exception_groups
        ]
        items.append(
            WorkItem(
                "All invoices in exception",
                c.invoices_exception,
                _screen_or_admin(user, "billing:exception_queue", None, "invoice", {"status__exact": "exception"}),
                attention=c.invoices_exception > 0,
            )
        )
        items.append(
            WorkItem(
                "Draft invoices",
                c.invoices_draft,
                _screen_or_admin(
                    user, "billing:invoice_list", {"status": "draft"}, "invoice", {"status__exact": "draft"}
                ),
            )
        )
        sections.append(
            WorkSection(
                FINANCE_ANALYST,
                "Exception queue",
                items,
                note="" if c.exception_groups else "No open exceptions.",
            )
        )

    if FINANCE_CONTROLLER in c.roles:
        sections.append(
            WorkSection(
                FINANCE_CONTROLLER,
                "Invoices awaiting approval",
                [
                    WorkItem(
                        "Pending approval",
                        c.invoices_pending_approval,
                        _screen_or_admin(
                            user,
                            "billing:invoice_list",
                            {"status": "pending_approval"},
                            "invoice",
                            {"status__exact": "pending_approval"},
                        ),
                        totals=c.pending_approval_totals,
                        hint=(
                            f"{c.invoices_pending_prepared_by_me} prepared by you; another controller approves those"
                            if c.invoices_pending_prepared_by_me
                            else ""
                        ),
                    ),
                    WorkItem(
                        "At your approval step",
                        c.invoices_awaiting_me,
                        screen_url("approvals:mine"),
                        hint="The others wait for an earlier step (an analyst's review) or for someone else.",
                        attention=c.invoices_awaiting_me > 0,
                    ),
                ],
            )
        )

    if COLLECTIONS in c.roles:
        sections.append(
            WorkSection(
                COLLECTIONS,
                "Receivables",
                [
                    WorkItem(
                        "Overdue open receivables",
                        c.overdue_receivables,
                        _screen_or_admin(user, "disputes:aging", {"overdue": "yes"}, "invoice", {"overdue": "yes"}),
                        totals=c.overdue_totals,
                        hint="Posted, sent or partially paid, past the due date; amounts net of payments.",
                        attention=c.overdue_receivables > 0,
                    ),
                ],
            )
        )

    if BILLING_ADMIN in c.roles:
        sections.append(
            WorkSection(
                BILLING_ADMIN,
                "Billing administration",
                [
                    WorkItem("Django admin", url=admin_index_url(user)),
                    WorkItem("Rate cards", url=_admin_url(user, "ratecard")),
                    WorkItem("Tax rules", url=_admin_url(user, "taxrule")),
                    WorkItem("Contracts", url=_admin_url(user, "contract")),
                    WorkItem("Clients", url=_admin_url(user, "client")),
                ],
            )
        )

    if AUDITOR in c.roles:
        sections.append(
            WorkSection(
                AUDITOR,
                "Audit (read only)",
                [
                    WorkItem("Everything, read only, with the history of each record", url=admin_index_url(user)),
                    WorkItem(
                        "Invoices and credit notes",
                        url=_screen_or_admin(user, "billing:invoice_list", None, "invoice"),
                    ),
                    WorkItem("Time entries", url=_admin_url(user, "timeentry")),
                    WorkItem("Payments", url=_admin_url(user, "payment")),
                ],
            )
        )
    return sections


def navigation(user, *, today: datetime.date | None = None) -> list[NavItem]:
    """Top navigation by role (docs/rules/screens.md), with counts; each entry appears once.

    Which roles an entry is *for* is said here; whether a user may *open* it is the
    permissions matrix's answer (`portal.access.may_open`), so the menu never offers a
    page that answers 403 (`tests/portal/test_navigation.py` follows every link).
    """
    from portal.access import may_open

    if not getattr(user, "is_authenticated", False):
        return []
    c = work_counts(user, today=today, totals=False)
    items: list[NavItem] = [NavItem("My work", reverse("home"), key="home")]

    def link(name: str, params: dict | None = None) -> str | None:
        return screen_url(name, params) if may_open(user, name) else None

    def add(key: str, label: str, url: str | None, count: int | None = None, match: str = "") -> None:
        if url and all(i.key != key for i in items):
            items.append(NavItem(label, url, count, key, match=match))

    if CONSULTANT in c.roles:
        add("timesheet", "Timesheet", link("approvals:timesheet"), c.my_time_draft_week)
        add("expenses", "Expenses", link("approvals:expense_list"), c.my_expenses_rejected or None)
    if PROJECT_MANAGER in c.roles:
        add("approvals", "Approvals", link("approvals:pm_time"), c.pm_approvals)
        add("pm_invoices", "Invoices", link("billing:pm_invoice_list"))
        add("projects", "My projects", _admin_url(user, "project", {"managed_by_me": "1"}))
    if FINANCE_ANALYST in c.roles:
        add("exceptions", "Exceptions", link("billing:exception_queue"), c.invoices_exception)
        add("invoices", "Invoices", link("billing:invoice_list"))
        add("runs", "Billing runs", link("billing:run_list"))
        add("disputes", "Disputes", link("disputes:dispute_list"))
        add("payments", "Payments", link("disputes:payment_list"))
        add("integrations", "Integrations", link("integrations:monitor"))
    if FINANCE_CONTROLLER in c.roles:
        add("to_approve", "To approve", link("billing:invoice_list", {"status": "pending_approval"}),
            c.invoices_awaiting_me)
        add("invoices", "Invoices", link("billing:invoice_list"))
        add("disputes", "Disputes", link("disputes:dispute_list"))
    aging = screen_url("disputes:aging")
    # AR aging stands for the whole collections section (dunning, hand-offs, statements): its parent path.
    collections_section = aging.rstrip("/").rsplit("/", 1)[0] + "/" if aging else ""
    if COLLECTIONS in c.roles:
        add("overdue", "AR aging", link("disputes:aging"), c.overdue_receivables, match=collections_section)
    if FINANCE_ROLES & c.roles or AUDITOR in c.roles:
        add("overdue", "AR aging", link("disputes:aging"), match=collections_section)
        add("dashboards", "Dashboards", link("insights:dashboard"))
    if COLLECTIONS in c.roles:
        add("disputes", "Disputes", link("disputes:dispute_list"))
        add("payments", "Payments", link("disputes:payment_list"))
    add("admin", "Records (read only)" if AUDITOR in c.roles else "Admin", admin_index_url(user))
    return items
