"""The approval route of a subject, for its page: `{% approval_route_panel invoice %}` (ADR 0014 panels).

Each step of the latest request with its approver (role, user or PM), status,
who decided it, when and on whose behalf; steps skipped by a confirmed override
are marked with a warning and name both controllers. A pending override shows
as awaiting a second controller, with the confirm form for an eligible one; a
controller may request an override where the policy allows it. Earlier requests
are listed below. Loads its data in a fixed number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template
from django.contrib.contenttypes.models import ContentType
from django.template.loader import render_to_string

from approvals.models import ApprovalDecision, ApprovalOverride, ApprovalRequest, ApprovalStep
from approvals.services.overrides import override_confirm_refusal, override_request_refusal
from kernel.roles import FINANCE_CONTROLLER, cached_user_roles

register = template.Library()


@dataclass
class RouteStep:
    step: ApprovalStep
    decision: ApprovalDecision | None
    state: str  # approved, rejected, overridden, open, next, not_reached


def _steps(approval: ApprovalRequest, steps: list[ApprovalStep], decided: list[ApprovalDecision]) -> list[RouteStep]:
    decisions = {d.step_order: d for d in decided}
    rows = []
    for step in steps:
        decision = decisions.get(step.order)
        if decision is not None:
            state = "overridden" if decision.override_id else decision.decision + "d"
        elif approval.status == ApprovalRequest.Status.PENDING:
            state = "open" if step.order == approval.current_step else "next"
        else:
            state = "not_reached"
        rows.append(RouteStep(step, decision, state))
    return rows


def _overrides(approval: ApprovalRequest, decided: list[ApprovalDecision]) -> list[ApprovalOverride]:
    """The request's overrides, newest first; read only when there can be one the panel shows.

    The panel shows a pending override (only on a pending request) and confirmed ones, and a
    confirmed override always decided a step (`ApprovalDecision.override`): a settled request
    whose decisions name no override has none to show, so most pages skip the query.
    """
    pending = approval.status == ApprovalRequest.Status.PENDING
    if not pending and not any(d.override_id for d in decided):
        return []
    return list(
        approval.overrides.select_related("requested_by", "confirmed_by").order_by("-created_at", "-pk")
    )


@register.simple_tag(takes_context=True)
def approval_route_panel(context: Any, subject: Any) -> str:
    request = context.get("request")
    user = getattr(request, "user", None)
    # Earlier requests show only their number and status: the steps and decisions are the latest's.
    approvals = list(
        ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk
        )
        .select_related("policy")
        .order_by("-created_at", "-pk")
    )
    if not approvals:
        return ""
    latest, earlier = approvals[0], approvals[1:]
    steps = list(ApprovalStep.objects.filter(policy_id=latest.policy_id).select_related("user").order_by("order"))
    decided = list(
        ApprovalDecision.objects.filter(request_id=latest.pk)
        .select_related("approver", "on_behalf_of", "override__requested_by")
        .order_by("step_order")
    )
    overrides = _overrides(latest, decided)
    pending = next((o for o in overrides if o.status == ApprovalOverride.Status.PENDING), None)
    is_controller = user is not None and FINANCE_CONTROLLER in cached_user_roles(user)
    request_refusal = confirm_refusal = None
    if latest.status == ApprovalRequest.Status.PENDING and is_controller:
        if pending is None:
            request_refusal = override_request_refusal(request=latest, subject=subject, user=user)
        else:
            confirm_refusal = override_confirm_refusal(override=pending, subject=subject, user=user)
    return render_to_string(
        "approvals/_route_panel.html",
        {
            "approval": latest,
            "route": _steps(latest, steps, decided),
            "earlier": earlier,
            "overrides": overrides,
            "pending_override": pending,
            "is_controller": is_controller,
            "request_refusal": request_refusal,
            "confirm_refusal": confirm_refusal,
            "is_requester": bool(pending and user is not None and pending.requested_by_id == user.pk),
            "here": request.get_full_path() if request else "",
        },
        request=request,
    )
