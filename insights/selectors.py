"""Process-intelligence KPIs (docs/rules/kpis.md): one function per metric, each computed in the database.

Every metric reads the records and the transition log (`django_fsm_log.StateLog`) as they
are; nothing is pre-aggregated, so a number on a dashboard is always the records behind it.
Each function's docstring is the metric's exact definition: the dashboards, the API
(`/api/v1/kpis/`) and `manage.py kpis` show that text next to the number.

Filters (`KpiFilters`): a period (start and end, inclusive), and optionally a legal entity
(code), a client (code) and a business unit (`Project.business_unit`, the practice). An
invoice belongs to a business unit when its project does, or when one of its lines bills a
project of that unit (an invoice spanning two practices counts under both filters).

Queries are bounded: aggregates (`values().annotate()`, conditional `Count`/`Sum`) and
correlated subqueries, never one query per row. Medians and 90th percentiles are
`PERCENTILE_CONT` on PostgreSQL; on SQLite (the local demo) the per-record values are computed
in SQL and the percentiles in Python, with the same interpolation.

Money is never summed across currencies: amounts are per currency, and where one figure is
needed (DSO, the dashboard totals) they are converted to `INSIGHTS_REPORTING_CURRENCY`
(default EUR) at the latest FX rate on or before the as-of date.
"""

from __future__ import annotations

import datetime
import inspect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    BooleanField,
    Case,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.models import Expense, FxRate, Invoice, InvoiceException, InvoiceLine, Milestone, Payment, TimeEntry
from billing.models.work import timesheet_cutoff
from kernel.periods import first_of_month, month_of, next_month

ZERO = Decimal("0")
MONEY_FIELD = DecimalField(max_digits=18, decimal_places=2)
ISSUED = Q(number__isnull=False)  # numbered = approved or later; never un-numbered again
UNISSUED_STATUSES = ("draft", "exception", "pending_approval")
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
LEAKAGE_BUCKETS = ("0-30", "31-60", "61-90", "90+")
DISPUTE_AGE_BUCKETS = ("0-15", "16-30", "31-60", "61+")
FIRST_PASS_WINDOW_DAYS = 60
FORECAST_WEEKS = 13
FORECAST_ERROR_WEEKS = 8
DSO_WINDOW_DAYS = 90


def reporting_currency() -> str:
    return getattr(settings, "INSIGHTS_REPORTING_CURRENCY", "EUR")


def leakage_days() -> int:
    """N of the leakage metric: days after a period's end before unbilled approved work counts as leakage."""
    return int(getattr(settings, "INSIGHTS_LEAKAGE_DAYS", 15))


# --- filters ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiFilters:
    period_start: datetime.date
    period_end: datetime.date
    entity: str | None = None  # LegalEntity.code
    client: str | None = None  # Client.code
    business_unit: str | None = None  # Project.business_unit
    today: datetime.date | None = None  # for tests; default: today's date

    @property
    def as_of(self) -> datetime.date:
        """Balances and backlogs are read at the end of the period, or today when the period runs on."""
        today = self.today or timezone.localdate()
        return min(self.period_end, today)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "entity": self.entity,
            "client": self.client,
            "business_unit": self.business_unit,
            "as_of": self.as_of.isoformat(),
            "reporting_currency": reporting_currency(),
        }


def invoice_scope(f: KpiFilters, path: str = "") -> Q:
    """Entity, client and business-unit filter on invoices reached through `path` (e.g. "invoice__")."""
    q = Q()
    if f.entity:
        q &= Q(**{f"{path}entity__code": f.entity})
    if f.client:
        q &= Q(**{f"{path}client__code": f.client})
    if f.business_unit:
        outer = OuterRef(path[:-2]) if path else OuterRef("pk")
        lines = InvoiceLine.objects.filter(invoice=outer, project__business_unit=f.business_unit)
        q &= Q(**{f"{path}project__business_unit": f.business_unit}) | Q(Exists(lines))
    return q


def project_scope(f: KpiFilters, path: str = "project__") -> Q:
    """The same filters on work items (time, expenses, milestones) through their project."""
    q = Q()
    if f.entity:
        q &= Q(**{f"{path}contract__entity__code": f.entity})
    if f.client:
        q &= Q(**{f"{path}contract__client__code": f.client})
    if f.business_unit:
        q &= Q(**{f"{path}business_unit": f.business_unit})
    return q


def issued_invoices(f: KpiFilters) -> QuerySet:
    """Invoices (not credit notes) numbered, with their issue date in the period, in scope."""
    return Invoice.objects.filter(
        ISSUED, invoice_scope(f), kind=Invoice.Kind.INVOICE, issue_date__gte=f.period_start,
        issue_date__lte=f.period_end,
    )


# --- SQL helpers --------------------------------------------------------------------------------------


def _pg() -> bool:
    return connection.vendor == "postgresql"


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate: the interpolated percentile of a numeric expression."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def days_between(later: Any, earlier: Any) -> Func:
    """(later − earlier) in days, as a number, for dates or timestamps, in SQL."""
    later = F(later) if isinstance(later, str) else later
    earlier = F(earlier) if isinstance(earlier, str) else earlier
    if _pg():
        return Func(
            later, earlier, template="(EXTRACT(EPOCH FROM (%(expressions)s::timestamptz)) / 86400.0)",
            arg_joiner="::timestamptz - ", output_field=FloatField(),
        )
    return Func(later, earlier, template="(julianday(%(expressions)s))", arg_joiner=") - julianday(",
                output_field=FloatField())


def epoch(field: str) -> Func:
    """Seconds since 1970-01-01 UTC of a date or timestamp column, as a number, in SQL."""
    if _pg():
        return Func(F(field), template="EXTRACT(EPOCH FROM %(expressions)s)::float", output_field=FloatField())
    return Func(F(field), template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)", output_field=FloatField())


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's PERCENTILE_CONT."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def stats(qs: QuerySet, measures: dict[str, Any], group_by: Iterable[str] = (), *,
          per_row: bool = False) -> list[dict[str, Any]]:
    """n, mean, median and p90 of each measure (an SQL expression), overall or per group, in one query.

    Returns one dict per group: the group keys, then `<measure>` → {n, mean, median, p90}.
    `per_row`: the database computes each record's values once (one row per record) and the
    statistics are taken here — for measures built on correlated subqueries, which an
    aggregate would evaluate once per statistic.
    """
    group_by = list(group_by)
    qs = qs.order_by()
    names = {name: f"_m_{name}" for name in measures}
    qs = qs.annotate(**{alias: measures[name] for name, alias in names.items()})
    rows: list[dict[str, Any]] = []
    if _pg() and not per_row:
        aggregates = {}
        for alias in names.values():
            aggregates[f"{alias}_n"] = Count(alias)
            aggregates[f"{alias}_mean"] = Avg(alias)
            aggregates[f"{alias}_p50"] = PercentileCont(alias, 0.5)
            aggregates[f"{alias}_p90"] = PercentileCont(alias, 0.9)
        raw = list(qs.values(*group_by).annotate(**aggregates).order_by(*group_by)) if group_by else [
            qs.aggregate(**aggregates)
        ]
        for r in raw:
            row = {k: r[k] for k in group_by}
            for name, alias in names.items():
                row[name] = {
                    "n": r[f"{alias}_n"], "mean": _r(r[f"{alias}_mean"]), "median": _r(r[f"{alias}_p50"]),
                    "p90": _r(r[f"{alias}_p90"]),
                }
            rows.append(row)
        return rows
    grouped: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in qs.values_list(*group_by, *names.values()):
        key = tuple(r[: len(group_by)])
        for i, name in enumerate(names):
            value = r[len(group_by) + i]
            if value is not None:
                grouped[key][name].append(float(value))
    if not group_by and not grouped:
        grouped[()] = defaultdict(list)
    for key in sorted(grouped, key=lambda k: tuple(str(x) for x in k)):
        row = dict(zip(group_by, key, strict=True))
        for name in names:
            values = grouped[key][name]
            row[name] = {
                "n": len(values), "mean": _r(sum(values) / len(values)) if values else None,
                "median": _r(percentile(values, 0.5)), "p90": _r(percentile(values, 0.9)),
            }
        rows.append(row)
    return rows


def _month(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        value = value.date()
    return value.strftime("%Y-%m")


def month_ends(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    """The last day of every month from start's to end's (end itself for a month not finished)."""
    out, month = [], first_of_month(start)
    while month <= end:
        out.append(min(next_month(month) - timedelta(days=1), end))
        month = next_month(month)
    return out


def money(value: Decimal | None) -> Decimal:
    """A summed amount to cents (SQLite returns sums of decimals with float noise)."""
    return (value or ZERO).quantize(Decimal("0.01"))


def fx_rates(currencies: Iterable[str], as_of: datetime.date) -> dict[str, Decimal | None]:
    """Rate of each currency into the reporting currency: the latest on or before `as_of` (one query)."""
    target = reporting_currency()
    currencies = {c for c in currencies if c}
    rates: dict[str, Decimal | None] = {c: None for c in currencies}
    if target in rates:
        rates[target] = Decimal("1")
    wanted = [c for c in currencies if c != target]
    if wanted:
        latest = (
            FxRate.objects.filter(from_currency=OuterRef("from_currency"), to_currency=target, date__lte=as_of)
            .order_by("-date")
            .values("pk")[:1]
        )
        found = (
            FxRate.objects.filter(to_currency=target, from_currency__in=wanted, date__lte=as_of)
            .filter(pk=Subquery(latest))
            .values_list("from_currency", "rate")
        )
        for cur, rate in found:
            rates[cur] = rate
    return rates


def convert(amounts: dict[str, Decimal], rates: dict[str, Decimal | None]) -> Decimal | None:
    """Σ amounts converted to the reporting currency; None when a rate is missing."""
    total = ZERO
    for cur, amount in amounts.items():
        rate = rates.get(cur)
        if rate is None:
            if amount:
                return None
            continue
        total += amount * rate
    return total.quantize(Decimal("0.01"))


def _invoice_ct_id() -> int:
    return ContentType.objects.get_for_model(Invoice).pk


# --- 1. days-to-invoice -----------------------------------------------------------------------------


def days_to_invoice(f: KpiFilters) -> dict[str, Any]:
    """Days-to-invoice: issue date − end of the billed period, per invoice issued in the period.

    For an invoice billing milestones (fixed-fee contracts) the reference is the approval date
    of the last milestone it bills instead of the period end. Invoices only (not credit notes),
    numbered, issued between period start and end. Reported: count, mean, median and 90th
    percentile in days, overall and per month of issue.
    """
    qs = issued_invoices(f)
    # The last approval of the milestones each invoice bills: one grouped query, not a subquery per row.
    approved = {
        r["invoice_line__invoice"]: r["last"]
        for r in Milestone.objects.filter(invoice_line__invoice__in=qs.values("pk"), approved_at__isnull=False)
        .order_by().values("invoice_line__invoice").annotate(last=Max("approved_at"))
    }
    values: list[float] = []
    months: dict[str, list[float]] = defaultdict(list)
    for pk, issue_date, period_end in qs.order_by().values_list("pk", "issue_date", "period_end"):
        ref = approved.get(pk)
        ref = _as_date(ref) if ref is not None else (period_end or issue_date)
        days = float((issue_date - ref).days)
        values.append(days)
        months[_month(issue_date)].append(days)

    def summary(v: list[float]) -> dict[str, Any]:
        return {"n": len(v), "mean": _r(sum(v) / len(v)) if v else None, "median": _r(percentile(v, 0.5)),
                "p90": _r(percentile(v, 0.9))}

    overall = summary(values)
    by_month = [{"month": m, **summary(v)} for m, v in sorted(months.items())]
    return {**overall, "unit": "days", "by_month": by_month}


# --- 2. billing cycle time -------------------------------------------------------------------------


CYCLE_STAGES = (
    ("period_end_to_draft", "Period end → draft made"),
    ("draft_to_approved", "Draft → approved"),
    ("approved_to_posted", "Approved → posted (ERP)"),
    ("posted_to_sent", "Posted → sent to the client"),
    ("total", "Period end → sent (cycle time)"),
)


def billing_cycle_time(f: KpiFilters) -> dict[str, Any]:
    """Billing cycle time: period end → invoice sent to the client, in days, with its stages.

    For invoices issued in the period: period end → draft made (created), draft → approved
    (`approved_at`), approved → posted, posted → sent (the first `posted` and `sent` transitions in
    the transition log). The cycle is period end → sent; invoices not sent yet have no cycle time
    but count in the stages they passed. Median and 90th percentile per stage, in days.
    """
    qs = issued_invoices(f)
    # First `posted` and `sent` of each invoice: one grouped read of the transition log. Times come back
    # as epoch seconds (numbers): parsing thousands of timestamps in Python would cost more than the SQL.
    firsts: dict[tuple[int, str], float] = {
        (r["object_id"], r["state"]): r["t"]
        for r in StateLog.objects.filter(content_type_id=_invoice_ct_id(), state__in=["posted", "sent"],
                                         object_id__in=qs.values("pk"))
        .order_by().values("object_id", "state").annotate(t=Min(epoch("timestamp")))
    }

    def days(later: float | None, earlier: float | None) -> float | None:
        return None if later is None or earlier is None else (later - earlier) / 86400

    values: dict[str, list[float]] = {key: [] for key, _ in CYCLE_STAGES}
    rows = qs.order_by().annotate(e_end=epoch("period_end"), e_created=epoch("created_at"),
                                  e_approved=epoch("approved_at")).values_list("pk", "e_end", "e_created", "e_approved")
    for pk, period_end, created, approved in rows:
        posted, sent = firsts.get((pk, "posted")), firsts.get((pk, "sent"))
        for key, value in (("period_end_to_draft", days(created, period_end)),
                           ("draft_to_approved", days(approved, created)),
                           ("approved_to_posted", days(posted, approved)), ("posted_to_sent", days(sent, posted)),
                           ("total", days(sent, period_end))):
            if value is not None:
                values[key].append(value)
    row = {key: {"n": len(v), "mean": _r(sum(v) / len(v)) if v else None, "median": _r(percentile(v, 0.5)),
                 "p90": _r(percentile(v, 0.9))} for key, v in values.items()}
    return {
        "unit": "days",
        "stages": [{"stage": key, "label": label, **row[key]} for key, label in CYCLE_STAGES],
        **row["total"],
    }


# --- 3. approval latency ---------------------------------------------------------------------------


def _decisions(f: KpiFilters) -> QuerySet:
    from approvals.models import ApprovalDecision
    from billing.models import Project

    q = Q(step_opened_at__isnull=False, decided_at__date__gte=f.period_start, decided_at__date__lte=f.period_end)
    if f.entity:
        q &= Q(request__contract__entity__code=f.entity)
    if f.client:
        q &= Q(request__contract__client__code=f.client)
    if f.business_unit:
        projects = Project.objects.filter(contract=OuterRef("request__contract"), business_unit=f.business_unit)
        q &= Q(request__project__business_unit=f.business_unit) | Q(request__project__isnull=True) & Q(
            Exists(projects)
        )
    return ApprovalDecision.objects.filter(q)


def _sla_hours() -> Subquery:
    from approvals.models import ApprovalStep

    return Subquery(
        ApprovalStep.objects.filter(policy=OuterRef("request__policy"), order=OuterRef("step_order"))
        .values("sla_hours")[:1]
    )


def approval_latency(f: KpiFilters) -> dict[str, Any]:
    """Approval latency: step opened → decided, in hours, for every step decided in the period.

    From `ApprovalDecision` (`decided_at − step_opened_at`), per subject type and step and per
    approver (the person who decided; a delegate is counted as themselves): count, median and
    90th percentile. An SLA breach is a step decided later than its policy step's `sla_hours`.
    """
    hours = ExpressionWrapper(days_between("decided_at", "step_opened_at") * Value(24.0), output_field=FloatField())
    qs = _decisions(f)
    measure = {"hours": hours}
    overall = stats(qs, measure)[0]["hours"]
    by_step = [
        {"subject_type": r["request__subject_type"], "step": r["step_order"], **r["hours"]}
        for r in stats(qs, measure, ["request__subject_type", "step_order"])
    ]
    by_approver = [
        {
            "approver_id": r["approver_id"],
            "approver": " ".join(filter(None, [r["approver__first_name"], r["approver__last_name"]]))
            or r["approver__username"],
            **r["hours"],
        }
        for r in stats(qs, measure, ["approver_id", "approver__username", "approver__first_name",
                                     "approver__last_name"])
    ]
    by_approver.sort(key=lambda r: (-(r["median"] or 0), r["approver"]))
    breaches = qs.annotate(sla=_sla_hours(), h=hours).aggregate(
        breaches=Count("pk", filter=Q(sla__isnull=False, h__gt=F("sla"))), decided=Count("pk")
    )
    return {
        "unit": "hours", **overall, "by_step": by_step, "by_approver": by_approver,
        "sla_breaches": breaches["breaches"], "decided": breaches["decided"], **route_overrides(f),
    }


def route_overrides(f: KpiFilters) -> dict[str, int]:
    """Four-eyes overrides of approval routes: requested and confirmed in the period (docs/rules/approvals.md).

    Skipped steps are recorded without `step_opened_at`, so they never count in the latency above.
    """
    from approvals.models import ApprovalOverride

    scope = Q()
    if f.entity:
        scope &= Q(request__contract__entity__code=f.entity)
    if f.client:
        scope &= Q(request__contract__client__code=f.client)
    if f.business_unit:
        scope &= Q(request__project__business_unit=f.business_unit) | Q(
            request__project__isnull=True, request__contract__projects__business_unit=f.business_unit
        )
    counts = ApprovalOverride.objects.filter(scope).aggregate(
        requested=Count("pk", filter=Q(created_at__date__gte=f.period_start, created_at__date__lte=f.period_end),
                        distinct=True),
        confirmed=Count("pk", filter=Q(status="confirmed", confirmed_at__date__gte=f.period_start,
                                       confirmed_at__date__lte=f.period_end), distinct=True),
    )
    return {"route_overrides_requested": counts["requested"], "route_overrides_confirmed": counts["confirmed"]}


# --- 4. first-pass accuracy ------------------------------------------------------------------------


def _first_pass_flags(qs: QuerySet) -> QuerySet:
    window = timedelta(days=FIRST_PASS_WINDOW_DAYS)
    return qs.annotate(
        hit_blocking=Exists(
            InvoiceException.objects.filter(invoice=OuterRef("pk"), severity=InvoiceException.Severity.BLOCKING)
        ),
        was_rejected=Exists(
            StateLog.objects.filter(content_type_id=_invoice_ct_id(), object_id=OuterRef("pk"), transition="reject")
        ),
        got_credit=Exists(
            Invoice.objects.filter(
                kind=Invoice.Kind.CREDIT_NOTE, credit_of=OuterRef("pk"), issue_date__lte=OuterRef("issue_date") + window
            ).exclude(status=Invoice.Status.CANCELLED)
        ),
        got_dispute=Exists(
            _dispute_model().objects.filter(
                invoice=OuterRef("pk"), opened_at__date__lte=OuterRef("issue_date") + window
            )
        ),
    )


def _dispute_model():
    from disputes.models import Dispute

    return Dispute


FIRST_PASS_CLEAN = Q(hit_blocking=False, was_rejected=False, got_credit=False, got_dispute=False)


def first_pass_accuracy(f: KpiFilters) -> dict[str, Any]:
    """First-pass accuracy: share of invoices issued in the period that went through clean.

    Clean = never hit a blocking exception (any state: resolved and overridden ones count),
    were never rejected by an approver (a `reject` transition), and got no credit note (not
    cancelled) and no dispute within 60 days of the issue date. Invoices issued less than 60
    days before today can still lose their clean status. Reported as a percentage, overall and
    per month of issue, with the count of each reason.
    """
    flags = ("hit_blocking", "was_rejected", "got_credit", "got_dispute")
    rows = _first_pass_flags(issued_invoices(f)).order_by().values_list("issue_date", *flags)
    total = {"issued": 0, "clean": 0, "blocking": 0, "rejected": 0, "credited": 0, "disputed": 0}
    months: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for issue_date, *hit in rows:  # one row per invoice: each Exists is evaluated once
        clean = not any(hit)
        total["issued"] += 1
        total["clean"] += clean
        for key, flag in zip(("blocking", "rejected", "credited", "disputed"), hit, strict=True):
            total[key] += bool(flag)
        months[_month(issue_date)][0] += 1
        months[_month(issue_date)][1] += clean
    by_month = [{"month": m, "issued": n, "clean": c, "pct": _pct(c, n)} for m, (n, c) in sorted(months.items())]
    return {"pct": _pct(total["clean"], total["issued"]), **total, "by_month": by_month,
            "window_days": FIRST_PASS_WINDOW_DAYS}


def _pct(part: int | Decimal | None, whole: int | Decimal | None) -> float | None:
    if not whole:
        return None
    return round(100.0 * float(part or 0) / float(whole), 1)


# --- 5. exception rate by code ---------------------------------------------------------------------


def exception_rate(f: KpiFilters) -> dict[str, Any]:
    """Exception rate by code: share of the invoices drafted in the period that raised each code.

    Drafted = invoices (not credit notes) created between period start and end, whatever
    became of them (cancelled included). Per code: the number of those invoices that raised it
    at least once (rate = that / invoices drafted), its severity, and how many are still open.
    """
    drafted = Invoice.objects.filter(
        invoice_scope(f), kind=Invoice.Kind.INVOICE, created_at__date__gte=f.period_start,
        created_at__date__lte=f.period_end,
    )
    n = drafted.count()
    rows = (
        InvoiceException.objects.filter(invoice__in=drafted.values("pk"))
        .values("code", "severity")
        .annotate(
            invoices=Count("invoice", distinct=True),
            raised=Count("pk"),
            open=Count("pk", filter=Q(state=InvoiceException.State.OPEN)),
        )
        .order_by("-invoices", "code")
    )
    codes = [{**r, "rate_pct": _pct(r["invoices"], n)} for r in rows]
    return {"drafted": n, "by_code": codes}


# --- 6. disputes --------------------------------------------------------------------------------------


def disputes(f: KpiFilters) -> dict[str, Any]:
    """Dispute frequency, causes and aging.

    Frequency: disputes opened in the period ÷ invoices issued in the period (%). Causes:
    disputes opened in the period by category, with the disputed amount per currency. Aging:
    disputes live (open or investigating) at the as-of date (period end, or today), by days
    since opened (0–15, 16–30, 31–60, 61+). Resolution time: opened → resolved or withdrawn,
    in days, for those closed in the period (median and p90).
    """
    Dispute = _dispute_model()
    scope = invoice_scope(f, "invoice__")
    opened = Dispute.objects.filter(scope, opened_at__date__gte=f.period_start, opened_at__date__lte=f.period_end)
    issued = issued_invoices(f).count()
    by_category: dict[str, dict[str, Any]] = {}
    labels = dict(Dispute.Category.choices)
    for r in opened.values("category", "currency").annotate(n=Count("pk"), amount=Sum("disputed_amount")).order_by():
        row = by_category.setdefault(r["category"], {"category": r["category"], "label": labels.get(r["category"],
                                                     r["category"]), "count": 0, "amounts": []})
        row["count"] += r["n"]
        row["amounts"].append({"currency": r["currency"], "amount": money(r["amount"])})
    causes = sorted(by_category.values(), key=lambda r: (-r["count"], r["category"]))
    opened_count = sum(r["count"] for r in causes)

    as_of = f.as_of
    live = Dispute.objects.filter(scope, opened_at__date__lte=as_of).filter(
        Q(status__in=["open", "investigating"]) | Q(resolved_at__date__gt=as_of)
    )
    t15, t30, t60 = (as_of - timedelta(days=d) for d in (15, 30, 60))
    aging = live.aggregate(
        b0=Count("pk", filter=Q(opened_at__date__gte=t15)),
        b1=Count("pk", filter=Q(opened_at__date__lt=t15, opened_at__date__gte=t30)),
        b2=Count("pk", filter=Q(opened_at__date__lt=t30, opened_at__date__gte=t60)),
        b3=Count("pk", filter=Q(opened_at__date__lt=t60)),
        overdue=Count("pk", filter=Q(due_date__lt=as_of)),
    )
    closed = Dispute.objects.filter(
        scope, resolved_at__isnull=False, resolved_at__date__gte=f.period_start, resolved_at__date__lte=f.period_end
    )
    resolution = stats(closed, {"days": days_between("resolved_at", "opened_at")})[0]["days"]
    return {
        "opened": opened_count,
        "invoices_issued": issued,
        "frequency_pct": _pct(opened_count, issued),
        "causes": causes,
        "aging": [{"bucket": b, "count": aging[f"b{i}"]} for i, b in enumerate(DISPUTE_AGE_BUCKETS)],
        "live": sum(aging[f"b{i}"] for i in range(4)),
        "live_overdue": aging["overdue"],
        "resolution_days": resolution,
    }


# --- 7. credit-note volume -------------------------------------------------------------------------


def credit_notes(f: KpiFilters) -> dict[str, Any]:
    """Credit-note volume: credit notes issued in the period, count and gross amount per currency.

    Numbered credit notes with their issue date in the period, with the share of the gross
    amount invoiced in the same period and currency (credit notes ÷ invoices, %), and the count
    per month of issue.
    """
    base = Invoice.objects.filter(ISSUED, invoice_scope(f), issue_date__gte=f.period_start,
                                  issue_date__lte=f.period_end)
    rows = base.values("kind", "currency").annotate(n=Count("pk"), amount=Sum("total")).order_by("currency")
    invoiced = {r["currency"]: r["amount"] for r in rows if r["kind"] == Invoice.Kind.INVOICE}
    by_currency = [
        {"currency": r["currency"], "count": r["n"], "amount": money(r["amount"]),
         "invoiced": money(invoiced.get(r["currency"])), "share_pct": _pct(r["amount"], invoiced.get(r["currency"]))}
        for r in rows if r["kind"] == Invoice.Kind.CREDIT_NOTE
    ]
    by_month = [
        {"month": _month(r["month"]), "count": r["n"]}
        for r in base.filter(kind=Invoice.Kind.CREDIT_NOTE).annotate(month=TruncMonth("issue_date")).order_by()
        .values("month").annotate(n=Count("pk")).order_by("month")
    ]
    return {"count": sum(r["count"] for r in by_currency), "by_currency": by_currency, "by_month": by_month}


# --- 8 and 9. AR aging and DSO ----------------------------------------------------------------------


def _open_as_of(f: KpiFilters, as_of: datetime.date) -> QuerySet:
    """Issued invoices in scope with their balance as of `as_of`: total − credit notes − payments to that date."""
    paid = (
        Payment.objects.filter(invoice=OuterRef("pk"), date__lte=as_of).order_by().values("invoice")
        .annotate(s=Sum("amount")).values("s")
    )
    credited = (
        Invoice.objects.filter(ISSUED, kind=Invoice.Kind.CREDIT_NOTE, credit_of=OuterRef("pk"), issue_date__lte=as_of)
        .order_by().values("credit_of").annotate(s=Sum("total")).values("s")
    )
    zero = Value(ZERO, output_field=MONEY_FIELD)
    return (
        Invoice.objects.filter(ISSUED, invoice_scope(f), kind=Invoice.Kind.INVOICE, issue_date__lte=as_of)
        .annotate(
            paid_as_of=Coalesce(Subquery(paid, output_field=MONEY_FIELD), zero),
            credited_as_of=Coalesce(Subquery(credited, output_field=MONEY_FIELD), zero),
        )
        .annotate(balance_as_of=ExpressionWrapper(
            F("total") - F("paid_as_of") - F("credited_as_of"), output_field=MONEY_FIELD))
        .filter(balance_as_of__gt=0)
    )


def aging_bucket_q(as_of: datetime.date) -> dict[str, Q]:
    """Days past due at `as_of`: current (not due), 1–30, 31–60, 61–90, 90+."""
    d = {k: as_of - timedelta(days=k) for k in (30, 60, 90)}
    return {
        "current": Q(due_date__gte=as_of),
        "1-30": Q(due_date__lt=as_of, due_date__gte=d[30]),
        "31-60": Q(due_date__lt=d[30], due_date__gte=d[60]),
        "61-90": Q(due_date__lt=d[60], due_date__gte=d[90]),
        "90+": Q(due_date__lt=d[90]),
    }


def ar_aging(f: KpiFilters) -> dict[str, Any]:
    """AR aging: open receivables at the as-of date by days past due, per currency.

    Open receivable = a numbered invoice issued on or before the as-of date (period end, or
    today) whose balance then — total − credit notes issued by then − payments dated by then —
    is above zero (disputed invoices included). Buckets by days past the due date: current
    (not yet due), 1–30, 31–60, 61–90, 90+.
    """
    as_of = f.as_of
    buckets = aging_bucket_q(as_of)
    aggregates = {}
    for i, (_, q) in enumerate(buckets.items()):
        aggregates[f"a{i}"] = Sum("balance_as_of", filter=q)
        aggregates[f"n{i}"] = Count("pk", filter=q)
    rows = list(_open_as_of(f, as_of).order_by().values("currency").annotate(
        total=Sum("balance_as_of"), count=Count("pk"), **aggregates).order_by("currency"))
    by_currency = [
        {
            "currency": r["currency"], "total": money(r["total"]), "count": r["count"],
            "buckets": [{"bucket": b, "amount": money(r[f"a{i}"]), "count": r[f"n{i}"]}
                        for i, b in enumerate(buckets)],
        }
        for r in rows
    ]
    rates = fx_rates([r["currency"] for r in rows], as_of)
    totals = [
        {"bucket": b, "amount": convert({r["currency"]: r["buckets"][i]["amount"] for r in by_currency}, rates)}
        for i, b in enumerate(buckets)
    ]
    return {"as_of": as_of, "by_currency": by_currency, "reporting_currency": reporting_currency(),
            "reporting_totals": totals}


def dso(f: KpiFilters) -> dict[str, Any]:
    """DSO (days sales outstanding) = AR balance ÷ credit sales of the last 90 days × 90.

    At the as-of date (period end, or today) and at every month end of the period (the trend):
    AR balance = Σ invoices issued to that date − Σ credit notes issued to that date − Σ
    payments dated to that date; credit sales = Σ invoices − Σ credit notes issued in the 90
    days up to that date. Per currency, and overall in the reporting currency.
    """
    dates = sorted({*month_ends(f.period_start, f.as_of), f.as_of}) if f.period_start <= f.as_of else [f.as_of]
    scope = invoice_scope(f)
    sign = Case(When(kind=Invoice.Kind.CREDIT_NOTE, then=Value(-1)), default=Value(1), output_field=IntegerField())
    signed = ExpressionWrapper(F("total") * sign, output_field=MONEY_FIELD)
    aggregates = {}
    for i, d in enumerate(dates):
        aggregates[f"b{i}"] = Sum(signed, filter=Q(issue_date__lte=d))
        window = Q(issue_date__lte=d, issue_date__gt=d - timedelta(days=DSO_WINDOW_DAYS))
        aggregates[f"s{i}"] = Sum(signed, filter=window)
    inv_rows = list(Invoice.objects.filter(ISSUED, scope, issue_date__lte=dates[-1]).order_by().values("currency")
                    .annotate(**aggregates).order_by("currency"))
    pay_aggs = {f"p{i}": Sum("amount", filter=Q(date__lte=d)) for i, d in enumerate(dates)}
    # Payments count in their invoice's currency (a payment in another currency is a finance exception).
    pay_rows = {r["invoice__currency"]: r for r in Payment.objects.filter(
        invoice_scope(f, "invoice__"), invoice__isnull=False, invoice__number__isnull=False,
        invoice__kind=Invoice.Kind.INVOICE, date__lte=dates[-1],
    ).order_by().values("invoice__currency").annotate(**pay_aggs)}
    currencies = sorted({r["currency"] for r in inv_rows})
    rates = fx_rates(currencies, f.as_of)
    trend, by_currency = [], []
    for i, d in enumerate(dates):
        ar, sales = {}, {}
        for r in inv_rows:
            cur = r["currency"]
            paid = (pay_rows.get(cur) or {}).get(f"p{i}") or ZERO
            ar[cur] = money(r[f"b{i}"]) - money(paid)
            sales[cur] = money(r[f"s{i}"])
        ar_total, sales_total = convert(ar, rates), convert(sales, rates)
        trend.append({"date": d, "dso": _dso(ar_total, sales_total), "ar": ar_total, "sales_90d": sales_total})
        if d == f.as_of:
            by_currency = [{"currency": c, "ar": ar[c], "sales_90d": sales[c], "dso": _dso(ar[c], sales[c])}
                           for c in currencies]
    current = trend[-1]
    return {"as_of": f.as_of, "dso": current["dso"], "ar": current["ar"], "sales_90d": current["sales_90d"],
            "reporting_currency": reporting_currency(), "by_currency": by_currency, "trend": trend}


def _dso(ar: Decimal | None, sales: Decimal | None) -> float | None:
    if ar is None or not sales or sales <= 0:
        return None
    return round(float(ar) / float(sales) * DSO_WINDOW_DAYS, 1)


# --- 10. leakage --------------------------------------------------------------------------------------


def _not_invoiced() -> Q:
    """Approved (hence on no line), or on a line of an invoice not issued yet (draft, exception, pending)."""
    unissued = InvoiceLine.objects.filter(invoice__number__isnull=True, invoice__status__in=UNISSUED_STATUSES)
    return Q(status="approved") | Q(status="invoiced", invoice_line__in=unissued.values("pk"))


def _bucket_of_month(month: datetime.date, as_of: datetime.date, n: int) -> str | None:
    """The leakage age bucket of items dated in `month` at `as_of` (None: not N days past its end yet)."""
    age = (as_of - (next_month(month) - timedelta(days=1))).days
    if age <= n:
        return None
    return "0-30" if age <= 30 else "31-60" if age <= 60 else "61-90" if age <= 90 else "90+"


def leakage_age_q(as_of: datetime.date, n: int, date_field: str) -> dict[str, Q]:
    """Age buckets in days since the item's period (month) end, for items past end + n days at `as_of`.

    `month_end(d) < x` ⇔ `d < first day of x's month`; so every threshold is a date.
    """
    def before(days: int) -> Q:
        return Q(**{f"{date_field}__lt": first_of_month(as_of - timedelta(days=days))})

    leak = before(n)
    return {
        "0-30": leak & ~before(30),
        "31-60": leak & before(30) & ~before(60),
        "61-90": leak & before(60) & ~before(90),
        "90+": leak & before(90),
    }


def leakage(f: KpiFilters) -> dict[str, Any]:
    """Revenue leakage: unbilled approved work, cap write-downs and late time.

    Unbilled work: billable time entries and expenses approved (and not on any issued invoice:
    unbilled, or on a draft, blocked or pending invoice) whose month ended more than N days
    (`INSIGHTS_LEAKAGE_DAYS`, default 15) before the as-of date, by age since that month end
    (0–30, 31–60, 61–90, 90+ days) — hours for time (fixed-fee time is never billed and is left
    out), amounts per currency for expenses; and approved fixed-fee milestones not invoiced more
    than N days after their approval. Cap write-downs: `write_down` lines of invoices issued in
    the period, per currency. Late time: time entries dated in the period submitted after their
    month's cut-off (`BILLING_TIMESHEET_CUTOFF_DAYS` after month end), and the invoices drafted
    in the period that carry a `LATE_TIME` warning.
    """
    n = leakage_days()
    as_of = f.as_of
    scope = project_scope(f)
    # Grouped by month in the database (the age depends only on the month), bucketed here.
    cutoff = first_of_month(as_of - timedelta(days=n))
    time_buckets = {b: {"bucket": b, "hours": ZERO, "count": 0} for b in LEAKAGE_BUCKETS}
    for r in (
        TimeEntry.objects.filter(scope, _not_invoiced(), billable=True, date__lt=cutoff)
        .exclude(project__contract__billing_model="fixed_fee")
        .annotate(month=TruncMonth("date")).order_by().values("month").annotate(h=Sum("hours"), n=Count("pk"))
    ):
        bucket = _bucket_of_month(_as_date(r["month"]), as_of, n)
        if bucket:
            time_buckets[bucket]["hours"] += money(r["h"])
            time_buckets[bucket]["count"] += r["n"]
    time_buckets = list(time_buckets.values())
    exp: dict[str, dict[str, dict[str, Any]]] = {}
    for r in (
        Expense.objects.filter(scope, _not_invoiced(), billable=True, date__lt=cutoff)
        .annotate(month=TruncMonth("date")).order_by().values("month", "currency")
        .annotate(a=Sum("amount"), n=Count("pk"))
    ):
        bucket = _bucket_of_month(_as_date(r["month"]), as_of, n)
        if bucket:
            row = exp.setdefault(r["currency"], {b: {"bucket": b, "amount": ZERO, "count": 0}
                                                 for b in LEAKAGE_BUCKETS})
            row[bucket]["amount"] += money(r["a"])
            row[bucket]["count"] += r["n"]
    expenses = [{"currency": cur, "buckets": list(rows.values())} for cur, rows in sorted(exp.items())]
    ms_cutoff = as_of - timedelta(days=n)
    milestones = [
        {"currency": r["project__contract__currency"], "count": r["n"], "amount": money(r["amount"])}
        for r in Milestone.objects.filter(
            scope, _not_invoiced(), project__contract__billing_model="fixed_fee", approved_at__date__lt=ms_cutoff,
        ).order_by().values("project__contract__currency").annotate(n=Count("pk"), amount=Sum("amount"))
        .order_by("project__contract__currency")
    ]
    write_downs = [
        {"currency": r["invoice__currency"], "count": r["n"], "amount": money(r["amount"])}
        for r in InvoiceLine.objects.filter(
            invoice_scope(f, "invoice__"), kind=InvoiceLine.Kind.WRITE_DOWN, invoice__number__isnull=False,
            invoice__issue_date__gte=f.period_start, invoice__issue_date__lte=f.period_end,
        ).order_by().values("invoice__currency").annotate(n=Count("pk"), amount=Sum("amount"))
        .order_by("invoice__currency")
    ]
    return {
        "days_after_period_end": n,
        "as_of": as_of,
        "unbilled_time": {"hours": sum((b["hours"] for b in time_buckets), ZERO),
                          "count": sum(b["count"] for b in time_buckets), "buckets": time_buckets},
        "unbilled_expenses": expenses,
        "unbilled_milestones": milestones,
        "write_downs": write_downs,
        "late_time": late_time(f),
    }


def late_q(period_start: datetime.date, period_end: datetime.date) -> Q:
    """Time entries submitted at or after their month's cut-off (the run's LATE_TIME rule), month by month.

    The cut-off of a month is 00:00 UTC, `BILLING_TIMESHEET_CUTOFF_DAYS` days after its last day
    (`billing.models.work.timesheet_cutoff`). One date range per month, so no per-row date functions.
    """
    q = Q(pk__in=[])
    month = first_of_month(period_start)
    while month <= period_end:
        cutoff = timesheet_cutoff(month_of(month)[1])
        deadline = datetime.datetime.combine(cutoff, datetime.time.min, tzinfo=datetime.UTC)
        q |= Q(date__gte=month, date__lt=next_month(month), submitted_at__gte=deadline)
        month = next_month(month)
    return q


def late_time(f: KpiFilters) -> dict[str, Any]:
    entries = TimeEntry.objects.filter(
        project_scope(f), date__gte=f.period_start, date__lte=f.period_end, submitted_at__isnull=False
    )
    late = late_q(f.period_start, f.period_end)
    agg = entries.aggregate(
        submitted=Count("pk"), late=Count("pk", filter=late), late_hours=Sum("hours", filter=late),
    )
    warned = Invoice.objects.filter(
        invoice_scope(f), kind=Invoice.Kind.INVOICE, created_at__date__gte=f.period_start,
        created_at__date__lte=f.period_end, exceptions__code="LATE_TIME",
    ).values("pk").distinct().count()
    return {"entries_submitted": agg["submitted"], "entries_late": agg["late"],
            "hours_late": money(agg["late_hours"]), "late_pct": _pct(agg["late"], agg["submitted"]),
            "invoices_with_late_time": warned}


# --- 11. cash forecast --------------------------------------------------------------------------------


def _as_date(value: Any) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


def _monday(day: datetime.date) -> datetime.date:
    return day - timedelta(days=day.weekday())


def client_days_late(f: KpiFilters, as_of: datetime.date) -> dict[int, float]:
    """Average days between due date and payment, per client, over payments of the last 365 days to `as_of`."""
    rows = (
        Payment.objects.filter(
            invoice_scope(f, "invoice__"), invoice__isnull=False, invoice__kind=Invoice.Kind.INVOICE,
            date__lte=as_of, date__gt=as_of - timedelta(days=365),
        )
        .order_by().values("invoice__client_id")
        .annotate(late=Avg(days_between("date", "invoice__due_date")))
    )
    return {r["invoice__client_id"]: float(r["late"] or 0) for r in rows}


def cash_forecast(f: KpiFilters) -> dict[str, Any]:
    """13-week cash forecast of open AR, and its error against actual receipts in past weeks.

    Forecast at the as-of date (period end, or today): every open receivable (balance then, as
    in AR aging) is expected on its due date shifted by its client's average days late (payment
    date − due date over the client's payments of the last 365 days; 0 without history), in the
    Monday-based week of that date, for the 13 weeks from the as-of week. Receivables already
    past their expected date are shown apart as "overdue beyond the usual delay" (at risk).
    Error: for each of the last 8 full weeks, the forecast made at that week's Monday for that
    week (the balances open on the Monday, expected in that week) against the payments received
    in that week; error = forecast − actual, and the mean absolute percentage error. Per
    currency, and overall in the reporting currency.
    With billing (`with_billing`, ADR 0126): open AR spread over each client's own past delays,
    plus the invoices still to come — each still-billing contract's next invoices on its cadence,
    and for a contract not billing yet what the next run will bill (approved, unbilled time at the
    rate card's rate less the discount, expenses with the markup, approved milestones, the retainer
    fee) and its milestones due within the 13 weeks — paid as the client pays; by week, in the
    reporting currency. `backtest`: both forecasts replayed at each Monday of the history from
    data known then, WAPE per horizon (1, 4, 13 weeks) = Σ|forecast − actual receipts| ÷ Σ actual
    receipts.
    """
    from insights.services import forecast as fc

    as_of = f.as_of
    start = _monday(as_of)
    err_start = start - timedelta(weeks=FORECAST_ERROR_WEEKS)
    ledger = fc.load_ledger(scope=invoice_scope(f))
    delays = ledger.mean_delays(as_of + timedelta(days=1))  # = client_days_late(f, as_of), from the ledger
    # The invoices open at the error window's start or issued since: their payments and credits (from the ledger,
    # which holds every issued invoice in scope with its payments and credit notes: no query of its own).
    err_day = err_start + timedelta(days=1)
    chosen = [
        inv for inv in ledger.invoices
        if (inv.issue <= err_start and inv.balance_before(err_day) > 0) or err_start < inv.issue <= as_of
    ]
    invoices = [(inv.pk, inv.client_id, inv.currency, inv.due, inv.total) for inv in chosen]
    payments: dict[int, list[tuple[datetime.date, Decimal]]] = {
        inv.pk: [(d, a) for d, a in inv.payments if d <= as_of] for inv in chosen}
    credits: dict[int, list[tuple[datetime.date, Decimal]]] = {
        inv.pk: [(d, a) for d, a in inv.credits if d <= as_of] for inv in chosen}
    issue: dict[int, datetime.date] = {inv.pk: inv.issue for inv in chosen}

    def balance(pk: int, total: Decimal, day: datetime.date) -> Decimal:
        """Open balance at the end of `day`."""
        if issue[pk] > day:
            return ZERO
        return total - sum((a for d, a in payments[pk] if d <= day), ZERO) - sum(
            (a for d, a in credits[pk] if d <= day), ZERO)

    def expected(client_id: int, due: datetime.date) -> datetime.date:
        return due + timedelta(days=round(delays.get(client_id, 0.0)))

    currencies = sorted({row[2] for row in invoices})
    weeks = [start + timedelta(weeks=k) for k in range(FORECAST_WEEKS)]
    forecast = {c: [ZERO] * FORECAST_WEEKS for c in currencies}
    at_risk = {c: ZERO for c in currencies}
    for pk, client_id, cur, due, total in invoices:
        open_now = balance(pk, total, as_of)
        if open_now <= 0:
            continue
        when = expected(client_id, due)
        if when < as_of:
            at_risk[cur] += open_now
            continue
        k = (_monday(when) - start).days // 7
        if k < FORECAST_WEEKS:
            forecast[cur][k] += open_now

    past_weeks = [err_start + timedelta(weeks=k) for k in range(FORECAST_ERROR_WEEKS)]
    predicted = {c: [ZERO] * FORECAST_ERROR_WEEKS for c in currencies}
    actual = {c: [ZERO] * FORECAST_ERROR_WEEKS for c in currencies}
    for k, monday in enumerate(past_weeks):
        sunday = monday + timedelta(days=6)
        for pk, client_id, cur, due, total in invoices:
            open_then = balance(pk, total, monday - timedelta(days=1))
            if open_then > 0 and monday <= expected(client_id, due) <= sunday:
                predicted[cur][k] += open_then
            actual[cur][k] += sum((a for d, a in payments[pk] if monday <= d <= sunday), ZERO)

    rates = fx_rates(set(currencies) | {i.currency for i in ledger.invoices}, as_of)
    weeks_out = [
        {"week": w, "by_currency": {c: forecast[c][k] for c in currencies},
         "total": convert({c: forecast[c][k] for c in currencies}, rates)}
        for k, w in enumerate(weeks)
    ]
    errors = []
    for k, w in enumerate(past_weeks):
        p = convert({c: predicted[c][k] for c in currencies}, rates)
        a = convert({c: actual[c][k] for c in currencies}, rates)
        err = None if p is None or a is None else p - a
        errors.append({"week": w, "forecast": p, "actual": a, "error": err,
                       "abs_pct": _pct(abs(err), a) if err is not None and a else None})
    pcts = [e["abs_pct"] for e in errors if e["abs_pct"] is not None]
    with_billing, backtest = _forecast_with_billing(f, ledger, rates, as_of, start)
    return {
        "with_billing": with_billing,
        "backtest": backtest,
        "as_of": as_of,
        "reporting_currency": reporting_currency(),
        "weeks": weeks_out,
        "total": convert({c: sum(forecast[c], ZERO) for c in currencies}, rates),
        "at_risk": convert(at_risk, rates),
        "at_risk_by_currency": at_risk,
        "clients_with_history": len(delays),
        "error_weeks": errors,
        "mape_pct": round(sum(pcts) / len(pcts), 1) if pcts else None,
    }


def _forecast_with_billing(f: KpiFilters, ledger: Any, rates: dict[str, Decimal | None], as_of: datetime.date,
                          start: datetime.date) -> tuple[dict, dict]:
    """The forecast with the invoices still to come, by week, and the backtest of both forecasts (ADR 0126)."""
    from billing.models import Contract
    from insights.services import forecast as fc

    cutoff = as_of + timedelta(days=1)
    until = start + timedelta(weeks=FORECAST_WEEKS)
    contracts = Contract.objects.all()
    if f.entity:
        contracts = contracts.filter(entity__code=f.entity)
    if f.client:
        contracts = contracts.filter(client__code=f.client)
    if f.business_unit:
        contracts = contracts.filter(projects__business_unit=f.business_unit).distinct()
    unbilled = fc.unbilled_invoices(ledger, cutoff, contracts, until)
    cadence = fc.expected_invoices(ledger, cutoff, until, live=True)
    ar_flows = fc.open_ar_flows(ledger, cutoff)
    new_flows = fc.invoice_flows(ledger, cutoff, cadence + unbilled)
    missing = {e.currency for e in unbilled} - set(rates)
    if missing:
        rates = {**rates, **fx_rates(missing, as_of)}
    weeks = []
    for k in range(FORECAST_WEEKS):
        monday = start + timedelta(weeks=k)
        lo, hi = max(monday, cutoff), monday + timedelta(days=7)
        ar = convert({c: money(a) for c, a in fc.window(ar_flows, lo, hi).items()}, rates)
        new = convert({c: money(a) for c, a in fc.window(new_flows, lo, hi).items()}, rates)
        total = None if ar is None or new is None else ar + new
        weeks.append({"week": monday, "open_ar": ar, "to_be_invoiced": new, "total": total})
    backtest = fc.backtest(ledger, end=as_of, rates=rates)
    for h in backtest["horizons"].values():
        h.pop("weeks", None)  # the per-cut-off detail is for bench/forecast.py; the dashboard shows the WAPE
    return {
        "weeks": weeks,
        "total": sum((w["total"] or ZERO for w in weeks), ZERO),
        "to_be_invoiced": sum((w["to_be_invoiced"] or ZERO for w in weeks), ZERO),
        "expected_invoices": len(cadence) + len(unbilled),
        "from_unbilled_work": convert({c: money(sum((e.amount for e in unbilled if e.currency == c), ZERO))
                                       for c in {e.currency for e in unbilled}}, rates),
    }, backtest


# --- 12. finance rework and the business units' intervention ranking ---------------------------------

REWORK_REASONS = ("revalidated", "overridden", "rejected", "credited")
NO_BUSINESS_UNIT = "(none)"


def rework_flags(qs: QuerySet, as_of: datetime.date) -> QuerySet:
    """Invoices with one flag per kind of finance intervention, each known by `as_of`."""
    ct = _invoice_ct_id()
    logged = StateLog.objects.filter(content_type_id=ct, object_id=OuterRef("pk"), timestamp__date__lte=as_of)
    return qs.annotate(
        revalidated=Exists(logged.filter(transition="reopen_draft")),
        overridden=ExpressionWrapper(
            Q(Exists(logged.filter(transition="override"))) | Q(Exists(
                InvoiceException.objects.filter(invoice=OuterRef("pk"), state=InvoiceException.State.OVERRIDDEN)
            )),
            output_field=BooleanField(),
        ),
        rejected=Exists(logged.filter(transition="reject")),
        credited=Exists(
            Invoice.objects.filter(ISSUED, kind=Invoice.Kind.CREDIT_NOTE, credit_of=OuterRef("pk"),
                                   issue_date__lte=as_of).exclude(status=Invoice.Status.CANCELLED)
        ),
    )


REWORKED = Q(revalidated=True) | Q(overridden=True) | Q(rejected=True) | Q(credited=True)


def finance_rework(f: KpiFilters) -> dict[str, Any]:
    """Finance rework: share of the invoices issued in the period that finance had to touch again.

    Reworked = needed at least one of: a revalidation (`reopen_draft`: exception → draft to be
    re-priced), an override of a blocking exception (the `override` transition, or an exception
    left overridden), a rejection by an approver (`reject`), or a credit note (issued, not
    cancelled) — each recorded by the as-of date. The business units' intervention ranking: the
    same figures per business unit (the invoice's project's, or any of its lines' projects'; an
    invoice spanning two units counts in both; without a project: "(none)"), ordered by rework
    rate, then by the number of interventions (one per reason an invoice has).
    """
    as_of = f.as_of
    rows = list(rework_flags(issued_invoices(f), as_of).order_by().values_list("pk", "project__business_unit",
                                                                            *REWORK_REASONS))
    units: dict[int, set[str]] = defaultdict(set)
    for pk, unit, *_flags in rows:
        if unit:
            units[pk].add(unit)
    for pk, unit in InvoiceLine.objects.filter(
        invoice_id__in=[r[0] for r in rows], project__isnull=False
    ).exclude(project__business_unit="").order_by().values_list("invoice_id", "project__business_unit").distinct():
        units[pk].add(unit)

    def blank() -> dict[str, Any]:
        return {"issued": 0, "reworked": 0, "interventions": 0, **{r: 0 for r in REWORK_REASONS}}

    total = blank()
    by_unit: dict[str, dict[str, Any]] = defaultdict(blank)
    for pk, _unit, *flags in rows:
        targets = [total] + [by_unit[u] for u in (units.get(pk) or {NO_BUSINESS_UNIT})]
        for t in targets:
            t["issued"] += 1
            if any(flags):
                t["reworked"] += 1
            t["interventions"] += sum(bool(x) for x in flags)
            for reason, hit in zip(REWORK_REASONS, flags, strict=True):
                t[reason] += int(bool(hit))
    ranking = [{"business_unit": u, **v, "rework_pct": _pct(v["reworked"], v["issued"])} for u, v in by_unit.items()]
    ranking.sort(key=lambda r: (-(r["rework_pct"] or 0), -r["interventions"], r["business_unit"]))
    for rank, row in enumerate(ranking, start=1):
        row["rank"] = rank
    return {**total, "rework_pct": _pct(total["reworked"], total["issued"]), "by_business_unit": ranking}


# --- all of them ----------------------------------------------------------------------------------


#: Within one `kpis()` call the three revenue metrics share one read of the revenue figures.
_REVENUE_FIGURES: ContextVar[dict | None] = ContextVar("revenue_figures", default=None)


def _revenue_figures(f: KpiFilters) -> dict[str, Any]:
    from revenue.selectors import revenue_kpis

    shared = _REVENUE_FIGURES.get()
    if shared is not None and f in shared:
        return shared[f]
    figures = revenue_kpis(f.period_start, f.period_end, entity=f.entity, client=f.client,
                           business_unit=f.business_unit)
    if shared is not None:
        shared[f] = figures
    return figures


def revenue(f: KpiFilters) -> dict[str, Any]:
    """Revenue recognised in the period's closed (and draft) months (docs/rules/revenue.md).

    Σ period revenue of the revenue schedules, in each entity's currency (converted at each
    month end's rate), and overall in the reporting currency.
    """
    figures = _revenue_figures(f)
    amounts = {c: money(a) for c, a in figures["revenue"].items()}
    rates = fx_rates(amounts, f.as_of)
    return {"total": convert(amounts, rates), "reporting_currency": reporting_currency(),
            "by_currency": [{"currency": c, "revenue": a} for c, a in sorted(amounts.items())]}


def wip_days(f: KpiFilters) -> dict[str, Any]:
    """WIP days = WIP (unbilled recognised revenue) at the last closed month end ÷ revenue of the
    three months to it × 90 — how many days of revenue sit unbilled (like DSO for receivables)."""
    figures = _revenue_figures(f)
    wip = {c: money(a) for c, a in figures["wip"].items()}
    trailing = {c: money(a) for c, a in figures["revenue_90d"].items()}
    rates = fx_rates({*wip, *trailing}, f.as_of)
    wip_total, revenue_total = convert(wip, rates), convert(trailing, rates)
    days = _dso(wip_total, revenue_total)
    return {"as_of": figures["wip_as_of"], "wip_days": days, "wip": wip_total, "revenue_90d": revenue_total,
            "reporting_currency": reporting_currency()}


def realisation(f: KpiFilters) -> dict[str, Any]:
    """Realisation = billed ÷ standard value, in %: Σ invoices − credit notes (before tax) of the
    period's closed months ÷ Σ approved billable hours dated in the period × the rate card's rate
    for the role on the day (before contract overrides, discounts and caps). Per contract
    currency, and overall in the reporting currency."""
    figures = _revenue_figures(f)
    billed = {c: money(a) for c, a in figures["billed"].items()}
    standard = {c: money(a) for c, a in figures["standard_value"].items()}
    rates = fx_rates({*billed, *standard}, f.as_of)
    total_billed, total_standard = convert(billed, rates), convert(standard, rates)
    return {"realisation_pct": _pct(total_billed, total_standard), "billed": total_billed,
            "standard_value": total_standard, "reporting_currency": reporting_currency(),
            "by_currency": [{"currency": c, "billed": billed.get(c, ZERO), "standard_value": standard.get(c, ZERO),
                             "realisation_pct": _pct(billed.get(c), standard.get(c))}
                            for c in sorted({*billed, *standard})]}


METRICS: dict[str, Callable[[KpiFilters], dict[str, Any]]] = {
    "days_to_invoice": days_to_invoice,
    "billing_cycle_time": billing_cycle_time,
    "approval_latency": approval_latency,
    "first_pass_accuracy": first_pass_accuracy,
    "exception_rate": exception_rate,
    "disputes": disputes,
    "credit_notes": credit_notes,
    "dso": dso,
    "ar_aging": ar_aging,
    "leakage": leakage,
    "cash_forecast": cash_forecast,
    "revenue": revenue,
    "wip_days": wip_days,
    "realisation": realisation,
    "finance_rework": finance_rework,
}

TITLES = {
    "days_to_invoice": "Days to invoice",
    "billing_cycle_time": "Billing cycle time",
    "approval_latency": "Approval latency",
    "first_pass_accuracy": "First-pass invoice accuracy",
    "exception_rate": "Exception rate by code",
    "disputes": "Disputes: frequency, causes, aging",
    "credit_notes": "Credit-note volume",
    "dso": "DSO",
    "ar_aging": "AR aging",
    "leakage": "Leakage",
    "cash_forecast": "13-week cash forecast",
    "revenue": "Revenue recognised",
    "wip_days": "WIP days",
    "realisation": "Realisation (billed ÷ standard value)",
    "finance_rework": "Finance rework and business-unit intervention ranking",
}


def definition(metric: str) -> str:
    """The exact definition of a metric: its selector's docstring."""
    return inspect.getdoc(METRICS[metric]) or ""


DEFINITIONS = {key: definition(key) for key in METRICS}


def kpis(period_start: datetime.date, period_end: datetime.date, *, metrics: Iterable[str] | None = None,
         **filters: Any) -> dict[str, Any]:
    """Every KPI of docs/rules/kpis.md for the period and filters: one key per metric, plus `filters`."""
    f = KpiFilters(period_start=period_start, period_end=period_end, **filters)
    if f.period_end < f.period_start:
        raise ValueError("period_end is before period_start")
    wanted = list(metrics) if metrics else list(METRICS)
    out: dict[str, Any] = {"filters": f.as_dict()}
    token = _REVENUE_FIGURES.set({})
    try:
        for key in wanted:
            out[key] = METRICS[key](f)
    finally:
        _REVENUE_FIGURES.reset(token)
    return out


def jsonable(value: Any) -> Any:
    """Dates as ISO strings, Decimals as strings (exact), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


# --- the workflow monitor ------------------------------------------------------------------------------


PENDING_AGE_BUCKETS = (("<1d", 1), ("1-3d", 3), ("3-7d", 7), (">7d", None))


def workflow_monitor(*, now: datetime.datetime | None = None) -> dict[str, Any]:
    """What is stuck right now: approvals pending by age and step, SLA breaches, exceptions, outbox.

    Approvals: pending requests by subject type and open step, by age of the open step (<1 day,
    1–3, 3–7, >7 days) and how many are past their SLA (`sla_due_at`). Exceptions: open
    exceptions of invoices not issued yet (draft, exception, pending approval) and the open
    after-issue follow-ups (delivery, payments), by code and owner (unassigned included), with
    the oldest. Outbox: ERP
    messages by status, the oldest pending or failed, and the dead letters.
    """
    from approvals.models import ApprovalRequest
    from integrations.models import OutboxMessage

    now = now or timezone.now()
    aggs = {}
    lower = None
    for i, (_, days) in enumerate(PENDING_AGE_BUCKETS):
        q = Q()
        if lower is not None:
            q &= Q(step_opened_at__lte=now - timedelta(days=lower))
        if days is not None:
            q &= Q(step_opened_at__gt=now - timedelta(days=days))
        aggs[f"b{i}"] = Count("pk", filter=q)
        lower = days
    approvals = [
        {"subject_type": r["subject_type"], "step": r["current_step"], "pending": r["n"], "overdue": r["overdue"],
         "oldest": r["oldest"], "buckets": [r[f"b{i}"] for i in range(len(PENDING_AGE_BUCKETS))]}
        for r in ApprovalRequest.objects.filter(status="pending").order_by().values("subject_type", "current_step")
        .annotate(n=Count("pk"), overdue=Count("pk", filter=Q(sla_due_at__lt=now)), oldest=Min("step_opened_at"),
                  escalated=Count("pk", filter=Q(escalated=True)), **aggs)
        .order_by("subject_type", "current_step")
    ]
    exceptions = [
        {"code": r["code"], "severity": r["severity"], "owner_id": r["owner_id"],
         "owner": r["owner__username"] or "unassigned", "open": r["n"], "oldest": r["oldest"]}
        for r in InvoiceException.objects.filter(state="open")
        .filter(Q(invoice__status__in=UNISSUED_STATUSES) | Q(code__in=InvoiceException.FOLLOW_UP_CODES)).order_by()
        .values("code", "severity", "owner_id", "owner__username")
        .annotate(n=Count("pk"), oldest=Min("created_at")).order_by("-n", "code")
    ]
    outbox_rows = list(OutboxMessage.objects.order_by().values("status").annotate(
        n=Count("pk"), oldest=Min("created_at"), attempts=Max("attempts")).order_by("status"))
    outbox = {r["status"]: {"count": r["n"], "oldest": r["oldest"], "max_attempts": r["attempts"]}
              for r in outbox_rows}
    waiting = [r["oldest"] for s, r in outbox.items() if s in ("pending", "failed") and r["oldest"]]
    return {
        "now": now,
        "approvals": approvals,
        "approvals_pending": sum(r["pending"] for r in approvals),
        "approvals_overdue": sum(r["overdue"] for r in approvals),
        "age_buckets": [label for label, _ in PENDING_AGE_BUCKETS],
        "exceptions": exceptions,
        "exceptions_open": sum(r["open"] for r in exceptions),
        "outbox": outbox,
        "outbox_oldest_waiting": min(waiting) if waiting else None,
        "outbox_dead": (outbox.get("dead") or {}).get("count", 0),
    }
