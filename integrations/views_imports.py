"""Inbound imports: upload a PSA time export (dry run, then import), and the history of every import.

Finance analysts and controllers import; auditors read the history (and every error);
everyone else gets 403. The rules live in `integrations.services.csv_import`.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.views import finance_view
from integrations import selectors_imports as selectors
from integrations.forms import ImportCheckedForm, TimeImportForm
from integrations.models import ImportBatch
from integrations.services.csv_import import (
    COLUMNS,
    MAX_CSV_ROWS,
    import_checked_file,
    import_time_csv,
    stored_file_exists,
)
from integrations.services.inbound import UpsertOutcome
from kernel.errors import ApplicationError
from kernel.roles import is_finance


def _can_import(request: HttpRequest) -> bool:
    return is_finance(request.user)


def _nav(request: HttpRequest) -> dict:
    try:
        monitor_url = reverse("integrations:monitor")
    except NoReverseMatch:
        monitor_url = None
    return {"can_import": _can_import(request), "monitor_url": monitor_url}


def _report(request: HttpRequest, outcome: UpsertOutcome) -> None:
    counts = outcome.summary()
    what = (f"{counts['total']} rows: {counts['created']} new, {counts['updated']} changed, "
            f"{counts['unchanged']} unchanged, {counts['error']} in error")
    if outcome.error and not outcome.results:
        messages.error(request, f"Nothing imported: {outcome.error}")
    elif outcome.dry_run:
        level = messages.warning if counts["error"] or outcome.error else messages.success
        level(request, f"Dry run checked {what}. Nothing was saved.")
    elif outcome.status == ImportBatch.Status.FAILED:
        messages.error(request, f"Nothing imported: {what}. Fix the rows in error and upload again.")
    elif outcome.status == ImportBatch.Status.PARTIAL:
        messages.warning(request, f"Imported but for the rows in error: {what}.")
    else:
        messages.success(request, f"Imported {what}. New time waits for the project managers' approval.")


@require_GET
@finance_view()
def import_list(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "")
    if kind not in ("", *ImportBatch.Kind.values):
        kind = ""
    page = Paginator(selectors.import_history(kind=kind), 50).get_page(request.GET.get("page"))
    return render(request, "integrations/imports/list.html", {
        "page": page, "kind": kind, "kinds": ImportBatch.Kind.choices, **_nav(request),
    })


@require_GET
@finance_view()
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        batch = selectors.import_detail(pk)
    except ImportBatch.DoesNotExist as exc:
        raise Http404("No such import.") from exc
    can_confirm = (
        _can_import(request) and batch.kind == ImportBatch.Kind.CSV_TIME
        and batch.status == ImportBatch.Status.DRY_RUN and not batch.rows_failed and stored_file_exists(batch)
    )
    return render(request, "integrations/imports/detail.html", {
        "batch": batch, "errors": batch.errors or [], "can_confirm": can_confirm, **_nav(request),
    })


@require_http_methods(["GET", "POST"])
@finance_view(act=True)
def import_upload(request: HttpRequest) -> HttpResponse:
    form = TimeImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        dry_run = request.POST.get("action", "dry_run") != "import"
        outcome = import_time_csv(
            content=upload.read(), filename=upload.name, user=request.user, source=form.cleaned_data["source"],
            dry_run=dry_run, partial=form.cleaned_data["partial"],
        )
        _report(request, outcome)
        return redirect("integrations:import_detail", pk=outcome.batch.pk)
    return render(request, "integrations/imports/upload.html", {
        "form": form, "columns": COLUMNS, "max_rows": f"{MAX_CSV_ROWS:,}", **_nav(request),
    }, status=400 if form.errors else 200)


@require_POST
@finance_view(act=True)
def import_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    """Import the file a dry run checked, as it was checked."""
    try:
        batch = selectors.import_detail(pk)
    except ImportBatch.DoesNotExist as exc:
        raise Http404("No such import.") from exc
    form = ImportCheckedForm(request.POST)
    form.is_valid()
    try:
        outcome = import_checked_file(batch=batch, user=request.user, partial=form.cleaned_data.get("partial", False))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("integrations:import_detail", pk=batch.pk)
    _report(request, outcome)
    return redirect("integrations:import_detail", pk=outcome.batch.pk)
