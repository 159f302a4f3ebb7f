"""Delegations: give and end the right to decide one's approvals."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from approvals.forms import DelegationForm
from approvals.models import Delegation
from approvals.services import (
    delegation_create,
    delegation_end,
)
from approvals.views.common import forbidden, form_errors, render_screen
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther
from kernel.listing import PAGE_SIZE, display_name, paginate
from kernel.roles import (
    AUDITOR,
    has_role,
)


@require_http_methods(["GET", "POST"])
@login_required
def delegations(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and has_role(request.user, AUDITOR):
        return forbidden(request, "Auditors read everything and change nothing.")
    if request.method == "POST":
        form = DelegationForm(request.POST, user=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                delegation = delegation_create(
                    delegator=request.user,
                    delegate=data["delegate"],
                    starts_on=data["starts_on"],
                    ends_on=data["ends_on"],
                    reason=data["reason"],
                    user=request.user,
                )
            except ApplicationError as exc:
                form_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{display_name(delegation.delegate)} may decide your approvals from "
                    f"{delegation.starts_on:%d %b} to {delegation.ends_on:%d %b %Y}.",
                )
                return HttpResponseSeeOther(reverse("approvals:delegation"))
    else:
        form = DelegationForm(user=request.user)
    today = timezone.localdate()
    show = request.GET.get("show", "current")
    given = Delegation.objects.filter(delegator=request.user).select_related("delegate").order_by("-ends_on", "-pk")
    if show == "current":
        given = given.filter(ends_on__gte=today)
    elif show == "ended":
        given = given.filter(ends_on__lt=today)
    received = (
        Delegation.objects.filter(delegate=request.user, ends_on__gte=today)
        .select_related("delegator")
        .order_by("starts_on", "pk")
    )
    return render_screen(
        request,
        "approvals/delegation.html",
        {
            "form": form,
            "page": paginate(given, request.GET.get("page")),
            "received": list(received[:PAGE_SIZE]),
            "today": today,
            "show": show,
            "show_choices": [("current", "Current & upcoming"), ("ended", "Ended"), ("all", "All")],
        },
    )


@require_POST
@login_required
def delegation_end_view(request: HttpRequest, pk: int) -> HttpResponse:
    delegation = Delegation.objects.select_related("delegate", "delegator").filter(pk=pk).first()
    if delegation is None:
        raise Http404("No such delegation.")
    if delegation.delegator_id != request.user.pk:
        return forbidden(request, "You can only end your own delegations.")
    if has_role(request.user, AUDITOR):
        return forbidden(request, "Auditors read everything and change nothing.")
    try:
        ended = delegation_end(delegation=delegation, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        who = display_name(delegation.delegate)
        if ended is None:
            messages.success(request, f"Delegation to {who} withdrawn before it started.")
        else:
            messages.success(request, f"Delegation to {who} ended: it was valid up to {ended.ends_on:%d %b %Y}.")
    return HttpResponseSeeOther(reverse("approvals:delegation"))
