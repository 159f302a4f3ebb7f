"""Dispute and credit-note screens: the dispute list, a dispute's page and its actions, opening a
dispute from an invoice, a credit note for an issued invoice, and "reissue now".

Thin views: reads from `disputes.selectors.disputes`, changes through `disputes.services` and
`billing.services.credit_notes`, whose `ApplicationError.message` is shown as it is.
Finance analysts, controllers and collections work disputes; credit notes and reissues are
finance's; auditors read everything. The services check again.
"""

from __future__ import annotations

import functools
import mimetypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.models import Invoice, InvoiceLine
from billing.services.credit_notes import credit_note_cancel, credit_note_create, invoice_reissue
from disputes.classify import Suggestion
from disputes.forms.disputes import (
    CreditNoteForm,
    DisputeOpenForm,
    DisputeResolveForm,
    NoteForm,
    ReasonForm,
    ReassignForm,
    dispute_workers,
)
from disputes.models import Dispute, DisputeClassifier, DisputeNote
from disputes.selectors import disputes as selectors
from disputes.services import (
    CREDIT_ROLES,
    DISPUTE_ROLES,
    dispute_add_note,
    dispute_investigate,
    dispute_open,
    dispute_reassign,
    dispute_resolve,
    dispute_sla_days,
    dispute_withdraw,
)
from kernel.errors import ApplicationError
from kernel.http import forbidden as _forbidden
from kernel.http import require_roles
from kernel.money import ZERO, round_money
from kernel.params import int_param
from kernel.roles import AUDITOR
from kernel.roles import cached_user_roles as memoised_user_roles

READ_ROLES = frozenset({*DISPUTE_ROLES, AUDITOR})


@dataclass(frozen=True)
class Access:
    can_work: bool
    can_credit: bool
    read_only: bool


def access_of(request: HttpRequest) -> Access:
    roles = memoised_user_roles(request.user)
    superuser = bool(getattr(request.user, "is_superuser", False))
    can_work = superuser or bool(roles & set(DISPUTE_ROLES))
    return Access(can_work=can_work, can_credit=superuser or bool(roles & set(CREDIT_ROLES)), read_only=not can_work)


def dispute_view(*, act: str | None = None) -> Callable:
    """Login required; finance, collections and auditors read; `act` = "work" or "credit" for changes."""

    def decorator(view: Callable) -> Callable:
        @require_roles(READ_ROLES, "The dispute screens are for finance, collections and auditors.")
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            access = access_of(request)
            if act == "work" and not access.can_work:
                return _forbidden(request, "Only finance and collections work disputes; auditors read.")
            if act == "credit" and not access.can_credit:
                return _forbidden(request, "Only finance analysts and controllers make credit notes and reissues.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _get_dispute(pk: int) -> Dispute:
    try:
        return selectors.get_dispute(pk)
    except Dispute.DoesNotExist as exc:
        raise Http404("No such dispute.") from exc


def _get_invoice(pk: int) -> Invoice:
    try:
        return Invoice.objects.select_related("client", "entity", "contract").get(pk=pk)
    except Invoice.DoesNotExist as exc:
        raise Http404("No such invoice.") from exc


def _detail_url(dispute: Dispute) -> str:
    return reverse("disputes:dispute_detail", args=[dispute.pk])


def _invoice_url(invoice_id: int) -> str:
    return reverse("billing:invoice_detail", args=[invoice_id])


#: The `min_age` filter's ceiling, in days (a century: no dispute is older).
MAX_AGE_DAYS = 36_500


# --- list and detail ------------------------------------------------------------------------------


@require_GET
@dispute_view()
def dispute_list(request: HttpRequest) -> HttpResponse:
    filters = {
        "status": request.GET.get("status") or "live",
        "category": request.GET.get("category") or "",
        "owner": request.GET.get("owner") or "",
        "client": request.GET.get("client") or "",
        "min_age": int_param(request.GET, "min_age", min_value=0, max_value=MAX_AGE_DAYS) or "",
        "min_amount": _decimal_or_none(request.GET.get("min_amount")),
        "overdue": request.GET.get("overdue") == "1",
        "sort": request.GET.get("sort") if request.GET.get("sort") in selectors.SORTS else "due",
    }
    queue = selectors.dispute_queue(filters=filters, user=request.user)
    return render(request, "disputes/dispute_list.html", {
        "queue": queue,
        "filters": filters,
        "tabs": [(key, label) for key, label, _ in selectors.STATUS_TABS],
        "categories": Dispute.Category.choices,
        "sorts": selectors.SORTS.items(),
        "owners": dispute_workers(),
        "access": access_of(request),
    })


def _decimal_or_none(value: str | None) -> Decimal | None:
    try:
        return Decimal(value) if value else None
    except ArithmeticError:
        return None


def _resolve_form(dispute: Dispute, data=None) -> DisputeResolveForm:
    lines = selectors.invoice_lines_for_dispute(dispute.invoice)
    ticked = {dl.invoice_line_id for dl in dispute.lines.all()}
    return DisputeResolveForm(data, lines=lines, ticked=ticked, prefix="resolve")


def _render_detail(request: HttpRequest, dispute: Dispute, *, resolve_form=None, note_form=None,
                   status: int = 200) -> HttpResponse:
    access = access_of(request)
    return render(request, "disputes/dispute_detail.html", {
        "dispute": dispute,
        "invoice": dispute.invoice,
        "age_days": selectors.dispute_age_days(dispute),
        "overdue": selectors.dispute_is_overdue(dispute),
        "timeline": selectors.dispute_timeline(dispute),
        "access": access,
        "resolve_form": resolve_form or (_resolve_form(dispute) if dispute.is_live and access.can_work else None),
        "note_form": note_form or NoteForm(),
        "withdraw_form": ReasonForm(),
        "reassign_form": ReassignForm(initial={"owner": dispute.owner_id, "due_date": dispute.due_date}),
    }, status=status)


@require_GET
@dispute_view()
def dispute_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, _get_dispute(pk))


# --- actions --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@dispute_view(act="work")
def dispute_open_view(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = _get_invoice(invoice_id)
    lines = selectors.invoice_lines_for_dispute(invoice)
    form = DisputeOpenForm(request.POST or None, lines=lines)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        chosen = form.selected_lines()
        amount = data.get("disputed_amount")
        if amount is None:
            amount = _gross_of(invoice, chosen) if chosen else invoice.balance
        try:
            dispute = dispute_open(
                invoice=invoice, category=data["category"], disputed_amount=amount, user=request.user,
                owner=data.get("owner"), due_date=data.get("due_date"),
                customer_reference=data.get("customer_reference", ""), description=data.get("description", ""),
                lines=chosen or None,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Dispute {dispute.pk} opened on {invoice.display_number} "
                                      f"({dispute.disputed_amount} {dispute.currency}); that amount is held "
                                      "from dunning, any undisputed rest stays due.")
            return HttpResponseRedirect(_detail_url(dispute))
    status = 400 if request.method == "POST" else 200
    return render(request, "disputes/dispute_open.html", {
        "invoice": invoice, "form": form, "sla_days": dispute_sla_days(),
    }, status=status)


def _label_of(category: str) -> str:
    return Dispute.Category(category).label if category in Dispute.Category.values else category


def _shown(suggestion: Suggestion | None) -> dict | None:
    if suggestion is None:
        return None
    return {"category": suggestion.category, "category_label": _label_of(suggestion.category),
            "percent": round(suggestion.confidence * 100), "words": suggestion.words,
            "alternatives": [(_label_of(c), f"{round(p * 100)} %") for c, p in suggestion.alternatives]}


@require_POST
@dispute_view(act="work")
def category_suggest_view(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The category the dispute model suggests for the description and ticked lines typed so far (advice: the
    person still picks the category). htmx gets the fragment; without JavaScript the form comes back with it."""
    invoice = _get_invoice(invoice_id)
    lines = selectors.invoice_lines_for_dispute(invoice)
    ticked = [line for line in lines if request.POST.get(f"line_{line.pk}")]
    description = request.POST.get("description", "")[:5000]
    context = {"suggestion": _shown(selectors.category_suggestion(description, ticked)),
               "classifier": selectors.active_classifier(), "asked": True}
    if request.headers.get("HX-Request"):
        return render(request, "disputes/_category_suggestion.html", context)
    initial = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    form = DisputeOpenForm(initial=initial, lines=lines)
    return render(request, "disputes/dispute_open.html", {
        "invoice": invoice, "form": form, "sla_days": dispute_sla_days(), **context,
    })


@require_GET
@dispute_view()
def classifier_view(request: HttpRequest) -> HttpResponse:
    """The dispute-category model: held-out accuracy against always the most common category, per category."""
    models = list(DisputeClassifier.objects.defer("parameters").select_related("trained_by")[:10])
    active = next((m for m in models if m.is_active), None)
    return render(request, "disputes/classifier.html", {"active": active, "models": models})


def _gross_of(invoice: Invoice, chosen: list[tuple[InvoiceLine, Decimal]]) -> Decimal:
    """Net amounts of the ticked lines with the invoice's tax ratio, capped at the balance."""
    net = sum((amount for _line, amount in chosen), ZERO)
    gross = net if not invoice.subtotal else round_money(net * invoice.total / invoice.subtotal, invoice.currency)
    return min(gross, invoice.balance)


@require_POST
@dispute_view(act="work")
def dispute_investigate_view(request: HttpRequest, pk: int) -> HttpResponse:
    dispute = _get_dispute(pk)
    try:
        dispute_investigate(dispute=dispute, user=request.user, note=request.POST.get("note", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Dispute {dispute.pk}: investigating.")
    return HttpResponseRedirect(_detail_url(dispute))


@require_POST
@dispute_view(act="work")
def dispute_note_view(request: HttpRequest, pk: int) -> HttpResponse:
    dispute = _get_dispute(pk)
    form = NoteForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            dispute_add_note(dispute=dispute, user=request.user, text=form.cleaned_data["text"],
                             attachment=form.cleaned_data.get("attachment"))
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Note added.")
            return HttpResponseRedirect(_detail_url(dispute))
    return _render_detail(request, dispute, note_form=form, status=400)


@require_POST
@dispute_view(act="work")
def dispute_reassign_view(request: HttpRequest, pk: int) -> HttpResponse:
    dispute = _get_dispute(pk)
    form = ReassignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an owner (finance or collections) and a valid date.")
        return HttpResponseRedirect(_detail_url(dispute))
    try:
        dispute = dispute_reassign(dispute=dispute, user=request.user, owner=form.cleaned_data["owner"],
                                   due_date=form.cleaned_data.get("due_date"))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Dispute {dispute.pk}: owner {dispute.owner.get_username()}, "
                                  f"resolve by {dispute.due_date:%d %b %Y}.")
    return HttpResponseRedirect(_detail_url(dispute))


@require_POST
@dispute_view(act="work")
def dispute_withdraw_view(request: HttpRequest, pk: int) -> HttpResponse:
    dispute = _get_dispute(pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A reason is required to withdraw a dispute.")
        return HttpResponseRedirect(_detail_url(dispute))
    try:
        dispute_withdraw(dispute=dispute, user=request.user, reason=form.cleaned_data["reason"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Dispute {dispute.pk} withdrawn; invoice {dispute.invoice.display_number} "
                                  "is back on the account.")
    return HttpResponseRedirect(_detail_url(dispute))


@require_POST
@dispute_view(act="work")
def dispute_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    dispute = _get_dispute(pk)
    if not dispute.is_live:
        messages.error(request, f"Dispute {dispute.pk} is {dispute.get_status_display().lower()} already.")
        return HttpResponseRedirect(_detail_url(dispute))
    form = _resolve_form(dispute, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        outcome = data["outcome"]
        chosen = form.selected_lines() if outcome != Dispute.Outcome.UPHELD else []
        if outcome == Dispute.Outcome.CREDIT_AND_REISSUE:
            chosen = [(line, line.amount) for line, _amount in chosen]  # whole lines
        credit_amount = data.get("credit_amount") if outcome != Dispute.Outcome.UPHELD and not chosen else None
        try:
            resolved = dispute_resolve(
                dispute=dispute, outcome=outcome, user=request.user, note=data["note"],
                credit_amount=credit_amount, lines=chosen or None,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            text = f"Dispute {resolved.pk} resolved: {resolved.get_outcome_display().lower()}."
            if resolved.credit_note_id:
                text += (f" Credit note draft {resolved.credit_note.display_number} "
                         f"({resolved.credit_note.total} {resolved.credit_note.currency}) awaits a controller.")
            messages.success(request, text)
            return HttpResponseRedirect(_detail_url(resolved))
    return _render_detail(request, dispute, resolve_form=form, status=400)


@require_GET
@dispute_view()
def dispute_attachment(request: HttpRequest, pk: int) -> HttpResponse:
    """Download a note's attachment (only through this view: the same roles as the dispute page)."""
    note = DisputeNote.objects.filter(pk=pk).first()
    if note is None or not note.attachment:
        raise Http404("No such attachment.")
    name = os.path.basename(note.attachment.name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(note.attachment.open("rb"), content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- credit notes ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@dispute_view(act="credit")
def credit_note_new(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = _get_invoice(invoice_id)
    lines = list(invoice.lines.select_related("project", "role").order_by("position", "id"))
    form = CreditNoteForm(request.POST or None, lines=[line for line in lines if line.amount > ZERO])
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        mode = data["mode"]
        try:
            note = credit_note_create(
                invoice=invoice, user=request.user, reason=data["reason"],
                lines=form.selected_lines() if mode == "lines" else None,
                amount=data.get("amount") if mode == "amount" else None,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Credit note draft {note.display_number} of {invoice.display_number} "
                                      f"({note.total} {note.currency}) awaits a controller's approval.")
            return HttpResponseRedirect(_invoice_url(note.pk))
    status = 400 if request.method == "POST" else 200
    return render(request, "disputes/credit_note_new.html", {
        "invoice": invoice, "form": form, "left": invoice.total - invoice.credited_amount,
    }, status=status)


@require_POST
@dispute_view(act="credit")
def credit_note_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    note = _get_invoice(pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A reason is required to withdraw a credit note.")
    else:
        try:
            credit_note_cancel(credit_note=note, user=request.user, reason=form.cleaned_data["reason"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Credit note draft {note.display_number} withdrawn; its amount is "
                                      "left to credit again.")
    return HttpResponseRedirect(_invoice_url(note.credit_of_id or note.pk))


@require_POST
@dispute_view(act="credit")
def invoice_reissue_view(request: HttpRequest, invoice_id: int) -> HttpResponse:
    invoice = _get_invoice(invoice_id)
    try:
        drafts = invoice_reissue(invoice=invoice, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(_invoice_url(invoice.pk))
    names = ", ".join(f"{d.display_number} ({d.get_status_display().lower()}, {d.total} {d.currency})"
                      for d in drafts)
    messages.success(request, f"Corrected invoice of {invoice.display_number} billed: {names}.")
    return HttpResponseRedirect(_invoice_url(drafts[0].pk))
