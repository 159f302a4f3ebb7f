"""Collections screens: AR aging (with drill-down and CSV), dunning, the hand-off queue, client statements.

Thin views: reads come from `disputes.selectors.collections`, changes from
`disputes.services.collections`, whose `ApplicationError.message` is shown as it is.
Collections, finance and auditors read; collections sends reminders and hands invoices
off; collections and finance set a client's collections profile. The services check again.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.models import Client, Invoice
from disputes.forms.collections import (
    AgingFilterForm,
    CollectionsProfileForm,
    HandoffCloseForm,
    HandoffForm,
    StatementForm,
)
from disputes.models import CollectionsHandoff
from disputes.selectors import collections as sel
from disputes.services import collections as svc
from kernel.csv_export import csv_writer
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, require_roles, safe_next
from kernel.http import forbidden as _forbidden
from kernel.listing import PAGE_SIZE, paginate
from kernel.money import round_money
from kernel.roles import AUDITOR, COLLECTIONS, FINANCE_ROLES
from kernel.roles import cached_user_roles as memoised_user_roles

READ_ROLES = FINANCE_ROLES | {COLLECTIONS, AUDITOR}
#: Client rows per page of the AR aging (a firm has thousands of clients with open items): the
#: portal's page size, which keeps the page light enough to render fast under load (bench/README.md).
AGING_PAGE_SIZE = PAGE_SIZE


@dataclass(frozen=True)
class Access:
    can_dun: bool
    can_hand_off: bool
    can_edit_profile: bool


def _access(request: HttpRequest) -> Access:
    roles = memoised_user_roles(request.user)  # one query, shared with the navigation
    superuser = bool(getattr(request.user, "is_superuser", False))
    return Access(
        can_dun=superuser or bool(roles & set(svc.DUNNING_ROLES)),
        can_hand_off=superuser or bool(roles & set(svc.HANDOFF_ROLES)),
        can_edit_profile=superuser or bool(roles & set(svc.PROFILE_ROLES)),
    )


def collections_view(*, act: str | None = None) -> Callable:
    """Login required; collections, finance and auditors read; `act` names the Access flag an action needs."""

    def decorator(view: Callable) -> Callable:
        @require_roles(READ_ROLES, "The collections screens are for collections, finance and auditors.")
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if act and not getattr(_access(request), act):
                return _forbidden(
                    request,
                    {
                        "can_dun": "Only collections send payment reminders.",
                        "can_hand_off": "Only collections hand invoices off or close hand-offs.",
                        "can_edit_profile": "Only collections and finance change a client's collections profile.",
                    }[act],
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _date_param(request: HttpRequest, name: str, default: datetime.date) -> datetime.date:
    try:
        value = request.GET.get(name)
        return datetime.date.fromisoformat(value) if value else default
    except ValueError:
        return default


# --- AR aging ---------------------------------------------------------------------------------------------


@require_GET
@collections_view()
def aging(request: HttpRequest) -> HttpResponse:
    """AR aging by entity, client and currency; `?client=&bucket=` drills into the invoices; `?format=csv`."""
    today = timezone.localdate()
    entities = sel.aging_entities()
    form = AgingFilterForm(request.GET or None, entities=entities, initial={"as_of": today})
    data = form.cleaned_data if form.is_valid() else {}
    as_of = data.get("as_of") or today
    entity, currency = data.get("entity") or None, data.get("currency") or None
    overdue_only = data.get("overdue") == "yes"
    client_search = data.get("q") or ""
    report = sel.aging_report(
        as_of=as_of, entity=entity, currency=currency, overdue_only=overdue_only, client_search=client_search
    )
    if request.GET.get("format") == "csv":
        return _aging_csv(report)
    # Every client row is in the report (its totals are the whole table's); the page shows AGING_PAGE_SIZE of them.
    page = paginate(report.rows, request.GET.get("page"), per_page=AGING_PAGE_SIZE)
    client_id, bucket = data.get("client"), data.get("bucket") or None
    drill = None
    if client_id or bucket:
        drill_client = (
            Client.objects.filter(pk=client_id).only("id", "code", "legal_name").first() if client_id else None
        )
        drill = {
            "client": drill_client,
            "bucket": bucket or "all",
            "bucket_label": sel.BUCKET_LABELS.get(bucket or "", "All open"),
        }
        drill["page"] = paginate(
            sel.aging_invoice_queryset(
                as_of=as_of, client_id=client_id, bucket=bucket, entity=entity, currency=currency
            ),
            request.GET.get("drill_page"),
            per_page=AGING_PAGE_SIZE,
        )
        drill["invoices"] = sel.with_days_past_due(drill["page"].object_list, as_of=as_of)
    base = {"as_of": as_of.isoformat()}
    if entity:
        base["entity"] = entity
    if currency:
        base["currency"] = currency
    if client_search:
        base["q"] = client_search
    return render(
        request,
        "disputes/collections/aging.html",
        {
            "report": report,
            "page": page,
            "blocks": report.blocks_of(page.object_list),
            "form": form,
            "drill": drill,
            "as_of": as_of,
            "base_query": urlencode(base),
            "csv_query": urlencode({**base, **({"overdue": "yes"} if overdue_only else {}), "format": "csv"}),
            "access": _access(request),
            "here": request.get_full_path(),
        },
    )


def _aging_csv(report: sel.AgingReport) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="ar-aging-{report.as_of:%Y-%m-%d}.csv"'
    writer = csv_writer(response)
    labels = [label for _key, label, _lo, _hi in sel.BUCKETS]
    writer.writerow(
        [
            "as_of",
            "entity",
            "client_code",
            "client",
            "currency",
            *labels,
            "total",
            "of_which_disputed",
            "unapplied_cash",
            "invoices",
            "oldest_due",
        ]
    )

    def money(amount, currency: str) -> str:
        # In the currency's minor unit whatever the database's sums return (SQLite drops trailing zeros).
        return str(round_money(amount, currency))

    for row in report.rows:
        c = row.currency
        writer.writerow(
            [
                report.as_of.isoformat(),
                row.entity_code,
                row.client_code,
                row.client_name,
                c,
                *(money(amount, c) for _key, amount in row.cells),
                money(row.total, c),
                money(row.disputed, c),
                money(row.unapplied, c),
                row.invoices,
                row.oldest_due.isoformat() if row.oldest_due else "",
            ]
        )
    for total in report.totals:
        c = total.currency
        writer.writerow(
            [
                report.as_of.isoformat(),
                "ALL",
                "",
                "Total",
                c,
                *(money(a, c) for _k, a in total.cells),
                money(total.total, c),
                money(total.disputed, c),
                money(total.unapplied, c),
                total.invoices,
                "",
            ]
        )
    return response


# --- dunning ----------------------------------------------------------------------------------------------


@require_GET
@collections_view()
def dunning(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    overview = sel.dunning_overview(today=today)
    return render(
        request,
        "disputes/collections/dunning.html",
        {"overview": overview, "access": _access(request), "labels": sel.Exclusion.LABELS},
    )


@require_POST
@collections_view(act="can_dun")
def dunning_send(request: HttpRequest) -> HttpResponse:
    """Send now what the daily run would send today (idempotent: a second click sends nothing new)."""
    try:
        summary = svc.dunning_run(user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        if summary.failed:
            messages.warning(request, summary.as_text() + " Failed reminders are retried by the next run.")
        elif summary.sent:
            messages.success(request, summary.as_text())
        else:
            messages.info(request, summary.as_text() + " Nothing was due.")
    return HttpResponseSeeOther(reverse("disputes:dunning"))


# --- hand-offs --------------------------------------------------------------------------------------------


@require_GET
@collections_view()
def handoff_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or CollectionsHandoff.Status.OPEN
    if status not in (*CollectionsHandoff.Status.values, "all"):
        status = CollectionsHandoff.Status.OPEN
    return render(
        request,
        "disputes/collections/handoff_list.html",
        {
            "handoffs": sel.handoff_queue(status=status),
            "status": status,
            "counts": sel.handoff_counts(),
            "close_form": HandoffCloseForm(),
            "access": _access(request),
        },
    )


@require_http_methods(["GET", "POST"])
@collections_view(act="can_hand_off")
def handoff_new(request: HttpRequest, pk: int) -> HttpResponse:
    """Hand invoice `pk` off (from the aging drill-down or the invoice page)."""
    invoice = Invoice.objects.select_related("client", "entity").filter(pk=pk, kind=Invoice.Kind.INVOICE).first()
    if invoice is None:
        raise Http404("No such invoice.")
    form = HandoffForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            handoff = svc.handoff_create(
                invoice=invoice,
                user=request.user,
                reason=form.cleaned_data["reason"],
                assignee=form.cleaned_data["assignee"],
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
            for name, errors in exc.field_errors.items():
                if name in form.fields:
                    for error in errors:
                        form.add_error(name, error)
        else:
            to = f" to {handoff.assignee}" if handoff.assignee else ""
            messages.success(request, f"{invoice.number} handed off{to}; reminders stop while it is open.")
            return HttpResponseSeeOther(safe_next(request, reverse("disputes:handoff_list")))
    return render(
        request,
        "disputes/collections/handoff_new.html",
        {
            "invoice": invoice,
            "form": form,
            "next": safe_next(request, ""),
            "open_handoff": CollectionsHandoff.objects.filter(
                invoice=invoice, status=CollectionsHandoff.Status.OPEN
            ).first(),
        },
    )


@require_POST
@collections_view(act="can_hand_off")
def handoff_close(request: HttpRequest, pk: int) -> HttpResponse:
    handoff = CollectionsHandoff.objects.select_related("invoice").filter(pk=pk).first()
    if handoff is None:
        raise Http404("No such hand-off.")
    form = HandoffCloseForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        svc.handoff_close(handoff=handoff, user=request.user, note=note)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Hand-off of {handoff.invoice.number} closed.")
    return HttpResponseSeeOther(safe_next(request, reverse("disputes:handoff_list")))


# --- client statement and collections profile -------------------------------------------------------------


def _client_or_404(client_id: int) -> Client:
    client = Client.objects.filter(pk=client_id).first()
    if client is None:
        raise Http404("No such client.")
    return client


@require_GET
@collections_view()
def client_statement(request: HttpRequest, client_id: int) -> HttpResponse:
    client = sel.statement_client(client_id)  # with its collections profile: one query for both
    if client is None:
        raise Http404("No such client.")
    today = timezone.localdate()
    form = StatementForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    as_of = data.get("as_of") or today
    since = data.get("since") or (as_of - datetime.timedelta(days=180))
    if not form.is_bound:
        form = StatementForm(initial={"as_of": as_of, "since": since})
    statement = sel.client_statement(client=client, as_of=as_of, since=since)
    profile = statement.profile
    profile_form = CollectionsProfileForm(
        initial={
            "in_payment_plan": bool(profile and profile.in_payment_plan),
            "payment_plan_note": profile.payment_plan_note if profile else "",
            "dunning_offsets": ", ".join(map(str, profile.dunning_offsets))
            if profile and profile.dunning_offsets
            else "",
        }
    )
    return render(
        request,
        "disputes/collections/statement.html",
        {
            "statement": statement,
            "form": form,
            "profile_form": profile_form,
            "default_offsets": sel.default_offsets(),
            "access": _access(request),
            "here": request.get_full_path(),
        },
    )


@require_POST
@collections_view(act="can_edit_profile")
def collections_profile(request: HttpRequest, client_id: int) -> HttpResponse:
    client = _client_or_404(client_id)
    form = CollectionsProfileForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    else:
        data = form.cleaned_data
        try:
            profile = svc.collections_profile_update(
                client=client,
                user=request.user,
                in_payment_plan=data["in_payment_plan"],
                payment_plan_note=data["payment_plan_note"],
                dunning_offsets=data["dunning_offsets"],
                reason=data["reason"],
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            plan = "in a payment plan (no reminders)" if profile.in_payment_plan else "not in a payment plan"
            offsets = ", ".join(map(str, sel.offsets_for(profile)))
            messages.success(request, f"{client.legal_name}: {plan}; reminders at +{offsets} days after due.")
    return HttpResponseSeeOther(safe_next(request, reverse("disputes:client_statement", args=[client.pk])))
