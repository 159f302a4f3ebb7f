"""Assistive screens: the dispute-risk model's quality, SOW upload and the review of its suggestions.

Thin views: reads here or in services, changes through `insights.services.sow`,
whose errors are shown as they are. Roles checked here (403) and again in the services.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from billing.models import Contract
from insights.forms import SowDecisionForm, SowUploadForm
from insights.models import RiskModel, SowReading, SowSuggestion
from insights.services import risk as risk_service
from insights.services.anomaly import min_history, threshold
from insights.services.sow import (
    MAX_BYTES,
    hours_per_day,
    max_pages,
    may_decide,
    open_reading,
    read_seconds,
    reading_is_stale,
    sow_suggestion_accept,
    sow_suggestion_reject,
    sow_upload,
)
from kernel.errors import ApplicationError
from kernel.roles import (
    AUDITOR,
    BILLING_ADMIN,
    COLLECTIONS,
    FINANCE_ROLES,
    cached_user_roles,
)

MODEL_READERS = FINANCE_ROLES | {COLLECTIONS, BILLING_ADMIN, AUDITOR}
SOW_READERS = FINANCE_ROLES | {BILLING_ADMIN, AUDITOR}


def _has(request: HttpRequest, allowed: set[str]) -> bool:
    return bool(request.user.is_superuser or cached_user_roles(request.user) & allowed)


def _forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "insights/assist/forbidden.html", {"reason": reason}, status=403)


@login_required
@require_http_methods(["GET"])
def model_quality(request: HttpRequest) -> HttpResponse:
    if not _has(request, MODEL_READERS):
        return _forbidden(request, "The risk model's page is for finance, collections, billing admins and auditors.")
    models = list(RiskModel.objects.all()[:10])
    active = next((m for m in models if m.is_active), None) or RiskModel.objects.filter(is_active=True).first()
    return render(
        request,
        "insights/assist/model.html",
        {
            "active": active,
            "coefficients": risk_service.model_summary(active) if active else [],
            "models": models,
            "min_samples": risk_service.min_samples(),
            "min_positives": risk_service.min_positives(),
            "min_auc": risk_service.min_auc(),
            "anomaly_threshold": threshold(),
            "anomaly_min_history": min_history(),
        },
    )


def _contract(pk: int) -> Contract:
    try:
        return Contract.objects.select_related("client", "entity").get(pk=pk)
    except Contract.DoesNotExist as exc:
        raise Http404("No such contract.") from exc


SOW_INDEX_LIMIT = 100


@login_required
@require_http_methods(["GET"])
def sow_index(request: HttpRequest) -> HttpResponse:
    """Contracts with SOW suggestions to decide first, then a search to find any contract (code, client)."""
    if not _has(request, SOW_READERS):
        return _forbidden(request, "SOW suggestions are for finance, billing admins and auditors.")
    term = (request.GET.get("q") or "").strip()
    pending = Count("sow_suggestions", filter=Q(sow_suggestions__decision=SowSuggestion.Decision.PENDING))
    qs = Contract.objects.select_related("client").annotate(pending=pending)
    if term:
        qs = qs.filter(
            Q(code__icontains=term) | Q(client__code__icontains=term) | Q(client__legal_name__icontains=term)
        )
    else:
        qs = qs.filter(pending__gt=0)
    contracts = list(qs.order_by("-pending", "code")[:SOW_INDEX_LIMIT])
    return render(
        request,
        "insights/assist/sow_index.html",
        {"contracts": contracts, "q": term, "can_decide": may_decide(request.user), "limit": SOW_INDEX_LIMIT},
    )


@login_required
@require_http_methods(["GET", "POST"])
def sow_upload_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not may_decide(request.user):
        return _forbidden(request, "Finance analysts, controllers and billing admins upload statements of work.")
    contract = _contract(pk)
    form = SowUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        document = form.cleaned_data["document"]
        if document.size > MAX_BYTES:
            form.add_error("document", "The file is larger than 10 MB.")
        else:
            try:
                sow_upload(contract=contract, name=document.name, content=document.read(), user=request.user)
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"{document.name} received: reading it. Its suggestions appear here.")
                return redirect("insights:sow_review", pk=contract.pk)
    return render(
        request, "insights/assist/sow_upload.html",
        {"contract": contract, "form": form, "hours_per_day": hours_per_day(), "max_pages": max_pages()},
    )


def _reading_context(reading: SowReading | None) -> dict:
    return {"reading": reading, "stale": bool(reading and reading_is_stale(reading)), "read_seconds": read_seconds()}


@login_required
@require_http_methods(["GET"])
def sow_review(request: HttpRequest, pk: int) -> HttpResponse:
    if not _has(request, SOW_READERS):
        return _forbidden(request, "SOW suggestions are for finance, billing admins and auditors.")
    contract = _contract(pk)
    suggestions = list(
        SowSuggestion.objects.filter(contract=contract).select_related("decided_by", "change_order").order_by(
            "decision", "field", "role_code", "-confidence", "id"
        )
    )
    return render(
        request,
        "insights/assist/sow_review.html",
        {
            "contract": contract,
            "pending": [s for s in suggestions if s.decision == SowSuggestion.Decision.PENDING],
            "decided": [s for s in suggestions if s.decision != SowSuggestion.Decision.PENDING],
            "can_decide": may_decide(request.user),
            "hours_per_day": hours_per_day(),
            "terms_locked": contract.terms_locked,
            **_reading_context(open_reading(contract)),
        },
    )


@login_required
@require_http_methods(["GET"])
def sow_reading(request: HttpRequest, pk: int) -> HttpResponse:
    """The reading's status box, polled by htmx while it reads; once finished the page reloads (HX-Refresh)."""
    if not _has(request, SOW_READERS):
        return _forbidden(request, "SOW suggestions are for finance, billing admins and auditors.")
    try:
        reading = SowReading.objects.select_related("contract").get(pk=pk)
    except SowReading.DoesNotExist as exc:
        raise Http404("No such reading.") from exc
    response = render(request, "insights/assist/_sow_reading.html",
                      {"contract": reading.contract, **_reading_context(reading)})
    if request.headers.get("HX-Request") and not reading.is_open:
        response["HX-Refresh"] = "true"  # show the new suggestions (or the failure) on the whole page
    return response


@require_POST
@login_required
def sow_decide(request: HttpRequest, pk: int) -> HttpResponse:
    if not may_decide(request.user):
        return _forbidden(request, "Finance analysts, controllers and billing admins decide SOW suggestions.")
    try:
        suggestion = SowSuggestion.objects.select_related("contract").get(pk=pk)
    except SowSuggestion.DoesNotExist as exc:
        raise Http404("No such suggestion.") from exc
    form = SowDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose accept or reject.")
        return redirect("insights:sow_review", pk=suggestion.contract_id)
    try:
        if form.cleaned_data["decision"] == "accept":
            accepted = sow_suggestion_accept(
                suggestion=suggestion, user=request.user, reason=form.cleaned_data["reason"]
            )
            if accepted.change_order_id:
                messages.success(
                    request, f"Accepted: {suggestion.get_field_display()} {suggestion.value}. Contract "
                    f"{suggestion.contract.code} is {suggestion.contract.get_status_display().lower()}, so nothing "
                    f"changed yet: draft change order {accepted.change_order.code} carries it — submit it for "
                    "approval (someone else approves)."
                )
            else:
                messages.success(
                    request, f"Accepted: {suggestion.get_field_display()} {suggestion.value} applied to draft "
                    f"contract {suggestion.contract.code}."
                )
        else:
            sow_suggestion_reject(suggestion=suggestion, user=request.user)
            messages.success(request, f"Rejected: {suggestion.get_field_display()} {suggestion.value}.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("insights:sow_review", pk=suggestion.contract_id)
