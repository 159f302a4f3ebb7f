"""One approval request: its page and the decision on its open step."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.forms import DecisionForm
from approvals.models import ApprovalDecision, ApprovalRequest
from approvals.registry import subject_label
from approvals.selectors import earlier_approvals, my_approvals, request_subject
from approvals.services import (
    approval_decide,
    check_decider,
)
from approvals.views.common import READ_ALL_ROLES, forbidden, render_screen, screen_roles
from kernel.errors import ApplicationError, ConflictError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.listing import age_label


def _may_view_request(
    request: HttpRequest, approval: ApprovalRequest, decisions: list[ApprovalDecision] | None = None
) -> bool:
    """Finance and auditors see every approval; others what they prepared, manage, decided or may decide."""
    user = request.user
    if user.is_superuser or screen_roles(request) & READ_ALL_ROLES:
        return True
    if user.pk in (approval.prepared_by_id, approval.requested_by_id):
        return True
    if approval.project_id and approval.project.project_manager_id == user.pk:
        return True
    if approval.contract_id and approval.contract.projects.filter(project_manager=user).exists():
        return True
    if decisions is None:
        if approval.decisions.filter(Q(approver=user) | Q(on_behalf_of=user)).exists():
            return True
    elif any(user.pk in (d.approver_id, d.on_behalf_of_id) for d in decisions):
        return True
    return my_approvals(user).filter(pk=approval.pk).exists()


#: What the detail page shows of a request besides the request itself.
_DETAIL_RELATED = ("policy", "project", "contract", "prepared_by", "requested_by")


def _get_request(pk: int, related: tuple[str, ...] = _DETAIL_RELATED) -> ApprovalRequest:
    """The request with `related` joined in (a decision needs only what `_may_view_request` follows)."""
    approval = ApprovalRequest.objects.select_related(*related).filter(pk=pk).first()
    if approval is None:
        raise Http404("No such approval.")
    return approval


@require_GET
@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One approval: its subject, steps and decisions, earlier approvals, and the decision form if it is yours.

    The steps, decisions and subject are read once and shared with the decider check.
    """
    approval = _get_request(pk)
    decisions = list(approval.decisions.select_related("approver", "on_behalf_of"))
    if not _may_view_request(request, approval, decisions):
        return forbidden(request, "This approval is about work you neither prepared, manage nor may decide.")
    now = timezone.now()
    subject = request_subject(approval)
    steps = list(approval.policy.steps.select_related("user").order_by("order"))
    refusal = ""
    can_decide = False
    if approval.status == ApprovalRequest.Status.PENDING:
        try:
            check_decider(
                request=approval,
                user=request.user,
                subject=subject,
                steps=steps,
                decisions=decisions,
                roles=screen_roles(request),
            )
            can_decide = True
        except ApplicationError as exc:
            refusal = exc.message
    by_step = {d.step_order: d for d in decisions}
    history = list(earlier_approvals(approval)) if subject is not None else []
    return render_screen(
        request,
        "approvals/request_detail.html",
        {
            "approval": approval,
            "subject": subject,
            "label": subject_label(subject) if subject is not None else "",
            "steps": [(s, by_step.get(s.order)) for s in steps],
            "can_decide": can_decide,
            "refusal": refusal,
            "age": age_label(approval.created_at, now),
            "overdue": approval.is_overdue,
            "history": history,
        },
    )


@require_POST
@login_required
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject the open step the user saw; a conflict or a refusal comes back as a message.

    The request is read without the policy and users the page shows: the service re-reads it under lock.
    """
    approval = _get_request(pk, related=("project", "contract"))
    if not _may_view_request(request, approval):
        return forbidden(request, "This approval is about work you neither prepared, manage nor may decide.")
    back = safe_next(request, reverse("approvals:request_detail", args=[pk]))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or reject.")
        return HttpResponseSeeOther(back)
    data = form.cleaned_data
    if data.get("step"):
        approval.current_step = data["step"]  # the step the user saw: a later one is a conflict
    label = subject_label(approval.subject) if approval.subject is not None else f"approval {approval.pk}"
    try:
        decided = approval_decide(
            request=approval, user=request.user, decision=data["decision"], comment=data.get("comment", "")
        )
    except ConflictError as exc:
        messages.warning(request, f"{label.capitalize()}: {exc.message}")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        if decided.status == ApprovalRequest.Status.APPROVED:
            messages.success(request, f"{label.capitalize()} approved.")
        elif decided.status == ApprovalRequest.Status.REJECTED:
            messages.success(request, f"{label.capitalize()} rejected: “{decided.outcome_reason}”.")
        else:
            messages.success(request, f"{label.capitalize()}: step approved; step {decided.current_step} is next.")
    return HttpResponseSeeOther(back)
