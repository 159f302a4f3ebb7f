"""The approver's queue: where each role lands, and "my approvals"."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.registry import subject_label, subject_type_choices
from approvals.selectors import QueueEntry, delegations_held, my_approvals_page
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
    """A queue row: the request's entry and what is worked out from it once (label, age, overdue)."""

    entry: QueueEntry
    label: str
    age: str
    overdue: bool

    @property
    def pk(self) -> int:
        return self.entry.pk

    @property
    def subject(self) -> Any:
        return self.entry.subject


def _queue_rows(entries: Iterable[QueueEntry], now: datetime.datetime) -> list[QueueRow]:
    def label(entry: QueueEntry) -> str:
        return subject_label(entry.subject) if entry.subject is not None else f"{entry.subject_type} {entry.object_id}"

    return [
        QueueRow(
            entry=entry,
            label=label(entry),
            age=age_label(entry.created_at, now),
            overdue=entry.sla_due_at < now,
        )
        for entry in entries
    ]


@require_GET
@login_required
def my_queue(request: HttpRequest) -> HttpResponse:
    """What the user may decide now, a page at a time; the rows are formatted by `approval_queue_rows`."""
    now = timezone.now()
    today = timezone.localdate(now)
    kind = request.GET.get("type", "")
    overdue_only = request.GET.get("overdue") == "1"
    delegations = delegations_held(request.user, today=today)
    page = my_approvals_page(
        request.user,
        now=now,
        delegations=delegations,
        subject_type=kind if kind in dict(subject_type_choices()) else "",
        overdue_only=overdue_only,
        page_number=request.GET.get("page"),
    )
    return render_screen(
        request,
        "approvals/my_queue.html",
        {
            "page": page,
            "rows": _queue_rows(page.object_list, now),
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
