"""The project manager's work queues: time & expenses to approve, milestones, submitted change orders.

Thin views over `billing.services.work`, `.milestones`, `.change_orders`; 403 on another PM's project.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.db.models import Count, Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.forms import ReasonForm
from approvals.selectors import pending_request, routings
from approvals.services import (
    approval_reject,
)
from approvals.views.common import forbidden, render_screen
from billing.forms_work import parse_week, week_key
from billing.models import (
    ChangeOrder,
    Expense,
    Milestone,
    Project,
    TimeEntry,
)
from billing.models.contracts import Contract
from billing.models.work import WorkStatus
from billing.selectors_work import (
    ZERO,
    contract_caps,
    hours_text,
    managed_contracts,
    pm_change_orders,
    pm_milestones,
    pm_time_queue,
)
from billing.services.change_orders import change_order_approve, change_order_reject
from billing.services.milestones import milestone_approve, milestone_complete, milestone_resubmit
from billing.services.work import (
    work_approve_bulk,
    work_reject,
)
from billing.views_work import _own_project, pm_view
from kernel.errors import ApplicationError, ConflictError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.params import int_param


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
    return render_screen(
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
    """The listed items, each on one of the PM's projects (else 403); none listed: no query built."""
    if not ids:
        return []
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
        f"({hours_text(hours)} h) and {n_expenses} expense{'' if n_expenses == 1 else 's'}."
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
        what = f"{hours_text(item.hours)} h" if isinstance(item, TimeEntry) else f"{item.amount:,} {item.currency}"
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
    return render_screen(
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
            request_ = pending_request(milestone)
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
    return render_screen(
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


