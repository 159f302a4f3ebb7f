"""Four-eyes override of a pending approval route: request (controller A), confirm (controller B), withdraw.

Thin views: finance controllers only (403 for everyone else, before any
service runs); `approvals.services.overrides` checks everything again (four
eyes, segregation of duties, the policy's `allow_override`, a reason).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from approvals.forms import ReasonForm
from approvals.models import ApprovalOverride, ApprovalRequest
from approvals.registry import subject_label
from approvals.services import approval_override_confirm, approval_override_request, approval_override_withdraw
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, forbidden
from kernel.roles import FINANCE_CONTROLLER, user_roles

CONTROLLERS_ONLY = "Only finance controllers request or confirm an override of an approval route."


def _back(request: HttpRequest, approval: ApprovalRequest) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("approvals:request_detail", args=[approval.pk])


def _label(approval: ApprovalRequest) -> str:
    subject = approval.subject
    return (subject_label(subject) if subject is not None else f"approval {approval.pk}").capitalize()


def _is_controller(request: HttpRequest) -> bool:
    return FINANCE_CONTROLLER in user_roles(request.user)


def _override(pk: int) -> ApprovalOverride:
    override = ApprovalOverride.objects.select_related("request", "requested_by").filter(pk=pk).first()
    if override is None:
        raise Http404("No such override.")
    return override


@require_POST
@login_required
def override_request(request: HttpRequest, pk: int) -> HttpResponse:
    if not _is_controller(request):
        return forbidden(request, CONTROLLERS_ONLY)
    approval = ApprovalRequest.objects.filter(pk=pk).first()
    if approval is None:
        raise Http404("No such approval.")
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        approval_override_request(request=approval, user=request.user, reason=form.cleaned_data.get("reason", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.warning(
            request,
            f"{_label(approval)}: override of the approval route requested. A second finance controller must "
            "confirm it.",
        )
    return HttpResponseSeeOther(_back(request, approval))


@require_POST
@login_required
def override_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    if not _is_controller(request):
        return forbidden(request, CONTROLLERS_ONLY)
    override = _override(pk)
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        approval_override_confirm(override=override, user=request.user, comment=form.cleaned_data.get("reason", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{_label(override.request)}: override confirmed; approved, the skipped steps are recorded as overridden.",
        )
    return HttpResponseSeeOther(_back(request, override.request))


@require_POST
@login_required
def override_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    if not _is_controller(request):
        return forbidden(request, CONTROLLERS_ONLY)
    override = _override(pk)
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        approval_override_withdraw(override=override, user=request.user, reason=form.cleaned_data.get("reason", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"{_label(override.request)}: override request withdrawn.")
    return HttpResponseSeeOther(_back(request, override.request))
