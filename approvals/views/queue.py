"""The approver's queue: where each role lands, and "my approvals"."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.models import ApprovalRequest, ApprovalStep, Delegation
from approvals.registry import subject_label, subject_type_choices
from approvals.selectors import my_approvals, page_of_requests
from approvals.services import approval_requests_decide_selected
from approvals.views.common import render_screen, screen_roles
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.listing import age_label
from kernel.roles import (
    CONSULTANT,
    PROJECT_MANAGER,
)


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Each role lands on what waits for it (docs/rules/screens.md)."""
    roles = screen_roles(request)
    if PROJECT_MANAGER in roles:
        return redirect("approvals:pm_time")
    if CONSULTANT in roles:
        return redirect("approvals:timesheet")
    return redirect("approvals:mine")


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
    qs = my_approvals(request.user, now=now)
    if kind in dict(subject_type_choices()):
        qs = qs.filter(subject_type=kind)
    if overdue_only:
        qs = qs.filter(sla_due_at__lt=now)
    page = page_of_requests(
        qs,
        request.GET.get("page"),
        display=lambda page_qs: page_qs.select_related("prepared_by").prefetch_related(
            Prefetch("policy__steps", queryset=ApprovalStep.objects.order_by("order"))
        ),
    )
    rows = _queue_rows(page.object_list, now)
    delegations = list(
        Delegation.objects.filter(
            delegate=request.user, starts_on__lte=now.date(), ends_on__gte=now.date(), delegator__is_active=True
        ).select_related("delegator")
    )
    return render_screen(
        request,
        "approvals/my_queue.html",
        {
            "page": page,
            "rows": rows,
            "kind": kind,
            "overdue_only": overdue_only,
            "types": subject_type_choices(),
            "acting_for": delegations,
        },
    )


@require_POST
@login_required
def queue_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the requests ticked in the queue at once (ADR 0116); what is refused is reported."""
    back = safe_next(request, reverse("approvals:mine"))
    decision = request.POST.get("decision", "")
    try:
        ids = [int(pk) for pk in request.POST.getlist("request")]
    except ValueError:
        ids = []
    try:
        decided, refusals = approval_requests_decide_selected(
            request_ids=ids, user=request.user, decision=decision, comment=request.POST.get("comment", "")
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseSeeOther(back)
    if decided:
        verb = "approved" if decision == "approve" else "rejected"
        noun = "approval" if len(decided) == 1 else "approvals"
        messages.success(request, f"{len(decided)} {noun} {verb}.")
    report = messages.warning if decided else messages.error  # nothing decided at all: an error
    for label, reason in refusals:
        report(request, f"Not decided: {label}: {reason}")
    return HttpResponseSeeOther(back)
