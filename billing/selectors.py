"""Read models of the billing screens: billing runs, the exception queue, invoice review.

Every function here runs a fixed number of queries whatever the number of rows
(`select_related` / `prefetch_related` for rows, `.values().annotate()` for the
group figures), so a queue of 5 and of 5,000 invoices costs the same round trips.
"""
from __future__ import annotations

import datetime
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from django.contrib.contenttypes.models import ContentType
from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.hooks import annotate_cash_impact
from billing.models import (
    BillingRun,
    Contract,
    Expense,
    Invoice,
    InvoiceException,
    InvoiceLine,
    Milestone,
    Project,
    TimeEntry,
)
from billing.services.billing_engine import FIX_HINTS, Code

ZERO = Decimal("0")
QUEUE_LIMIT = 500
RECENT_RUNS = 25
OPEN = InvoiceException.State.OPEN
BLOCKING = InvoiceException.Severity.BLOCKING
WARNING = InvoiceException.Severity.WARNING
WARNING_CODES = frozenset({Code.CLIENT_ON_CREDIT_HOLD, Code.UNAPPROVED_TIME_IN_PERIOD, Code.LATE_TIME, Code.ANOMALY})

# Review queue tabs: (key, label, statuses). The first is the default.
INVOICE_TABS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("pending_approval", "Pending approval", (Invoice.Status.PENDING_APPROVAL,)),
    ("exception", "Exception", (Invoice.Status.EXCEPTION,)),
    ("draft", "Draft", (Invoice.Status.DRAFT,)),
    ("issued", "Approved & issued", (
        Invoice.Status.APPROVED, Invoice.Status.POSTED, Invoice.Status.SENT, Invoice.Status.PARTIALLY_PAID,
        Invoice.Status.PAID, Invoice.Status.DISPUTED,
    )),
    ("closed", "Credited & cancelled", (Invoice.Status.CREDITED, Invoice.Status.CANCELLED)),
    ("all", "All", ()),
)

#: Invoice statuses that are open receivables (money the client owes us).
OPEN_RECEIVABLE_STATUSES = ("posted", "sent", "partially_paid")


@dataclass(frozen=True)
class Money:
    currency: str
    amount: Decimal


def _money(rows: dict[str, Decimal]) -> list[Money]:
    return [Money(ccy, amount) for ccy, amount in sorted(rows.items())]


# --- billing runs ---------------------------------------------------------------------------------


def recent_billing_runs(*, limit: int = RECENT_RUNS) -> list[BillingRun]:
    return list(BillingRun.objects.select_related("started_by").order_by("-created_at", "-id")[:limit])


def get_billing_run(pk: int) -> BillingRun:
    return BillingRun.objects.select_related("started_by", "resumes").get(pk=pk)


def run_resumed_by(run: BillingRun) -> BillingRun | None:
    """The run that resumes an interrupted one (None unless it was resumed)."""
    if run.status != BillingRun.Status.RESUMED:
        return None
    return BillingRun.objects.filter(resumes=run).first()


_CODE_SPLIT = re.compile(r"[\s,;]+")


def parse_contract_codes(text: str) -> list[str]:
    """`"C-1, C-2  C-3"` → `["C-1", "C-2", "C-3"]` (order kept, repeats dropped)."""
    return list(OrderedDict.fromkeys(code for code in _CODE_SPLIT.split(text or "") if code))


def unknown_contract_codes(codes: list[str]) -> list[str]:
    known = set(Contract.objects.filter(code__in=codes).values_list("code", flat=True))
    return [code for code in codes if code not in known]


@dataclass
class RunSummary:
    """A finished run's summary (as recorded by the run) in display shape."""

    invoices: int
    by_entity_currency: list[tuple[str, str, int]]
    totals: list[Money]
    exceptions: list[tuple[str, int, str]]  # code, invoices, severity
    by_status: list[tuple[str, str, int]]  # status, label, invoices
    items_billed: dict[str, int]
    skipped: list[str]
    current_status: list[tuple[str, str, int]] = field(default_factory=list)  # invoices of the run today
    # Contracts with work waiting that the run did not bill (billing frequency): {contract, next_due, reason}.
    not_due: list[dict] = field(default_factory=list)


def billing_run_summary(run: BillingRun) -> RunSummary:
    data = run.summary or {}
    by_entity_currency = []
    for key, count in (data.get("invoices_by_entity_currency") or {}).items():
        entity, _, currency = key.rpartition(" ")
        by_entity_currency.append((entity, currency, count))
    labels = dict(Invoice.Status.choices)
    current = (
        Invoice.objects.filter(billing_run=run).values("status").annotate(n=Count("pk")).order_by("status")
    )
    return RunSummary(
        invoices=data.get("invoices", 0),
        by_entity_currency=by_entity_currency,
        totals=[Money(ccy, Decimal(amount)) for ccy, amount in (data.get("totals_by_currency") or {}).items()],
        exceptions=[
            (code, count, WARNING if code in WARNING_CODES else BLOCKING)
            for code, count in (data.get("exceptions_by_code") or {}).items()
        ],
        by_status=[(s, labels.get(s, s), n) for s, n in sorted((data.get("by_status") or {}).items())],
        items_billed=data.get("items_billed") or {},
        skipped=list(data.get("skipped") or []),
        current_status=[(row["status"], labels.get(row["status"], row["status"]), row["n"]) for row in current],
        not_due=list(data.get("not_due") or []),
    )


# --- exception queue ------------------------------------------------------------------------------


@dataclass
class QueueRow:
    invoice: Invoice
    exception: InvoiceException  # the finding of this group
    other_codes: list[str]
    age_days: int


@dataclass
class QueueGroup:
    code: str
    severity: str
    invoices: int
    totals: list[Money]
    fix_hint: str
    rows: list[QueueRow] = field(default_factory=list)


@dataclass
class ExceptionQueue:
    groups: list[QueueGroup]
    codes: list[str]  # every code with open exceptions (for the filter), whatever the filter
    invoices: int  # invoices in exception matching the filter
    shown: int
    truncated: bool


def _open_exceptions_in_queue() -> QuerySet[InvoiceException]:
    return InvoiceException.objects.filter(state=OPEN, invoice__status=Invoice.Status.EXCEPTION)


def exception_queue(*, code: str | None = None, today: datetime.date | None = None,
                    limit: int = QUEUE_LIMIT) -> ExceptionQueue:
    """Invoices in `exception`, grouped by open exception code; oldest, then largest first.

    Three queries: the group figures (one row per code and currency, an invoice
    counted once per code), the invoices with their parties, and their open exceptions.
    """
    today = today or timezone.localdate()
    repeat = InvoiceException.objects.filter(
        invoice=OuterRef("invoice"), code=OuterRef("code"), state=OPEN, pk__lt=OuterRef("pk")
    )
    figures = (
        _open_exceptions_in_queue()
        .filter(~Exists(repeat))
        .values("code", "severity", "invoice__currency")
        .annotate(n=Count("invoice_id"), total=Sum("invoice__total"))
        .order_by("code")
    )
    groups: dict[str, QueueGroup] = {}
    counts: dict[str, int] = defaultdict(int)
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    severity: dict[str, str] = {}
    for row in figures:
        c = row["code"]
        counts[c] += row["n"]
        totals[c][row["invoice__currency"]] += row["total"] or ZERO
        # A code is blocking if any of its findings is.
        if severity.get(c) != BLOCKING:
            severity[c] = row["severity"]
    all_codes = sorted(counts, key=lambda c: (severity[c] != BLOCKING, c))
    for c in all_codes:
        if code and c != code:
            continue
        groups[c] = QueueGroup(c, severity[c], counts[c], _money(totals[c]), FIX_HINTS.get(c, ""))

    invoices_qs = Invoice.objects.filter(status=Invoice.Status.EXCEPTION)
    if code:
        invoices_qs = invoices_qs.filter(Exists(_open_exceptions_in_queue().filter(invoice=OuterRef("pk"), code=code)))
    matching = sum(g.invoices for g in groups.values()) if code else None
    invoices = list(
        invoices_qs.select_related("client", "contract", "project", "entity", "prepared_by")
        .prefetch_related(
            Prefetch(
                "exceptions",
                queryset=InvoiceException.objects.filter(state=OPEN)
                .select_related("owner")
                .order_by("severity", "code", "id"),
                to_attr="open_exceptions",
            )
        )
        .order_by("created_at", "-total", "id")[: limit + 1]
    )
    truncated = len(invoices) > limit
    invoices = invoices[:limit]
    for invoice in invoices:
        age = (today - timezone.localtime(invoice.created_at).date()).days
        seen: set[str] = set()
        codes_here = [e.code for e in invoice.open_exceptions]
        for exc in invoice.open_exceptions:
            if exc.code in seen or exc.code not in groups:
                continue
            seen.add(exc.code)
            others = sorted({c for c in codes_here if c != exc.code})
            groups[exc.code].rows.append(QueueRow(invoice, exc, others, age))
    in_exception = matching if matching is not None else _count_in_exception()
    return ExceptionQueue(
        groups=list(groups.values()),
        codes=all_codes,
        invoices=in_exception,
        shown=len(invoices),
        truncated=truncated,
    )


# --- after issue: delivery and cash findings -------------------------------------------------------


@dataclass
class FollowUpQueue:
    rows: list[InvoiceException]
    counts: dict[str, int]  # code → open findings
    truncated: bool


def follow_up_queue(*, code: str | None = None, limit: int = QUEUE_LIMIT) -> FollowUpQueue:
    """Open findings raised after issue (DELIVERY_FAILED, payment problems), oldest first; two queries."""
    base = InvoiceException.objects.filter(state=OPEN, code__in=InvoiceException.FOLLOW_UP_CODES)
    counts = dict(base.values_list("code").annotate(n=Count("id")).order_by("code"))
    if code:
        base = base.filter(code=code)
    rows = list(
        base.select_related("invoice", "invoice__client", "payment", "payment__client", "owner").order_by(
            "created_at", "id"
        )[: limit + 1]
    )
    return FollowUpQueue(rows=rows[:limit], counts=counts, truncated=len(rows) > limit)


def _count_in_exception() -> int:
    return Invoice.objects.filter(status=Invoice.Status.EXCEPTION).count()


# --- invoice review queue -------------------------------------------------------------------------


@dataclass
class InvoiceQueue:
    tab: str
    tabs: list[tuple[str, str, int]]  # key, label, count
    invoices: list[Invoice]
    totals: list[Money]
    truncated: bool


def invoice_tab(status: str | None) -> str:
    keys = {key for key, _label, _statuses in INVOICE_TABS}
    if status in keys:
        return status
    if status in Invoice.Status.values:
        return next((key for key, _l, statuses in INVOICE_TABS if status in statuses), "all")
    return INVOICE_TABS[0][0]


QUEUE_SORTS = {
    "oldest": ("issue_date", "created_at", "-total", "id"),
    "largest": ("-total", "issue_date", "id"),
    "due": ("due_date", "-total", "id"),
    "priority": ("-cash_impact", "issue_date", "id"),  # billing.hooks.annotate_cash_impact (docs/rules/assistive.md)
}


#: The columns the review queue shows (templates/billing/invoice_list.html): the rows are read narrow.
#: Project and preparer (nullable) come in their own small queries: two more outer joins cost the
#: planner more than both queries.
QUEUE_FIELDS = (
    "id", "kind", "number", "status", "billing_run_id", "project_id", "prepared_by_id", "period_start",
    "issue_date", "due_date", "created_at", "total", "currency", "client__code", "client__legal_name",
    "contract__code", "entity__code", "entity__currency",
)


def _user_model() -> Any:
    return Invoice._meta.get_field("prepared_by").related_model


def _open_exceptions(severity: str) -> Coalesce:
    """Open exceptions of one severity per invoice, as a correlated count: a GROUP BY over the joined
    queue rows costs the planner several times more than the query itself."""
    per_invoice = (
        InvoiceException.objects.filter(invoice=OuterRef("pk"), state=OPEN, severity=severity)
        .order_by()
        .values("invoice")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(per_invoice, output_field=IntegerField()), 0)


def invoice_queue(
    *,
    status: str | None = None,
    run_id: int | None = None,
    filters: dict | None = None,
    sort: str = "oldest",
    limit: int = QUEUE_LIMIT,
) -> InvoiceQueue:
    """Invoices of one review tab (oldest first by default), with tab counts and totals.

    `filters`: entity (code), client (code or name, contains), min_amount / max_amount
    (total), warning (an open exception code), min_age (days since created).
    """
    tab = invoice_tab(status)
    base = Invoice.objects.all()
    if run_id:
        base = base.filter(billing_run_id=run_id)
    base = _filter_invoices(base, filters or {})
    # One query for the counts of every tab.
    per_status = dict(base.values("status").annotate(n=Count("*")).values_list("status", "n"))
    tabs = [
        (key, label, sum(per_status.get(s, 0) for s in statuses) if statuses else sum(per_status.values()))
        for key, label, statuses in INVOICE_TABS
    ]
    statuses = next(statuses for key, _label, statuses in INVOICE_TABS if key == tab)
    filtered = base.filter(status__in=statuses) if statuses else base
    totals = {
        row["currency"]: row["total"] or ZERO
        for row in filtered.values("currency").annotate(total=Sum("total")).order_by("currency")
    }
    if sort == "priority":
        filtered = annotate_cash_impact(filtered)
    invoices = list(
        filtered.select_related("client", "contract", "entity")
        .only(*QUEUE_FIELDS)
        .annotate(open_warnings=_open_exceptions(WARNING), open_blocking=_open_exceptions(BLOCKING))
        .order_by(*QUEUE_SORTS.get(sort, QUEUE_SORTS["oldest"]))[: limit + 1]
    )
    truncated = len(invoices) > limit
    invoices = invoices[:limit]
    # Only rows that have a project / a preparer ask (none: no query).
    prefetch_related_objects(
        [invoice for invoice in invoices if invoice.project_id],
        Prefetch("project", queryset=Project.objects.only("code")),
    )
    prefetch_related_objects(
        [invoice for invoice in invoices if invoice.prepared_by_id],
        Prefetch("prepared_by", queryset=_user_model().objects.only("username", "first_name", "last_name")),
    )
    today = timezone.localdate()
    for invoice in invoices:
        invoice.age_days = (today - timezone.localtime(invoice.created_at).date()).days
    return InvoiceQueue(tab=tab, tabs=tabs, invoices=invoices, totals=_money(totals), truncated=truncated)


def _filter_invoices(base, filters: dict):
    if filters.get("entity"):
        base = base.filter(entity__code=filters["entity"])
    if filters.get("client"):
        term = filters["client"]
        base = base.filter(Q(client__code__icontains=term) | Q(client__legal_name__icontains=term))
    if filters.get("min_amount") is not None:
        base = base.filter(total__gte=filters["min_amount"])
    if filters.get("max_amount") is not None:
        base = base.filter(total__lte=filters["max_amount"])
    if filters.get("warning"):
        open_exception = InvoiceException.objects.filter(invoice=OuterRef("pk"), code=filters["warning"], state=OPEN)
        base = base.filter(Exists(open_exception))
    if filters.get("min_age"):
        base = base.filter(created_at__lte=timezone.now() - datetime.timedelta(days=filters["min_age"]))
    return base


# --- invoice detail -------------------------------------------------------------------------------


@dataclass
class LineGroup:
    """Lines of one project (or of the contract as a whole: retainer fee, discount, write-down)."""

    project: Any
    lines: list[InvoiceLine]
    subtotal: Decimal
    hours: Decimal
    contract: Any = None  # set on consolidated invoices: groups by contract, then project (§13)


class BilledEntry(NamedTuple):
    """A time entry as a line's drill-down shows it (an invoice bills hundreds: plain rows, not models)."""

    person: str
    date: datetime.date
    hours: Decimal
    description: str


#: Optional relations of an invoice page, each read by its own query only when the invoice has one:
#: a join per nullable relation made the planner, not the data, the dearest part of the page.
INVOICE_OPTIONAL_RELATIONS = ("project", "credit_of", "purchase_order")


def get_invoice(pk: int) -> Invoice:
    """The invoice with everything its page shows, in a bounded number of queries (not growing with lines
    or billed items). Billed time entries, expenses and milestones are read only for lines of their kind;
    a time line's entries come as `line.billed_entries` (`BilledEntry` rows of the drill-down's columns)."""
    invoice = Invoice.objects.select_related("entity", "client", "contract").get(pk=pk)
    # Preparer and approver (either may be unset) in one query.
    user_ids = {invoice.prepared_by_id, invoice.approved_by_id} - {None}
    users = _user_model().objects.in_bulk(user_ids) if user_ids else {}
    invoice.prepared_by = users.get(invoice.prepared_by_id)
    invoice.approved_by = users.get(invoice.approved_by_id)
    # A line names its contract only on a consolidated invoice (invoice_line_groups).
    line_relations = ("project", "role", "contract") if invoice.consolidated else ("project", "role")
    prefetch_related_objects(
        [invoice],
        *(name for name in INVOICE_OPTIONAL_RELATIONS if getattr(invoice, f"{name}_id") is not None),
        Prefetch("lines", queryset=InvoiceLine.objects.select_related(*line_relations).order_by("position", "id")),
        "taxes",
        # With the payment an unapplied-cash exception names (the payment panel lists those).
        Prefetch(
            "exceptions",
            queryset=InvoiceException.objects.select_related("resolved_by", "payment").order_by(
                "state", "severity", "code", "id"
            ),
        ),
    )
    lines = list(invoice.lines.all())
    by_kind: dict[str, list[InvoiceLine]] = defaultdict(list)
    for line in lines:
        by_kind[line.kind].append(line)
    time_lines = by_kind[InvoiceLine.Kind.TIME] + by_kind[InvoiceLine.Kind.OVERAGE]
    if time_lines:
        entries: dict[int, list[BilledEntry]] = defaultdict(list)
        rows = (
            TimeEntry.objects.filter(invoice_line_id__in=[line.pk for line in time_lines])
            .order_by("date", "id")
            .values_list("invoice_line_id", "person__name", "date", "hours", "description")
        )
        for line_id, *shown in rows:
            entries[line_id].append(BilledEntry(*shown))
        for line in time_lines:
            line.billed_entries = entries[line.pk]
    if by_kind[InvoiceLine.Kind.EXPENSE]:
        prefetch_related_objects(
            by_kind[InvoiceLine.Kind.EXPENSE],
            Prefetch("expenses", queryset=Expense.objects.select_related("person").order_by("date", "id")),
        )
    if by_kind[InvoiceLine.Kind.MILESTONE]:
        prefetch_related_objects(
            by_kind[InvoiceLine.Kind.MILESTONE],
            Prefetch("milestones", queryset=Milestone.objects.order_by("due_date", "id")),
        )
    return invoice


def invoice_line_groups(invoice: Invoice) -> list[LineGroup]:
    """Lines grouped by project (project code order), contract-level lines last."""
    by_project: dict[Any, list[InvoiceLine]] = defaultdict(list)
    for line in invoice.lines.all():
        by_project[(line.contract_id if invoice.consolidated else None, line.project_id)].append(line)
    groups = []
    for (contract_id, project_id), lines in by_project.items():
        groups.append(
            LineGroup(
                contract=lines[0].contract if contract_id else None,
                project=lines[0].project if project_id else None,
                lines=lines,
                subtotal=sum((line.amount for line in lines), ZERO),
                hours=sum(
                    (line.quantity for line in lines if line.kind in (InvoiceLine.Kind.TIME, InvoiceLine.Kind.OVERAGE)),
                    ZERO,
                ),
            )
        )
    groups.sort(
        key=lambda g: (g.contract.code if g.contract else "", g.project is None, g.project.code if g.project else "")
    )
    return groups


@dataclass
class TimelineEntry:
    when: datetime.datetime
    who: str
    kind: str  # "transition", "change" or "note"
    title: str
    detail: str = ""


def actor_name(user: Any) -> str:
    """Who did it, as the timelines show it: the user's name, or "system" for tasks and schedules."""
    if user is None:
        return "system"
    return user.get_full_name() or user.get_username()


def _actor_fields(relation: str) -> tuple[str, ...]:
    """The user columns `actor_name` reads, through `relation` (the timelines load nothing more)."""
    return tuple(f"{relation}__{name}" for name in ("username", "first_name", "last_name"))


def record_timeline(obj: Any, *, labels: dict[str, str], created: str = "Created") -> list[TimelineEntry]:
    """Transitions (django-fsm-log) and saved versions (simple-history) of a record with a `status`. Two queries.

    Newest first; the record pages (invoices, disputes) show it as their history.
    """
    entries: list[TimelineEntry] = []
    content_type = ContentType.objects.get_for_model(type(obj))
    for log in (
        StateLog.objects.filter(content_type=content_type, object_id=obj.pk)
        .select_related("by")
        .only("timestamp", "source_state", "state", "description", *_actor_fields("by"))
    ):
        source = labels.get(log.source_state, log.source_state or "—")
        entries.append(
            TimelineEntry(
                when=log.timestamp,
                who=actor_name(log.by),
                kind="transition",
                title=f"{source} → {labels.get(log.state, log.state)}",
                detail=log.description or "",
            )
        )
    versions = obj.history.select_related("history_user").only(
        "history_date", "history_type", "status", "history_change_reason", *_actor_fields("history_user")
    )
    for record in versions:
        action = {"+": created, "~": "Changed", "-": "Deleted"}.get(record.history_type, "Changed")
        entries.append(
            TimelineEntry(
                when=record.history_date,
                who=actor_name(record.history_user),
                kind="change",
                title=f"{action} (status {labels.get(record.status, record.status).lower()})",
                detail=record.history_change_reason or "",
            )
        )
    entries.sort(key=lambda e: e.when, reverse=True)
    return entries


def invoice_timeline(invoice: Invoice) -> list[TimelineEntry]:
    """The invoice's transitions and saved versions, newest first. Two queries."""
    return record_timeline(invoice, labels=dict(Invoice.Status.choices))


# --- a project manager's invoices (read only) --------------------------------------------------------


def invoices_of_managed_projects(user: Any) -> QuerySet[Invoice]:
    """Invoices (and credit notes) billing work of the projects `user` manages.

    An invoice per project belongs to that project's PM; an invoice of the whole contract to the
    PM of any of the contract's projects (it bills their project's work with the others').
    """

    managed = Project.objects.filter(project_manager=user)
    return Invoice.objects.filter(
        Q(project__project_manager=user)
        | Q(project__isnull=True) & Exists(managed.filter(contract=OuterRef("contract")))
    )


def pm_invoice_list(user: Any, *, status: str = "", limit: int = QUEUE_LIMIT) -> tuple[list[Invoice], bool]:
    """The PM's invoices, newest first (a status filter optional); and whether the list was cut at `limit`."""
    qs = invoices_of_managed_projects(user)
    if status in Invoice.Status.values:
        qs = qs.filter(status=status)
    rows = list(
        qs.select_related("client", "contract", "project", "entity").order_by("-issue_date", "-id")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def purchase_order_page(pk: int) -> dict | None:
    """The PO page: the PO, its figures, its contracts and the invoices and credit notes that draw on it."""
    from billing.models import PurchaseOrder
    from billing.services.purchase_orders import COMMITTED_STATUSES, ISSUED_STATUSES, po_figures

    po = PurchaseOrder.objects.select_related("client").filter(pk=pk).first()
    if po is None:
        return None
    invoices = list(
        po.invoices.select_related("contract", "credit_of").order_by("issue_date", "id")
    )
    for invoice in invoices:
        if invoice.currency != po.currency:
            invoice.po_effect = "draws nothing (other currency)"
        elif invoice.kind == "credit_note":
            invoice.po_effect = "gives back" if invoice.status in ISSUED_STATUSES else "gives back once issued"
        elif invoice.status in COMMITTED_STATUSES:
            invoice.po_effect = "invoiced"
        elif invoice.status == "cancelled":
            invoice.po_effect = "cancelled: given back"
        else:
            invoice.po_effect = "holds (draft)"
    return {
        "po": po,
        "figures": po_figures(po),
        "contracts": list(po.contracts.order_by("code")),
        "invoices": invoices,
    }
