"""Finance screens of revenue recognition: revenue by month, WIP and deferred, the close, the reconciliation,
the items behind a month's figure, and estimates at completion. Thin views over `revenue.selectors` and the
services; the services check authority again."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from billing.models import Contract, Expense, Milestone, TimeEntry
from kernel.errors import ApplicationError
from kernel.roles import AUDITOR, FINANCE_ANALYST, FINANCE_CONTROLLER, PROJECT_MANAGER, cached_user_roles
from revenue import selectors
from revenue.models import Estimate, RevenuePeriod, RevenueSchedule
from revenue.recognition import month_start
from revenue.services.close import revenue_close
from revenue.services.estimates import estimate_propose

READ_ROLES = frozenset({FINANCE_ANALYST, FINANCE_CONTROLLER, AUDITOR})
CLOSE_ROLES = frozenset({FINANCE_ANALYST, FINANCE_CONTROLLER})
GROUPS = [("contract", "Contract"), ("client", "Client"), ("entity", "Entity"), ("business_unit", "Business unit")]
GROUP_NOUNS = {"contract": "contracts", "client": "clients", "entity": "entities", "business_unit": "business units"}


def _require(request: HttpRequest, allowed: frozenset[str]) -> None:
    if not (request.user.is_superuser or cached_user_roles(request.user) & allowed):
        raise PermissionDenied


def _period_param(request: HttpRequest) -> date | None:
    value = request.GET.get("period", "")
    if not value:
        latest = selectors.latest_period()
        return latest.start if latest else None
    try:
        return month_start(value)[0]
    except (ValueError, TypeError):
        return None


@login_required
@require_GET
def revenue_report(request: HttpRequest) -> HttpResponse:
    _require(request, READ_ROLES)
    group = request.GET.get("group", "contract")
    if group not in dict(GROUPS):
        group = "contract"
    report = selectors.revenue_by_month(group=group)
    # One page of rows (a contract per row over twelve months): the whole table ran to ~250 KB on the demo.
    per_page = getattr(settings, "REVENUE_REPORT_ROWS_PER_PAGE", 25)
    page = Paginator(report["rows"], per_page).get_page(request.GET.get("page"))
    return render(
        request,
        "revenue/report.html",
        {
            "report": report,
            "page": page,
            "noun": GROUP_NOUNS[group],
            "groups": GROUPS,
            "group": group,
            "items_url": reverse("revenue:items"),
        },
    )


@login_required
@require_GET
def balances(request: HttpRequest) -> HttpResponse:
    _require(request, READ_ROLES)
    start = _period_param(request)
    period = RevenuePeriod.objects.filter(start=start).first() if start else None
    rows = selectors.wip_and_deferred(period)
    buckets: dict[tuple[str, str], dict[str, Decimal]] = {}
    for row in rows:
        key = (row["side"], row["schedule"].currency)
        buckets.setdefault(key, {}).setdefault(row["bucket"], Decimal(0))
        buckets[key][row["bucket"]] += row["amount"]
    return render(
        request,
        "revenue/balances.html",
        {"period": period, "rows": rows, "buckets": buckets, "periods": RevenuePeriod.objects.all()[:24]},
    )


@login_required
@require_GET
def reconciliation_page(request: HttpRequest) -> HttpResponse:
    _require(request, READ_ROLES)
    start = _period_param(request)
    report = selectors.reconciliation(start) if start else None
    return render(
        request, "revenue/reconciliation.html", {"report": report, "periods": RevenuePeriod.objects.all()[:24]}
    )


@login_required
@require_GET
def items(request: HttpRequest) -> HttpResponse:
    """Drill-down: a contract's schedule for a month and the approved items dated in it."""
    _require(request, READ_ROLES)
    start = _period_param(request)
    code = request.GET.get("contract", "")
    schedule = (
        RevenueSchedule.objects.filter(contract__code=code, period__start=start)
        .select_related("contract", "period")
        .first()
        if start and code
        else None
    )
    context: dict = {"schedule": schedule, "code": code}
    if schedule is not None:
        bounds = (schedule.period.start, schedule.period.end)
        done = (TimeEntry.Status.APPROVED, TimeEntry.Status.INVOICED)
        context["time"] = (
            TimeEntry.objects.filter(project__contract=schedule.contract, date__range=bounds, status__in=done)
            .select_related("person", "project")
            .order_by("date", "id")[:500]
        )
        context["expenses"] = (
            Expense.objects.filter(project__contract=schedule.contract, date__range=bounds, status__in=done)
            .select_related("project")
            .order_by("date", "id")[:500]
        )
        context["milestones"] = Milestone.objects.filter(project__contract=schedule.contract).order_by("due_date")
        context["history"] = (
            RevenueSchedule.objects.filter(contract=schedule.contract)
            .select_related("period")
            .order_by("period__start")
        )
    return render(request, "revenue/items.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def close_screen(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        _require(request, CLOSE_ROLES)
        period = request.POST.get("period", "")
        action = request.POST.get("action", "draft")
        try:
            record = revenue_close(
                period=period,
                user=request.user,
                lock=action == "close",
                reason=request.POST.get("reason", ""),
                override_reason=request.POST.get("override_reason", ""),
            )
        except (ApplicationError, ValueError, TypeError) as exc:
            messages.error(request, getattr(exc, "message", None) or f"Not a month: {period!r} (use YYYY-MM).")
            return redirect(f"{reverse('revenue:close')}?period={period}")
        verb = "closed and locked" if record.status == RevenuePeriod.Status.CLOSED else "computed as a draft"
        messages.success(request, f"Revenue period {record.label} {verb} in {record.duration_ms} ms.")
        return redirect(f"{reverse('revenue:close')}?period={record.label}")
    _require(request, READ_ROLES)
    start = _period_param(request) or timezone.now().date().replace(day=1)
    start, end = month_start(start)
    record = RevenuePeriod.objects.filter(start=start).first()
    checklist = selectors.close_checklist(start, end)
    contracts = Contract.objects.exclude(status=Contract.Status.DRAFT).count()
    scheduled = record.schedules.count() if record else 0
    journals = (
        record.journals.select_related("entity").prefetch_related("lines").order_by("entity__code") if record else []
    )
    return render(
        request,
        "revenue/close.html",
        {
            "start": start,
            "record": record,
            "checklist": checklist,
            "checklist_clear": all(i.clear for i in checklist),
            "progress": {"contracts": contracts, "scheduled": scheduled},
            "journals": journals,
            "periods": RevenuePeriod.objects.all()[:24],
            "can_close": bool(cached_user_roles(request.user) & CLOSE_ROLES) or request.user.is_superuser,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def estimates(request: HttpRequest) -> HttpResponse:
    allowed = READ_ROLES | {PROJECT_MANAGER}
    _require(request, allowed)
    if request.method == "POST":
        _require(request, CLOSE_ROLES | {PROJECT_MANAGER})
        try:
            contract = Contract.objects.get(pk=int(request.POST.get("contract", "0")))
            hours = Decimal(request.POST.get("hours", ""))
            as_of = date.fromisoformat(request.POST.get("as_of", ""))
        except (Contract.DoesNotExist, ValueError, InvalidOperation):
            messages.error(request, "Choose a contract, hours and a date (YYYY-MM-DD).")
            return redirect("revenue:estimates")
        try:
            estimate_propose(
                contract=contract, hours=hours, as_of=as_of, user=request.user, note=request.POST.get("note", "")
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect("revenue:estimates")
        messages.success(request, f"Estimate for {contract.code} proposed: it awaits finance's approval.")
        return redirect("revenue:estimates")
    contracts = Contract.objects.filter(billing_model=Contract.BillingModel.FIXED_FEE).exclude(
        status=Contract.Status.DRAFT
    )
    if not (cached_user_roles(request.user) & READ_ROLES or request.user.is_superuser):
        contracts = contracts.filter(projects__project_manager=request.user).distinct()
    rows = Estimate.objects.filter(contract__in=contracts).select_related("contract", "proposed_by", "decided_by")
    return render(
        request,
        "revenue/estimates.html",
        {"contracts": contracts.order_by("code"), "estimates": rows[:300]},
    )
