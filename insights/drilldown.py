"""The records behind each dashboard number: one query per list, the same filters as the KPI.

`records(metric, filters, params)` returns the rows (at most `LIMIT` on screen; CSV streams all).
Each list applies exactly the selection of its selector in `insights.selectors`, plus the
figure's own narrowing (`month`, `outcome`, `code`, `category`, `bucket`, `currency`, ...).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import F, Q, QuerySet
from django.urls import reverse

from billing.models import Expense, Invoice, InvoiceException, InvoiceLine, Milestone, TimeEntry
from insights import selectors as s
from insights.selectors import KpiFilters
from kernel.periods import first_of_month, next_month

LIMIT = 500


@dataclass
class Row:
    cells: list[tuple[str, str | None]]  # (text, url)


@dataclass
class Result:
    headers: list[str]
    query: QuerySet
    render: Callable[[Any], list[tuple[str, str | None]]]
    note: str = ""

    def rows(self) -> list[Row]:
        return [Row(self.render(obj)) for obj in self.query[:LIMIT]]

    @property
    def truncated(self) -> bool:
        return self.query[LIMIT:LIMIT + 1].exists() if hasattr(self.query, "exists") else False

    def csv_rows(self) -> Iterator[list[str]]:
        for obj in self.query.iterator(chunk_size=2000):
            yield [text for text, _ in self.render(obj)]


def _inv_url(pk: int | None) -> str | None:
    return reverse("billing:invoice_detail", args=[pk]) if pk else None


def _d(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _month(q: QuerySet, params: Mapping[str, str], field: str) -> QuerySet:
    month = params.get("month", "")
    try:
        first = datetime.date.fromisoformat(f"{month}-01")
    except ValueError:
        return q
    return q.filter(**{f"{field}__gte": first, f"{field}__lt": next_month(first)})


def issued_invoices(f: KpiFilters, params: Mapping[str, str]) -> Result:
    from django.db.models import DateField, OuterRef, Subquery
    from django.db.models.functions import Cast, Coalesce

    last_milestone = Subquery(
        Milestone.objects.filter(invoice_line__invoice=OuterRef("pk"), approved_at__isnull=False)
        .order_by("-approved_at").values("approved_at")[:1]
    )
    q = s._first_pass_flags(s.issued_invoices(f)).annotate(
        ref_date=Coalesce(Cast(last_milestone, DateField()), F("period_end"), F("issue_date"))
    ).annotate(days=s.days_between("issue_date", "ref_date")).select_related("client", "entity")
    q = _month(q, params, "issue_date")
    outcome = params.get("outcome")
    if outcome == "clean":
        q = q.filter(s.FIRST_PASS_CLEAN)
    elif outcome in ("blocking", "rejected", "credited", "disputed"):
        field = {"blocking": "hit_blocking", "rejected": "was_rejected", "credited": "got_credit",
                 "disputed": "got_dispute"}[outcome]
        q = q.filter(**{field: True})
    q = q.order_by("-issue_date", "-id")

    def render(i: Invoice) -> list[tuple[str, str | None]]:
        reasons = [name for name, flag in (("blocking exception", i.hit_blocking), ("rejected", i.was_rejected),
                                           ("credit note", i.got_credit), ("dispute", i.got_dispute)) if flag]
        return [(i.display_number, _inv_url(i.pk)), (i.client.legal_name, None), (i.entity.code, None),
                (_d(i.ref_date), None), (_d(i.issue_date), None), (f"{i.days:.0f}" if i.days is not None else "", None),
                (f"{i.total} {i.currency}", None), (i.get_status_display(), None),
                ("clean" if not reasons else ", ".join(reasons), None)]

    return Result(["Invoice", "Client", "Entity", "Period end / milestone approved", "Issued", "Days to invoice",
                   "Total", "Status", "First pass"], q, render)


def exceptions(f: KpiFilters, params: Mapping[str, str]) -> Result:
    q = InvoiceException.objects.filter(
        s.invoice_scope(f, "invoice__"), invoice__kind=Invoice.Kind.INVOICE,
        invoice__created_at__date__gte=f.period_start, invoice__created_at__date__lte=f.period_end,
    ).select_related("invoice", "owner").order_by("-created_at", "-id")
    if params.get("code"):
        q = q.filter(code=params["code"])

    def render(e: InvoiceException) -> list[tuple[str, str | None]]:
        return [(e.invoice.display_number, _inv_url(e.invoice_id)), (e.code, None), (e.severity, None),
                (e.get_state_display(), None), (_d(e.created_at), None),
                (e.owner.get_username() if e.owner_id else "", None), (e.message[:200], None)]

    return Result(["Invoice", "Code", "Severity", "State", "Raised", "Owner", "Message"], q, render)


def disputes(f: KpiFilters, params: Mapping[str, str]) -> Result:
    from disputes.models import Dispute

    scope = s.invoice_scope(f, "invoice__")
    if params.get("live"):
        as_of = f.as_of
        q = Dispute.objects.filter(scope, opened_at__date__lte=as_of).filter(
            Q(status__in=["open", "investigating"]) | Q(resolved_at__date__gt=as_of))
        bounds = {"0-15": (0, 15), "16-30": (16, 30), "31-60": (31, 60), "61+": (61, None)}.get(params.get("age", ""))
        if bounds:
            q = q.filter(opened_at__date__lte=as_of - timedelta(days=bounds[0]))
            if bounds[1] is not None:
                q = q.filter(opened_at__date__gte=as_of - timedelta(days=bounds[1]))
    else:
        q = Dispute.objects.filter(scope, opened_at__date__gte=f.period_start, opened_at__date__lte=f.period_end)
    if params.get("category"):
        q = q.filter(category=params["category"])
    q = q.select_related("invoice", "owner").order_by("-opened_at", "-id")

    def render(d: Any) -> list[tuple[str, str | None]]:
        return [(d.invoice.display_number, _inv_url(d.invoice_id)), (d.get_category_display(), None),
                (f"{d.disputed_amount} {d.currency}", None), (d.get_status_display(), None), (_d(d.opened_at), None),
                (_d(d.resolved_at), None), (d.owner.get_username(), None), (_d(d.due_date), None)]

    return Result(["Invoice", "Cause", "Disputed", "Status", "Opened", "Closed", "Owner", "Due"], q, render)


def credit_notes(f: KpiFilters, params: Mapping[str, str]) -> Result:
    q = Invoice.objects.filter(s.ISSUED, s.invoice_scope(f), kind=Invoice.Kind.CREDIT_NOTE,
                               issue_date__gte=f.period_start, issue_date__lte=f.period_end)
    q = _month(q, params, "issue_date")
    if params.get("currency"):
        q = q.filter(currency=params["currency"])
    q = q.select_related("client", "credit_of").order_by("-issue_date", "-id")

    def render(c: Invoice) -> list[tuple[str, str | None]]:
        return [(c.display_number, _inv_url(c.pk)),
                (c.credit_of.display_number if c.credit_of_id else "", _inv_url(c.credit_of_id)),
                (c.client.legal_name, None), (_d(c.issue_date), None), (f"{c.total} {c.currency}", None),
                (c.get_status_display(), None)]

    return Result(["Credit note", "Credits", "Client", "Issued", "Total", "Status"], q, render)


def open_receivables(f: KpiFilters, params: Mapping[str, str]) -> Result:
    try:
        as_of = min(datetime.date.fromisoformat(params.get("as_of", "")), f.as_of)
    except ValueError:
        as_of = f.as_of
    q = s._open_as_of(f, as_of).select_related("client")
    bucket = s.aging_bucket_q(as_of).get(params.get("bucket", ""))
    if bucket is not None:
        q = q.filter(bucket)
    if params.get("currency"):
        q = q.filter(currency=params["currency"])
    q = q.order_by("due_date", "id")

    def render(i: Invoice) -> list[tuple[str, str | None]]:
        past_due = max((as_of - i.due_date).days, 0)
        return [(i.display_number, _inv_url(i.pk)), (i.client.legal_name, None), (_d(i.issue_date), None),
                (_d(i.due_date), None), (str(past_due), None), (f"{i.balance_as_of} {i.currency}", None),
                (i.get_status_display(), None)]

    return Result(["Invoice", "Client", "Issued", "Due", "Days past due", f"Balance at {as_of}", "Status"], q, render,
                  note=f"Open at {as_of}.")


def forecast(f: KpiFilters, params: Mapping[str, str]) -> Result:
    as_of = f.as_of
    delays = s.client_days_late(f, as_of)
    q = s._open_as_of(f, as_of).select_related("client").order_by("due_date", "id")
    week = params.get("week", "")
    start = s._monday(as_of)
    ids: list[int] | None = None
    if week:
        # The expected date depends on the client's delay (computed above): select in Python, bounded by open AR.
        ids = []
        for pk, client_id, due in q.values_list("pk", "client_id", "due_date"):
            expected = due + timedelta(days=round(delays.get(client_id, 0.0)))
            at_risk = expected < as_of
            in_week = not at_risk and s._monday(expected).isoformat() == week
            if (week == "at_risk" and at_risk) or in_week:
                ids.append(pk)
        q = q.filter(pk__in=ids)
    else:
        q = q.filter(due_date__lt=start + timedelta(weeks=s.FORECAST_WEEKS + 60))

    def render(i: Invoice) -> list[tuple[str, str | None]]:
        late = delays.get(i.client_id, 0.0)
        expected = i.due_date + timedelta(days=round(late))
        return [(i.display_number, _inv_url(i.pk)), (i.client.legal_name, None), (_d(i.due_date), None),
                (f"{late:.1f}", None), (_d(expected), None), (f"{i.balance_as_of} {i.currency}", None)]

    return Result(["Invoice", "Client", "Due", "Client's average days late", "Expected", "Open balance"], q, render,
                  note=f"Open at {as_of}.")


def decisions(f: KpiFilters, params: Mapping[str, str]) -> Result:
    from django.db.models import ExpressionWrapper, FloatField, Value

    hours = ExpressionWrapper(s.days_between("decided_at", "step_opened_at") * Value(24.0), output_field=FloatField())
    q = s._decisions(f).annotate(hours=hours, sla=s._sla_hours()).select_related("request", "approver")
    if params.get("approver", "").isdigit():
        q = q.filter(approver_id=int(params["approver"]))
    if params.get("subject_type"):
        q = q.filter(request__subject_type=params["subject_type"])
    if params.get("step", "").isdigit():
        q = q.filter(step_order=int(params["step"]))
    if params.get("sla") == "breach":
        q = q.filter(sla__isnull=False, hours__gt=F("sla"))
    q = q.order_by("-decided_at", "-id")

    def render(d: Any) -> list[tuple[str, str | None]]:
        req = d.request
        url = reverse("approvals:request_detail", args=[req.pk])
        return [(f"{req.get_subject_type_display()} {req.object_id}", url), (str(d.step_order), None),
                (d.approver.get_full_name() or d.approver.get_username(), None), (d.decision, None),
                (_d(d.step_opened_at), None), (_d(d.decided_at), None), (f"{d.hours:.1f}", None),
                (str(d.sla or ""), None)]

    return Result(["Subject", "Step", "Approver", "Decision", "Step opened", "Decided", "Hours", "SLA h"], q, render)


def leakage(f: KpiFilters, params: Mapping[str, str]) -> Result:
    kind = params.get("kind", "time")
    as_of, n = f.as_of, s.leakage_days()
    buckets = s.leakage_age_q(as_of, n, "date")
    if kind == "write_down":
        q = InvoiceLine.objects.filter(
            s.invoice_scope(f, "invoice__"), kind=InvoiceLine.Kind.WRITE_DOWN, invoice__number__isnull=False,
            invoice__issue_date__gte=f.period_start, invoice__issue_date__lte=f.period_end,
        ).select_related("invoice").order_by("-invoice__issue_date", "id")

        def render_wd(line: InvoiceLine) -> list[tuple[str, str | None]]:
            return [(line.invoice.display_number, _inv_url(line.invoice_id)), (_d(line.invoice.issue_date), None),
                    (f"{line.amount} {line.invoice.currency}", None), (line.description, None)]

        return Result(["Invoice", "Issued", "Write-down", "Reason"], q, render_wd)
    if kind == "milestone":
        q = Milestone.objects.filter(
            s.project_scope(f), s._not_invoiced(), project__contract__billing_model="fixed_fee",
            approved_at__date__lt=as_of - timedelta(days=n),
        ).select_related("project", "project__contract").order_by("approved_at", "id")

        def render_ms(m: Milestone) -> list[tuple[str, str | None]]:
            return [(m.project.code, None), (m.name, None), (_d(m.approved_at), None),
                    (f"{m.amount} {m.project.contract.currency}", None), (m.get_status_display(), None)]

        return Result(["Project", "Milestone", "Approved", "Amount", "Status"], q, render_ms)
    if kind == "late_time":
        q = (TimeEntry.objects.filter(s.project_scope(f), date__gte=f.period_start, date__lte=f.period_end,
                                      submitted_at__isnull=False)
             .filter(s.late_q(f.period_start, f.period_end)).select_related("person", "project")
             .order_by("date", "id"))

        def render_late(e: TimeEntry) -> list[tuple[str, str | None]]:
            return [(e.person.name, None), (e.project.code, None), (_d(e.date), None), (str(e.hours), None),
                    (_d(e.submitted_at), None), (e.get_status_display(), None)]

        return Result(["Person", "Project", "Date", "Hours", "Submitted", "Status"], q, render_late)
    model = Expense if kind == "expense" else TimeEntry
    q = model.objects.filter(s.project_scope(f), s._not_invoiced(), billable=True, date__lt=first_of_month(
        as_of - timedelta(days=n)))
    if model is TimeEntry:
        q = q.exclude(project__contract__billing_model="fixed_fee")
    if params.get("bucket") in buckets:
        q = q.filter(buckets[params["bucket"]])
    if kind == "expense" and params.get("currency"):
        q = q.filter(currency=params["currency"])
    q = q.select_related("person", "project", "invoice_line__invoice").order_by("date", "id")

    def render(e: Any) -> list[tuple[str, str | None]]:
        line = e.invoice_line
        where = f"draft {line.invoice.display_number}" if line else "not on any invoice"
        amount = f"{e.hours} h" if model is TimeEntry else f"{e.amount} {e.currency}"
        return [(e.person.name, None), (e.project.code, None), (_d(e.date), None), (amount, None),
                (_d(e.approved_at), None), (where, _inv_url(line.invoice_id) if line else None)]

    return Result(["Person", "Project", "Date", "Hours / amount", "Approved", "Invoice"], q, render)


def rework(f: KpiFilters, params: Mapping[str, str]) -> Result:
    """The reworked invoices (optionally one `reason`), with the interventions each needed."""
    q = s.rework_flags(s.issued_invoices(f), f.as_of).filter(s.REWORKED)
    reason = params.get("reason", "")
    if reason in s.REWORK_REASONS:
        q = q.filter(**{reason: True})
    q = q.select_related("client", "project").order_by("issue_date", "id")

    def render(i: Any) -> list[tuple[str, str | None]]:
        why = ", ".join(r for r in s.REWORK_REASONS if getattr(i, r))
        unit = i.project.business_unit if i.project_id else ""
        return [(i.display_number, _inv_url(i.pk)), (i.client.legal_name, None), (unit, None),
                (_d(i.issue_date), None), (f"{i.total} {i.currency}", None), (why, None)]

    return Result(["Invoice", "Client", "Business unit", "Issued", "Total", "Interventions"], q, render)


DRILLDOWNS: dict[str, Callable[[KpiFilters, Mapping[str, str]], Result]] = {
    "days_to_invoice": issued_invoices,
    "first_pass_accuracy": issued_invoices,
    "billing_cycle_time": issued_invoices,
    "exception_rate": exceptions,
    "disputes": disputes,
    "credit_notes": credit_notes,
    "ar_aging": open_receivables,
    "dso": open_receivables,
    "cash_forecast": forecast,
    "approval_latency": decisions,
    "leakage": leakage,
    "finance_rework": rework,
}


def records(metric: str, f: KpiFilters, params: Mapping[str, str]) -> Result:
    return DRILLDOWNS[metric](f, params)
