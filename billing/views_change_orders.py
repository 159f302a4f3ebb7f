"""The PM raises a change order in the portal: a draft on a contract of their projects, then submits it.

Thin views: `billing.services.change_orders` decides who may raise and submit, on which contract,
and what a draft may hold (the same rules as the admin's); a refusal is shown as its message.
Deciding change orders stays in the PM's queue (`approvals:pm_change_orders`).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from billing.forms_change_orders import ChangeOrderForm, MilestoneRows, RateRows
from billing.models import ChangeOrder, Contract, Project
from billing.services.change_orders import (
    MilestoneTerm,
    RateTerm,
    change_order_draft_save,
    change_order_submit,
)
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther
from kernel.http import forbidden as _forbidden
from kernel.roles import PROJECT_MANAGER, cached_user_roles


def _is_pm(request: HttpRequest) -> bool:
    return request.user.is_superuser or PROJECT_MANAGER in cached_user_roles(request.user)


def _my_contracts(user) -> QuerySet[Contract]:
    """Open contracts with a project this user manages: the ones they may amend."""
    mine = Project.objects.filter(project_manager=user, contract=OuterRef("pk"))
    return Contract.objects.filter(Exists(mine)).exclude(status=Contract.Status.CLOSED).order_by("code")


def _drafts(user) -> QuerySet[ChangeOrder]:
    mine = Project.objects.filter(project_manager=user, contract=OuterRef("contract"))
    return (
        ChangeOrder.objects.filter(Exists(mine), status=ChangeOrder.Status.DRAFT)
        .select_related("contract")
        .order_by("-updated_at")[:20]
    )


def _terms(rate_rows, milestone_rows) -> tuple[list[RateTerm], list[MilestoneTerm]]:
    rates = [
        RateTerm(role_id=f.cleaned_data["role"].pk, rate=f.cleaned_data["rate"],
                 effective_from=f.cleaned_data["effective_from"], effective_to=f.cleaned_data.get("effective_to"))
        for f in rate_rows if f.is_filled
    ]
    milestones = [
        MilestoneTerm(project_id=f.cleaned_data["project"].pk, name=f.cleaned_data["name"],
                      amount=f.cleaned_data["amount"], due_date=f.cleaned_data.get("due_date"))
        for f in milestone_rows if f.is_filled
    ]
    return rates, milestones


def _initial_rows(change_order: ChangeOrder | None) -> tuple[list[dict], list[dict]]:
    if change_order is None:
        return [], []
    rates = [
        {"role": r.role_id, "rate": r.rate, "effective_from": r.effective_from, "effective_to": r.effective_to}
        for r in change_order.rates.filter(role__isnull=False).order_by("pk")
    ]
    milestones = [
        {"project": m.project_id, "name": m.name, "amount": m.amount, "due_date": m.due_date}
        for m in change_order.milestones.order_by("pk")
    ]
    return rates, milestones


def _form_page(request: HttpRequest, change_order: ChangeOrder | None) -> HttpResponse:
    contracts = _my_contracts(request.user)
    fixed = change_order.contract if change_order is not None else None
    projects = Project.objects.filter(contract__in=contracts if fixed is None else [fixed]).order_by("code")
    if request.method == "POST":
        form = ChangeOrderForm(request.POST, contracts=contracts, fixed_contract=fixed)
        rate_rows = RateRows(request.POST, prefix="rates")
        milestone_rows = MilestoneRows(request.POST, prefix="milestones", form_kwargs={"projects": projects})
        if form.is_valid() and rate_rows.is_valid() and milestone_rows.is_valid():
            rates, milestones = _terms(rate_rows, milestone_rows)
            try:
                saved = change_order_draft_save(
                    user=request.user,
                    contract=form.cleaned_data["contract"] if fixed is None else None,
                    change_order=change_order,
                    description=form.cleaned_data["description"],
                    cap_delta=form.cleaned_data["cap_delta"],
                    signed_on=form.cleaned_data.get("signed_on"),
                    rates=rates,
                    milestones=milestones,
                )
                if request.POST.get("action") == "submit":
                    change_order_submit(change_order=saved, user=request.user)
                    messages.success(
                        request,
                        f"Change order {saved} submitted: another manager of the contract's projects or a finance "
                        "controller decides it. Until then it holds back the contract's invoicing.",
                    )
                    return HttpResponseSeeOther(reverse("approvals:pm_change_orders"))
                messages.success(request, f"Draft change order {saved} saved. Submit it when it is complete.")
                return HttpResponseSeeOther(reverse("approvals:pm_change_order_edit", args=[saved.pk]))
            except ApplicationError as error:
                messages.error(request, error.message)
    else:
        initial = {}
        code = request.GET.get("contract", "").strip()
        if code and fixed is None:
            contract = contracts.filter(code=code).first()
            if contract is None:
                if not Contract.objects.filter(code=code).exists():
                    raise Http404("No such contract.")
                return _forbidden(request, f"Contract {code} has no project you manage, or it is closed.")
            initial["contract"] = contract.pk
        if change_order is not None:
            initial.update(description=change_order.description, cap_delta=change_order.cap_delta,
                           signed_on=change_order.signed_on)
        form = ChangeOrderForm(initial=initial, contracts=contracts, fixed_contract=fixed)
        rates, milestones = _initial_rows(change_order)
        rate_rows = RateRows(prefix="rates", initial=rates)
        milestone_rows = MilestoneRows(prefix="milestones", initial=milestones, form_kwargs={"projects": projects})
    return render(
        request,
        "approvals/pm_change_order_form.html",
        {
            "form": form,
            "rate_rows": rate_rows,
            "milestone_rows": milestone_rows,
            "change_order": change_order,
            "drafts": _drafts(request.user),
            "ap_roles": cached_user_roles(request.user),
            "here": request.get_full_path(),
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def pm_change_order_new(request: HttpRequest) -> HttpResponse:
    """Raise a change order on a contract of one of my projects (a draft; submit it here or later)."""
    if not _is_pm(request):
        return _forbidden(request, "Project managers raise change orders here; finance and billing admins use "
                                   "the admin's contract page.")
    return _form_page(request, None)


@require_http_methods(["GET", "POST"])
@login_required
def pm_change_order_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a draft change order of one of my contracts, or submit it."""
    if not _is_pm(request):
        return _forbidden(request, "Project managers edit their draft change orders here.")
    change_order = get_object_or_404(ChangeOrder.objects.select_related("contract"), pk=pk)
    if not request.user.is_superuser and not _my_contracts(request.user).filter(pk=change_order.contract_id).exists():
        return _forbidden(request, f"Contract {change_order.contract.code} has no open project you manage.")
    if change_order.status != ChangeOrder.Status.DRAFT:
        messages.info(request, f"Change order {change_order} is {change_order.get_status_display().lower()}; "
                               "only drafts are edited.")
        return HttpResponseSeeOther(reverse("approvals:pm_change_orders") + f"?contract={change_order.contract.code}")
    return _form_page(request, change_order)
