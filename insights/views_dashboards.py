"""Dashboards: finance leadership, finance operations, the workflow monitor; drill-down lists and CSV.

Thin views over `insights.selectors` (the numbers) and `insights.drilldown` (the records
behind a number). Each dashboard is built as sections of headline figures, SVG charts
(`insights.charts`) and tables; `?export=<table key>` returns that table as CSV from the very
same data, so an exported table always equals the one on screen. Finance analysts,
controllers and auditors (read only anyway) see them; everyone else gets 403.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET

from insights import charts, drilldown, selectors
from insights.charts import Point
from insights.params import parse_filters
from insights.selectors import KpiFilters
from insights.snapshots import LEADERSHIP_METRICS, OPERATIONS_METRICS, kpis_snapshot, max_age
from kernel.csv_export import csv_writer
from kernel.http import screen_url
from kernel.money import money
from kernel.roles import AUDITOR, FINANCE_ROLES, cached_user_roles

READ_ROLES = FINANCE_ROLES | {AUDITOR}


# --- view models -------------------------------------------------------------------------------------


@dataclass
class Cell:
    text: str
    url: str | None = None
    num: bool = False
    html: SafeString | str | None = None  # money, rendered; CSV uses `text`


@dataclass
class Table:
    key: str
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    export_url: str = ""


@dataclass
class Figure:
    label: str
    value: str
    url: str | None = None
    note: str = ""


@dataclass
class Section:
    metric: str
    title: str
    definition: str
    figures: list[Figure] = field(default_factory=list)
    charts: list[SafeString] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | Decimal) and digits == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}" if isinstance(value, float | Decimal) else f"{value:,}{unit}"


def _money_cell(amount: Any, currency: str, url: str | None = None) -> Cell:
    if amount is None:
        return Cell("—", url, num=True)
    return Cell(f"{amount} {currency}", url, num=True, html=money(amount, currency))


class Ctx:
    """The filters and URL builders of one request."""

    def __init__(self, request: HttpRequest, f: KpiFilters, view_name: str) -> None:
        self.request, self.f, self.view_name = request, f, view_name
        self.query = {k: v for k, v in {
            "period_start": f.period_start.isoformat(), "period_end": f.period_end.isoformat(),
            "entity": f.entity or "", "client": f.client or "", "business_unit": f.business_unit or "",
        }.items() if v}

    computed_at: datetime.datetime | None = None

    def kpis(self, metrics: Iterable[str]) -> dict[str, Any]:
        """The KPIs of this request's filters from their snapshot (at most a few minutes old; see the page)."""
        f = self.f
        data, computed_at = kpis_snapshot(f.period_start, f.period_end, metrics=metrics, entity=f.entity,
                                          client=f.client, business_unit=f.business_unit, today=f.today)
        self.computed_at = min(filter(None, (self.computed_at, computed_at)))
        return data

    def drill(self, metric: str, **extra: Any) -> str:
        params = {**self.query, "metric": metric, **{k: v for k, v in extra.items() if v not in (None, "")}}
        return f"{reverse('insights:drilldown')}?{urlencode(params)}"

    def export(self, key: str) -> str:
        return f"{reverse(self.view_name)}?{urlencode({**self.query, 'export': key})}"

    def invoices(self, **params: Any) -> str | None:
        base = {"entity": self.f.entity or "", "client": self.f.client or ""}
        return screen_url("billing:invoice_list", {k: v for k, v in {**base, **params}.items() if v})


def _table(ctx: Ctx, key: str, title: str, headers: list[str], rows: list[list[Cell]]) -> Table:
    return Table(key, title, headers, rows, ctx.export(key))


def _mlabel(month: str | None) -> str:
    """'2026-03' → 'Mar 26' (chart axis)."""
    try:
        return datetime.date.fromisoformat(f"{month}-01").strftime("%b %y")
    except (TypeError, ValueError):
        return str(month)


def _define(metric: str) -> str:
    return selectors.DEFINITIONS.get(metric, "")


# --- finance leadership --------------------------------------------------------------------------------


def leadership_sections(ctx: Ctx) -> list[Section]:
    data = ctx.kpis(LEADERSHIP_METRICS)
    rc = selectors.reporting_currency()
    sections = []

    fpa = data["first_pass_accuracy"]
    s = Section("first_pass_accuracy", selectors.TITLES["first_pass_accuracy"], _define("first_pass_accuracy"))
    s.figures = [
        Figure("Clean first time", _num(fpa["pct"], " %"), ctx.drill("first_pass_accuracy", outcome="clean"),
               f"{fpa['clean']} of {fpa['issued']} invoices issued"),
        Figure("Hit a blocking exception", str(fpa["blocking"]), ctx.drill("first_pass_accuracy", outcome="blocking")),
        Figure("Rejected by an approver", str(fpa["rejected"]), ctx.drill("first_pass_accuracy", outcome="rejected")),
        Figure("Credit note ≤ 60 days", str(fpa["credited"]), ctx.drill("first_pass_accuracy", outcome="credited")),
        Figure("Dispute ≤ 60 days", str(fpa["disputed"]), ctx.drill("first_pass_accuracy", outcome="disputed")),
    ]
    s.charts = [charts.line_chart("First-pass accuracy by month of issue (%)", [
        Point(_mlabel(r["month"]), r["pct"], ctx.drill("first_pass_accuracy", month=r["month"]),
              f"{r['clean']} of {r['issued']}") for r in fpa["by_month"]], unit=" %")]
    s.tables = [_table(ctx, "first_pass_by_month", "By month of issue", ["Month", "Issued", "Clean", "Clean %"], [
        [Cell(r["month"], ctx.drill("first_pass_accuracy", month=r["month"])), Cell(str(r["issued"]), num=True),
         Cell(str(r["clean"]), num=True), Cell(_num(r["pct"]), num=True)] for r in fpa["by_month"]])]
    sections.append(s)

    dti = data["days_to_invoice"]
    s = Section("days_to_invoice", selectors.TITLES["days_to_invoice"], _define("days_to_invoice"))
    s.figures = [Figure("Median", _num(dti["median"], " days"), ctx.drill("days_to_invoice"), f"{dti['n']} invoices"),
                 Figure("90th percentile", _num(dti["p90"], " days")), Figure("Mean", _num(dti["mean"], " days"))]
    s.charts = [charts.line_chart("Days to invoice, median by month of issue", [
        Point(_mlabel(r["month"]), r["median"], ctx.drill("days_to_invoice", month=r["month"]), f"p90 {r['p90']}")
        for r in dti["by_month"]], unit=" d")]
    s.tables = [_table(ctx, "days_to_invoice_by_month", "By month of issue",
                       ["Month", "Invoices", "Median days", "p90 days", "Mean days"], [
        [Cell(r["month"], ctx.drill("days_to_invoice", month=r["month"])), Cell(str(r["n"]), num=True),
         Cell(_num(r["median"]), num=True), Cell(_num(r["p90"]), num=True), Cell(_num(r["mean"]), num=True)]
        for r in dti["by_month"]])]
    sections.append(s)

    d = data["dso"]
    s = Section("dso", selectors.TITLES["dso"], _define("dso"))
    s.figures = [Figure(f"DSO at {d['as_of']:%d %b %Y}", _num(d["dso"], " days"), ctx.drill("ar_aging")),
                 Figure("AR balance", f"{_num(d['ar'], digits=0)} {rc}", ctx.drill("ar_aging")),
                 Figure("Credit sales, last 90 days", f"{_num(d['sales_90d'], digits=0)} {rc}")]
    s.charts = [charts.line_chart("DSO at each month end (days)", [
        Point(f"{r['date']:%b %y}", r["dso"], ctx.drill("ar_aging", as_of=r["date"].isoformat()))
        for r in d["trend"]], unit=" d")]
    s.tables = [
        _table(ctx, "dso_by_currency", "By currency", ["Currency", "AR balance", "Credit sales 90 days", "DSO"], [
            [Cell(r["currency"]), _money_cell(r["ar"], r["currency"], ctx.drill("ar_aging", currency=r["currency"])),
             _money_cell(r["sales_90d"], r["currency"]), Cell(_num(r["dso"]), num=True)] for r in d["by_currency"]]),
        _table(ctx, "dso_trend", f"Trend (in {rc})", ["Month end", "AR balance", "Credit sales 90 days", "DSO"], [
            [Cell(r["date"].isoformat(), ctx.drill("ar_aging", as_of=r["date"].isoformat())),
             _money_cell(r["ar"], rc), _money_cell(r["sales_90d"], rc), Cell(_num(r["dso"]), num=True)]
            for r in d["trend"]]),
    ]
    sections.append(s)

    lk = data["leakage"]
    s = Section("leakage", selectors.TITLES["leakage"], _define("leakage"))
    ut = lk["unbilled_time"]
    s.figures = [
        Figure(f"Unbilled approved hours > {lk['days_after_period_end']} days after period end",
               _num(ut["hours"], " h"), ctx.drill("leakage", kind="time"), f"{ut['count']} time entries"),
        Figure("Cap write-downs", "; ".join(f"{_num(w['amount'], digits=2)} {w['currency']}"
                                            for w in lk["write_downs"]) or "none",
               ctx.drill("leakage", kind="write_down")),
        Figure("Late time entries", str(lk["late_time"]["entries_late"]), ctx.drill("leakage", kind="late_time"),
               f"{_num(lk['late_time']['late_pct'], ' %')} of submitted; "
               f"{lk['late_time']['invoices_with_late_time']} invoices warned"),
    ]
    s.charts = [charts.column_chart("Unbilled approved hours by days since period end", [
        Point(b["bucket"], b["hours"], ctx.drill("leakage", kind="time", bucket=b["bucket"]))
        for b in ut["buckets"]], unit=" h")]
    rows = [[Cell("Time (hours)"), *[Cell(_num(b["hours"]), ctx.drill("leakage", kind="time", bucket=b["bucket"]),
                                          num=True) for b in ut["buckets"]]]]
    for e in lk["unbilled_expenses"]:
        rows.append([Cell(f"Expenses ({e['currency']})"), *[
            _money_cell(b["amount"], e["currency"], ctx.drill("leakage", kind="expense", bucket=b["bucket"],
                                                              currency=e["currency"])) for b in e["buckets"]]])
    s.tables = [_table(ctx, "leakage_unbilled", "Unbilled approved work by days since period end",
                       ["Work", *selectors.LEAKAGE_BUCKETS], rows)]
    ms = lk["unbilled_milestones"]
    s.tables.append(_table(ctx, "leakage_milestones", "Approved fixed-fee milestones not invoiced",
                           ["Currency", "Milestones", "Amount"], [
        [Cell(m["currency"]), Cell(str(m["count"]), ctx.drill("leakage", kind="milestone"), num=True),
         _money_cell(m["amount"], m["currency"])] for m in ms]))
    sections.append(s)

    cf = data["cash_forecast"]
    s = Section("cash_forecast", selectors.TITLES["cash_forecast"], _define("cash_forecast"))
    s.figures = [
        Figure("Expected in 13 weeks", f"{_num(cf['total'], digits=0)} {rc}", ctx.drill("cash_forecast")),
        Figure("Overdue beyond the usual delay", f"{_num(cf['at_risk'], digits=0)} {rc}",
               ctx.drill("cash_forecast", week="at_risk")),
        Figure("Forecast error (MAPE, last 8 weeks)", _num(cf["mape_pct"], " %")),
    ]
    wb, bt = cf.get("with_billing"), (cf.get("backtest") or {}).get("horizons", {})
    if wb:
        four = bt.get("4", {})
        s.figures += [
            Figure("Expected in 13 weeks with invoices to come", f"{_num(wb['total'], digits=0)} {rc}"),
            Figure("Backtest error at 4 weeks (WAPE)",
                   f"{_num(four.get('wape_with_billing_pct'), ' %')} (open AR only: "
                   f"{_num(four.get('wape_current_pct'), ' %')})"),
        ]
    s.charts = [
        charts.column_chart(f"Expected receipts by week ({rc})", [
            Point(f"{w['week']:%d %b}", w["total"], ctx.drill("cash_forecast", week=w["week"].isoformat()))
            for w in cf["weeks"]]),
        charts.line_chart(f"Past weeks ({rc}): forecast (dots) against actual receipts (dashed)", [
            Point(f"{e['week']:%d %b}", e["forecast"], note=f"actual {e['actual']}") for e in cf["error_weeks"]],
            compare=[e["actual"] for e in cf["error_weeks"]]),
    ]
    currencies = sorted({c for w in cf["weeks"] for c in w["by_currency"]})
    s.tables = [
        _table(ctx, "cash_forecast_weeks", "Expected receipts by week",
               ["Week of", *currencies, f"Total ({rc})"], [
            [Cell(w["week"].isoformat(), ctx.drill("cash_forecast", week=w["week"].isoformat())),
             *[_money_cell(w["by_currency"][c], c) for c in currencies], _money_cell(w["total"], rc)]
            for w in cf["weeks"]]),
        _table(ctx, "cash_forecast_error", f"Forecast error, past weeks ({rc})",
               ["Week of", "Forecast", "Actual receipts", "Error", "|Error| %"], [
            [Cell(e["week"].isoformat()), _money_cell(e["forecast"], rc), _money_cell(e["actual"], rc),
             _money_cell(e["error"], rc), Cell(_num(e["abs_pct"]), num=True)] for e in cf["error_weeks"]]),
    ]
    if wb:
        s.tables += [
            _table(ctx, "cash_forecast_with_billing", f"Expected receipts with invoices to come ({rc})",
                   ["Week of", "Open receivables", "Invoices to come", "Total"], [
                [Cell(w["week"].isoformat()), _money_cell(w["open_ar"], rc), _money_cell(w["to_be_invoiced"], rc),
                 _money_cell(w["total"], rc)] for w in wb["weeks"]]),
            _table(ctx, "cash_forecast_backtest", "Measured error: backtest over the history (WAPE)",
                   ["Horizon", "Cut-offs", "Open AR only (before)", "With invoices to come (after)"], [
                [Cell(f"{h} week{'s' if h != '1' else ''}"), Cell(str(v["cutoffs"]), num=True),
                 Cell(_num(v["wape_current_pct"], " %"), num=True),
                 Cell(_num(v["wape_with_billing_pct"], " %"), num=True)] for h, v in bt.items()]),
        ]
    sections.append(s)

    sections.append(_dispute_causes(ctx, data["disputes"]))
    return sections


def _dispute_causes(ctx: Ctx, dp: dict) -> Section:
    s = Section("disputes", selectors.TITLES["disputes"], _define("disputes"))
    list_url = screen_url("disputes:dispute_list")
    s.figures = [
        Figure("Disputes opened", str(dp["opened"]), ctx.drill("disputes"),
               f"{_num(dp['frequency_pct'], ' %')} of {dp['invoices_issued']} invoices issued"),
        Figure("Live now", str(dp["live"]), ctx.drill("disputes", live="1"), f"{dp['live_overdue']} past due date"),
        Figure("Resolution, median", _num(dp["resolution_days"]["median"], " days")),
    ]
    if list_url:
        s.figures.append(Figure("Dispute list", "open", list_url))
    from insights.models import RiskModel

    model = RiskModel.objects.filter(is_active=True).values("roc_auc", "baseline_auc", "samples").first()
    if model is not None:
        s.figures.append(Figure(
            "Dispute-risk model, ROC AUC (held out)", _num(model["roc_auc"], digits=3) if model["roc_auc"] else "—",
            screen_url("insights:model"),
            f"baseline {_num(model['baseline_auc'], digits=3)}; trained on {model['samples']:,} invoices"))
    s.charts = [charts.bar_chart("Disputes opened by cause", [
        Point(c["label"], c["count"], ctx.drill("disputes", category=c["category"])) for c in dp["causes"]])]
    s.tables = [
        _table(ctx, "dispute_causes", "Causes", ["Cause", "Disputes", "Disputed amount"], [
            [Cell(c["label"], ctx.drill("disputes", category=c["category"])), Cell(str(c["count"]), num=True),
             Cell("; ".join(f"{a['amount']} {a['currency']}" for a in c["amounts"]), num=True)]
            for c in dp["causes"]]),
        _table(ctx, "dispute_aging", "Live disputes by age (days since opened)", ["Age", "Disputes"], [
            [Cell(a["bucket"], ctx.drill("disputes", live="1", age=a["bucket"])), Cell(str(a["count"]), num=True)]
            for a in dp["aging"]]),
    ]
    return s


# --- finance operations --------------------------------------------------------------------------------


def operations_sections(ctx: Ctx) -> list[Section]:
    data = ctx.kpis(OPERATIONS_METRICS)
    sections = []
    ct = data["billing_cycle_time"]
    s = Section("billing_cycle_time", selectors.TITLES["billing_cycle_time"], _define("billing_cycle_time"))
    s.figures = [Figure("Period end → sent, median", _num(ct["median"], " days"), ctx.drill("billing_cycle_time"),
                        f"{ct['n']} invoices sent"), Figure("90th percentile", _num(ct["p90"], " days"))]
    s.charts = [charts.bar_chart("Median days per stage", [
        Point(st["label"], st["median"], ctx.drill("billing_cycle_time")) for st in ct["stages"]], unit=" d")]
    s.tables = [_table(ctx, "cycle_stages", "Stages", ["Stage", "Invoices", "Median days", "p90 days", "Mean days"], [
        [Cell(st["label"]), Cell(str(st["n"]), num=True), Cell(_num(st["median"]), num=True),
         Cell(_num(st["p90"]), num=True), Cell(_num(st["mean"]), num=True)] for st in ct["stages"]])]
    sections.append(s)

    al = data["approval_latency"]
    s = Section("approval_latency", selectors.TITLES["approval_latency"], _define("approval_latency"))
    s.figures = [Figure("Median", _num(al["median"], " h"), ctx.drill("approval_latency"), f"{al['n']} steps decided"),
                 Figure("90th percentile", _num(al["p90"], " h")),
                 Figure("Decided after their SLA", str(al["sla_breaches"]), ctx.drill("approval_latency", sla="breach"),
                        f"of {al['decided']}"),
                 Figure("Route overrides (four eyes)", str(al["route_overrides_confirmed"]), None,
                        f"confirmed; {al['route_overrides_requested']} requested")]
    s.charts = [charts.bar_chart("Median hours by approver (slowest first)", [
        Point(a["approver"], a["median"], ctx.drill("approval_latency", approver=a["approver_id"]))
        for a in al["by_approver"][:15]], unit=" h")]
    s.tables = [
        _table(ctx, "latency_by_step", "By subject and step", ["Subject", "Step", "Decided", "Median h", "p90 h"], [
            [Cell(r["subject_type"]), Cell(str(r["step"]), ctx.drill("approval_latency", subject_type=r["subject_type"],
                                                                      step=r["step"]), num=True),
             Cell(str(r["n"]), num=True), Cell(_num(r["median"]), num=True), Cell(_num(r["p90"]), num=True)]
            for r in al["by_step"]]),
        _table(ctx, "latency_by_approver", "By approver", ["Approver", "Decided", "Median h", "p90 h"], [
            [Cell(r["approver"], ctx.drill("approval_latency", approver=r["approver_id"])),
             Cell(str(r["n"]), num=True), Cell(_num(r["median"]), num=True), Cell(_num(r["p90"]), num=True)]
            for r in al["by_approver"]]),
    ]
    sections.append(s)

    ex = data["exception_rate"]
    s = Section("exception_rate", selectors.TITLES["exception_rate"], _define("exception_rate"))
    s.figures = [Figure("Invoices drafted", str(ex["drafted"]), ctx.drill("exception_rate"))]
    queue = screen_url("billing:exception_queue")
    if queue:
        s.figures.append(Figure("Exception queue", "open", queue))
    s.charts = [charts.bar_chart("Share of drafted invoices raising each code (%)", [
        Point(r["code"], r["rate_pct"], ctx.drill("exception_rate", code=r["code"])) for r in ex["by_code"]],
        unit=" %")]
    headers = ["Code", "Severity", "Invoices", "Rate %", "Raised", "Open"]
    s.tables = [_table(ctx, "exception_codes", "By code", headers, [
        [Cell(r["code"], ctx.drill("exception_rate", code=r["code"])), Cell(r["severity"]),
         Cell(str(r["invoices"]), num=True), Cell(_num(r["rate_pct"]), num=True), Cell(str(r["raised"]), num=True),
         Cell(str(r["open"]), screen_url("billing:exception_queue", {"code": r["code"]}) if r["open"] else None,
              num=True)]
        for r in ex["by_code"]])]
    sections.append(s)

    cn = data["credit_notes"]
    s = Section("credit_notes", selectors.TITLES["credit_notes"], _define("credit_notes"))
    s.figures = [Figure("Credit notes issued", str(cn["count"]), ctx.drill("credit_notes"))]
    s.charts = [charts.column_chart("Credit notes by month of issue", [
        Point(_mlabel(r["month"]), r["count"], ctx.drill("credit_notes", month=r["month"])) for r in cn["by_month"]])]
    s.tables = [_table(ctx, "credit_notes", "By currency", ["Currency", "Credit notes", "Amount", "Invoiced",
                                                            "Share %"], [
        [Cell(r["currency"]), Cell(str(r["count"]), ctx.drill("credit_notes", currency=r["currency"]), num=True),
         _money_cell(r["amount"], r["currency"]), _money_cell(r["invoiced"], r["currency"]),
         Cell(_num(r["share_pct"]), num=True)] for r in cn["by_currency"]])]
    sections.append(s)

    ag = data["ar_aging"]
    rc = ag["reporting_currency"]
    s = Section("ar_aging", selectors.TITLES["ar_aging"], _define("ar_aging"))
    aging_url = screen_url("disputes:aging")
    s.figures = [Figure(f"Open AR at {ag['as_of']:%d %b %Y}",
                        f"{_num(sum((t['amount'] or 0) for t in ag['reporting_totals']), digits=0)} {rc}",
                        ctx.drill("ar_aging"))]
    if aging_url:
        s.figures.append(Figure("Collections aging", "open", aging_url))
    s.charts = [charts.column_chart(f"Open AR by days past due ({rc})", [
        Point(t["bucket"], t["amount"], ctx.drill("ar_aging", bucket=t["bucket"])) for t in ag["reporting_totals"]])]
    s.tables = [_table(ctx, "ar_aging", "By currency", ["Currency", *selectors.AGING_BUCKETS, "Total"], [
        [Cell(r["currency"]), *[_money_cell(b["amount"], r["currency"], ctx.drill(
            "ar_aging", bucket=b["bucket"], currency=r["currency"])) for b in r["buckets"]],
         _money_cell(r["total"], r["currency"], ctx.drill("ar_aging", currency=r["currency"]))]
        for r in ag["by_currency"]])]
    sections.append(s)
    sections.append(_dispute_causes(ctx, data["disputes"]))
    return sections


# --- workflow monitor ------------------------------------------------------------------------------------


def workflow_sections(ctx: Ctx) -> list[Section]:
    wm = selectors.workflow_monitor()
    doc = selectors.workflow_monitor.__doc__ or ""
    s1 = Section("approvals", "Approvals pending", doc)
    s1.figures = [Figure("Pending", str(wm["approvals_pending"]), screen_url("approvals:mine")),
                  Figure("Past their SLA", str(wm["approvals_overdue"]))]
    s1.charts = [charts.bar_chart("Pending approvals by subject and step", [
        Point(f"{r['subject_type']} · step {r['step']}", r["pending"]) for r in wm["approvals"]])]
    s1.tables = [_table(ctx, "approvals_pending", "By subject, step and age of the open step",
                        ["Subject", "Step", "Pending", *wm["age_buckets"], "Past SLA", "Oldest since"], [
        [Cell(r["subject_type"]), Cell(str(r["step"]), num=True), Cell(str(r["pending"]), num=True),
         *[Cell(str(n), num=True) for n in r["buckets"]], Cell(str(r["overdue"]), num=True),
         Cell(f"{r['oldest']:%Y-%m-%d %H:%M}" if r["oldest"] else "—")] for r in wm["approvals"]])]
    s2 = Section("exceptions", "Exception backlog", doc)
    queue = screen_url("billing:exception_queue")
    s2.figures = [Figure("Open exceptions", str(wm["exceptions_open"]), queue)]
    by_code: dict[str, int] = {}
    for r in wm["exceptions"]:
        by_code[r["code"]] = by_code.get(r["code"], 0) + r["open"]
    s2.charts = [charts.bar_chart("Open exceptions by code", [
        Point(code, n, screen_url("billing:exception_queue", {"code": code})) for code, n in
        sorted(by_code.items(), key=lambda kv: -kv[1])])]
    s2.tables = [_table(ctx, "exception_backlog", "By code and owner", ["Code", "Severity", "Owner", "Open",
                                                                         "Oldest since"], [
        [Cell(r["code"], screen_url("billing:exception_queue", {"code": r["code"]})), Cell(r["severity"]),
         Cell(r["owner"]), Cell(str(r["open"]), num=True), Cell(f"{r['oldest']:%Y-%m-%d}" if r["oldest"] else "—")]
        for r in wm["exceptions"]])]
    s3 = Section("outbox", "ERP outbox health", doc)
    monitor = screen_url("integrations:monitor")
    oldest = wm["outbox_oldest_waiting"]
    s3.figures = [Figure("Dead letters", str(wm["outbox_dead"]), monitor),
                  Figure("Oldest waiting since", f"{oldest:%Y-%m-%d %H:%M}" if oldest else "none", monitor)]
    s3.tables = [_table(ctx, "outbox", "Messages by status", ["Status", "Messages", "Oldest", "Most attempts"], [
        [Cell(status, monitor), Cell(str(r["count"]), num=True),
         Cell(f"{r['oldest']:%Y-%m-%d %H:%M}" if r["oldest"] else "—"), Cell(str(r["max_attempts"]), num=True)]
        for status, r in wm["outbox"].items()])]
    return [s1, s2, s3]


# --- views ---------------------------------------------------------------------------------------------------


DASHBOARDS: dict[str, tuple[str, str, Callable[[Ctx], list[Section]]]] = {
    "insights:dashboard": ("Finance leadership", "Accuracy, days to invoice, DSO, leakage, cash and disputes.",
                           leadership_sections),
    "insights:operations": ("Finance operations", "Cycle time, approval latency, exceptions, credit notes, AR.",
                            operations_sections),
    "insights:workflow_monitor": ("Workflow monitor", "What is stuck right now: approvals, exceptions, the ERP "
                                  "outbox.", workflow_sections),
}


def _allowed(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser or cached_user_roles(request.user) & READ_ROLES)


def _forbidden(request: HttpRequest) -> HttpResponse:
    return render(request, "insights/dashboards/forbidden.html", status=403)


def _csv(filename: str, headers: list[str], rows: Iterable[list[str]]) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv_writer(Echo())

    def stream():
        yield "\ufeff"  # Excel reads UTF-8 with a BOM
        yield writer.writerow(headers)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def _dashboard(request: HttpRequest, view_name: str) -> HttpResponse:
    if not _allowed(request):
        return _forbidden(request)
    title, intro, build = DASHBOARDS[view_name]
    f = parse_filters(request.GET)
    ctx = Ctx(request, f, view_name)
    sections = build(ctx)
    export = request.GET.get("export")
    if export:
        for section in sections:
            for table in section.tables:
                if table.key == export:
                    return _csv(f"{table.key}-{f.period_start}-{f.period_end}", table.headers,
                                ([c.text for c in row] for row in table.rows))
        return HttpResponse(f"No table {export!r} on this dashboard.", status=404, content_type="text/plain")
    return render(request, "insights/dashboards/dashboard.html", {
        "title": title, "intro": intro, "sections": sections, "filters": f, "view_name": view_name,
        "dashboards": [(name, label) for name, (label, _, _) in DASHBOARDS.items()],
        "show_period": view_name != "insights:workflow_monitor",
        "computed_at": ctx.computed_at, "snapshot_max_age_min": int(max_age().total_seconds() // 60),
    })


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, "insights:dashboard")


@require_GET
@login_required
def operations(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, "insights:operations")


@require_GET
@login_required
def workflow_monitor(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, "insights:workflow_monitor")


@require_GET
@login_required
def drilldown_view(request: HttpRequest) -> HttpResponse:
    """The records behind a number: `?metric=…` plus the dashboard's filters and the figure's own."""
    if not _allowed(request):
        return _forbidden(request)
    f = parse_filters(request.GET)
    metric = request.GET.get("metric", "")
    if metric not in drilldown.DRILLDOWNS:
        ctx = Ctx(request, f, "insights:dashboard")
        return render(request, "insights/dashboards/drilldown.html", {
            "unknown": metric, "filters": f, "view_name": "insights:drilldown",
            "metrics": [(ctx.drill(m), selectors.TITLES[m]) for m in drilldown.DRILLDOWNS],
            "dashboards": [(name, label) for name, (label, _, _) in DASHBOARDS.items()],
        }, status=404 if metric else 200)
    result = drilldown.records(metric, f, request.GET)
    if request.GET.get("format") == "csv":
        return _csv(f"{metric}-{f.period_start}-{f.period_end}", result.headers, result.csv_rows())
    return render(request, "insights/dashboards/drilldown.html", {
        "result": result, "metric": metric, "title": selectors.TITLES.get(metric, metric),
        "definition": selectors.DEFINITIONS.get(metric, ""), "filters": f,
        "csv_url": f"{request.path}?{urlencode({**request.GET.dict(), 'format': 'csv'})}",
        "dashboards": [(name, label) for name, (label, _, _) in DASHBOARDS.items()],
    })


@require_GET
@login_required
def rework_ranking(request: HttpRequest) -> HttpResponse:
    """Finance rework by business unit, worst first; each figure drills down to its invoices."""
    if not _allowed(request):
        return _forbidden(request)
    f = parse_filters(request.GET)
    ctx = Ctx(request, f, "insights:rework_ranking")
    data = selectors.finance_rework(f)

    def drill(unit: str | None, reason: str = "") -> str:
        query = {**ctx.query, "metric": "finance_rework", "business_unit": unit or "", "reason": reason}
        return f"{reverse('insights:drilldown')}?{urlencode({k: v for k, v in query.items() if v})}"

    rows = []
    for r in data["by_business_unit"]:
        unit = None if r["business_unit"] == selectors.NO_BUSINESS_UNIT else r["business_unit"]
        rows.append({**r, "url": drill(unit) if unit else None,
                     "reasons": [(r[k], drill(unit, k) if unit else None) for k in selectors.REWORK_REASONS]})
    return render(request, "insights/dashboards/rework.html", {
        "data": data, "rows": rows, "filters": f, "reasons": selectors.REWORK_REASONS,
        "view_name": "insights:rework_ranking",
        "definition": selectors.DEFINITIONS["finance_rework"], "all_url": drill(f.business_unit),
        "dashboards": [(name, label) for name, (label, _, _) in DASHBOARDS.items()],
    })
