"""Billing screens for finance: billing runs, the exception queue, invoice review and detail.

Thin views: reads come from `billing.selectors`, every change goes through a
service in `billing.services`, whose `ApplicationError.message` is shown to the
user as it is. Roles are checked here (to answer 403 early and to show only the
actions a user may take) and again by the services.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import selectors
from billing.forms import BillingRunForm, InvoiceFilterForm, ReasonForm
from billing.models import BillingRun, DeliveryAttempt, Invoice, InvoiceDocument, InvoiceException
from billing.services.billing_engine import Code
from billing.services.billing_run import billing_run_resume, billing_run_start, billing_runs_interrupt_stale
from billing.services.delivery import invoice_deliver
from billing.services.documents import PROFORMA_STATUSES, invoice_document, invoice_proforma_pdf
from billing.services.invoices import (
    invoice_approve,
    invoice_cancel,
    invoice_override,
    invoice_reject,
    invoice_revalidate,
    invoice_write_down_to_cap,
)
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, require_roles, safe_next, stored_file_response
from kernel.http import forbidden as _forbidden
from kernel.params import int_param
from kernel.roles import (
    AUDITOR,
    BILLING_ADMIN,
    COLLECTIONS,
    FINANCE_CONTROLLER,
    FINANCE_ROLES,
)
from kernel.roles import cached_user_roles as memoised_user_roles

READ_ROLES = (*sorted(FINANCE_ROLES), AUDITOR)
#: Collections follow issued invoices (aging, dunning, disputes): they read the invoice page and its documents.
INVOICE_READ_ROLES = (*READ_ROLES, COLLECTIONS)
ACT_ROLES = FINANCE_ROLES
Status = Invoice.Status


# --- access ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What the current user may do on these screens (the services check again)."""

    can_act: bool
    is_controller: bool
    read_only: bool
    user_id: int


def _access(request: HttpRequest) -> Access:
    cached = getattr(request, "_billing_access", None)
    if cached is None:
        roles = memoised_user_roles(request.user)  # one query, shared with the navigation
        superuser = bool(getattr(request.user, "is_superuser", False))
        can_act = superuser or bool(roles & set(ACT_ROLES))
        cached = Access(
            can_act=can_act,
            is_controller=superuser or FINANCE_CONTROLLER in roles,
            read_only=not can_act,
            user_id=request.user.pk,
        )
        request._billing_access = cached
    return cached


def finance_view(*, act: bool = False, readers: tuple[str, ...] = READ_ROLES) -> Callable:
    """Login required; finance analysts and controllers act, `readers` (auditors …) read; anyone else gets 403."""

    if act:
        return require_roles(ACT_ROLES, "Only finance analysts and controllers can do this; "
                                        "auditors and other roles have read access at most.")
    return require_roles(readers, "The billing screens are for finance and auditors.")


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _vary_on_htmx(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- billing runs ---------------------------------------------------------------------------------


def _enqueue_billing_run(*, form: BillingRunForm, user) -> BillingRun:
    """Queue a run through the service the API uses too (it enqueues the task after commit)."""
    data = form.cleaned_data
    return billing_run_start(
        period_start=data["period_start"],
        period_end=data["period_end"],
        run_date=data["run_date"],
        contract_codes=data["contract_codes"],
        user=user,
    )


@require_http_methods(["GET", "POST"])
@finance_view()
def run_list(request: HttpRequest) -> HttpResponse:
    """Start a billing run; the recent runs below."""
    access = _access(request)
    if request.method == "POST":
        if not access.can_act:
            return _forbidden(request, "Only finance analysts and controllers start billing runs.")
        form = BillingRunForm(request.POST)
        if form.is_valid():
            billing_run = _enqueue_billing_run(form=form, user=request.user)
            scope = ", ".join(billing_run.contract_codes) or "all contracts"
            messages.success(
                request,
                f"Billing run {billing_run.pk} started for {billing_run.period_start:%B %Y} ({scope}).",
            )
            return redirect("billing:run_detail", pk=billing_run.pk)
    else:
        form = BillingRunForm()
        billing_runs_interrupt_stale(noticed="runs page")
    return render(
        request,
        "billing/run_list.html",
        {"form": form, "runs": selectors.recent_billing_runs(), "access": access},
    )


def _run_context(billing_run: BillingRun) -> dict:
    finished = billing_run.is_ended
    percent = (
        round(100 * billing_run.contracts_done / billing_run.contracts_total) if billing_run.contracts_total else 0
    )
    return {
        "run": billing_run,
        "finished": finished,
        "duration": _duration(billing_run),
        "percent": 100 if billing_run.status == BillingRun.Status.DONE else percent,
        "summary": selectors.billing_run_summary(billing_run) if finished else None,
        "resumed_by": selectors.run_resumed_by(billing_run),
    }


def _duration(billing_run: BillingRun) -> str:
    if not (billing_run.started_at and billing_run.finished_at):
        return ""
    seconds = (billing_run.finished_at - billing_run.started_at).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _get_run(pk: int) -> BillingRun:
    """The run as it really is: one whose worker died (no heartbeat) is shown interrupted at once."""
    if BillingRun.objects.filter(pk=pk, status=BillingRun.Status.RUNNING).exists():
        # Not as the viewer: noticing a dead worker is no one's decision (auditors change nothing).
        billing_runs_interrupt_stale(run_ids=[pk], noticed="run page")
    try:
        return selectors.get_billing_run(pk)
    except BillingRun.DoesNotExist as exc:
        raise Http404("No such billing run.") from exc


@require_GET
@finance_view()
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "billing/run_detail.html", {**_run_context(_get_run(pk)), "access": _access(request)})


@require_GET
@finance_view()
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled part of the run page; stops polling (no hx-trigger) once the run has ended."""
    return _vary_on_htmx(
        render(request, "billing/_run_status.html", {**_run_context(_get_run(pk)), "access": _access(request)})
    )


@require_POST
@finance_view(act=True)
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Resume an interrupted run: a new run bills what it left (the service checks role and state)."""
    billing_run = _get_run(pk)
    try:
        resuming = billing_run_resume(billing_run=billing_run, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseSeeOther(reverse("billing:run_detail", args=[pk]))
    messages.success(request, f"Billing run {resuming.pk} resumes run {pk}: it bills what run {pk} left.")
    return HttpResponseSeeOther(reverse("billing:run_detail", args=[resuming.pk]))


# --- exception queue ------------------------------------------------------------------------------


@require_GET
@finance_view()
def exception_queue(request: HttpRequest) -> HttpResponse:
    code = request.GET.get("code", "").strip().upper() or None
    queue = selectors.exception_queue(code=code)
    context = {
        "queue": queue,
        "follow_ups": selectors.follow_up_queue(
            code=code if code in InvoiceException.FOLLOW_UP_CODES else None
        ),
        "code": code,
        "access": _access(request),
        "here": request.get_full_path(),
        "cap_code": Code.CAP_EXCEEDED,
    }
    if _is_htmx(request):
        # After an inline action (htmx follows the redirect): the queue region with its messages.
        return _vary_on_htmx(render(request, "billing/_exception_queue.html", {**context, "inline_messages": True}))
    return _vary_on_htmx(render(request, "billing/exception_queue.html", context))


# --- invoice review and detail --------------------------------------------------------------------


@require_GET
@finance_view()
def invoice_list(request: HttpRequest) -> HttpResponse:
    run_id = int_param(request.GET, "run")
    filter_form = InvoiceFilterForm(request.GET or None)
    filters = filter_form.cleaned_data if filter_form.is_valid() else {}
    queue = selectors.invoice_queue(
        status=request.GET.get("status"),
        run_id=run_id,
        filters=filters,
        sort=filters.get("sort") or "oldest",
    )
    return render(
        request,
        "billing/invoice_list.html",
        {
            "queue": queue,
            "run_id": run_id or "",
            "access": _access(request),
            "filter_form": filter_form,
            "priority": request.GET.get("sort") == "priority",  # the cash-impact column
        },
    )


def _available_actions(invoice: Invoice, access: Access) -> dict[str, bool]:
    """What to offer; each service checks status, role and segregation of duties again."""
    editable = not invoice.number and invoice.status in Invoice.EDITABLE_STATUSES
    open_codes = {e.code for e in invoice.exceptions.all() if e.state == InvoiceException.State.OPEN}
    is_invoice = invoice.kind == Invoice.Kind.INVOICE
    return {
        "revalidate": access.can_act and is_invoice and invoice.status in (Status.DRAFT, Status.EXCEPTION),
        "override": access.is_controller and invoice.status == Status.EXCEPTION,
        "write_down": access.is_controller and editable and Code.CAP_EXCEEDED in open_codes,
        "approve": access.can_act and invoice.status == Status.PENDING_APPROVAL,
        "reject": access.can_act and invoice.status == Status.PENDING_APPROVAL,
        "cancel": access.can_act and editable and invoice.status in (Status.DRAFT, Status.EXCEPTION),
    }


@require_GET
@finance_view(readers=INVOICE_READ_ROLES)
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        invoice = selectors.get_invoice(pk)
    except Invoice.DoesNotExist as exc:
        raise Http404("No such invoice.") from exc
    access = _access(request)
    actions = _available_actions(invoice, access)
    exceptions = list(invoice.exceptions.all())
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "invoice": invoice,
            "line_groups": selectors.invoice_line_groups(invoice),
            "taxes": list(invoice.taxes.all()),
            "open_exceptions": [e for e in exceptions if e.state == InvoiceException.State.OPEN],
            "closed_exceptions": [e for e in exceptions if e.state != InvoiceException.State.OPEN],
            "timeline": selectors.invoice_timeline(invoice),
            "actions": actions,
            "any_action": any(actions.values()),
            "proforma": not invoice.number and invoice.status in PROFORMA_STATUSES,
            "prepared_by_me": bool(invoice.prepared_by_id and invoice.prepared_by_id == access.user_id),
            "access": access,
            "here": request.get_full_path(),
        },
    )


# --- issued documents (GET) -----------------------------------------------------------------------


def _document_download(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """The stored bytes of an issued document (rendered and stored on the first download)."""
    invoice = Invoice.objects.filter(pk=pk).only("id", "number").first()
    if invoice is None or not invoice.number:
        raise Http404("Documents exist for numbered (approved) invoices only.")
    try:
        document = invoice_document(invoice=invoice, kind=kind, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseSeeOther(reverse("billing:invoice_detail", args=[pk]))
    return stored_file_response(
        document.content,
        content_type=document.content_type,
        filename=document.filename,
        sha256=document.sha256,
        attachment=kind != InvoiceDocument.Kind.PDF,
    )


@require_GET
@finance_view(readers=INVOICE_READ_ROLES)
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _document_download(request, pk, InvoiceDocument.Kind.PDF)


@require_GET
@finance_view(readers=INVOICE_READ_ROLES)
def invoice_ubl(request: HttpRequest, pk: int) -> HttpResponse:
    return _document_download(request, pk, InvoiceDocument.Kind.UBL)


@require_GET
@finance_view(readers=INVOICE_READ_ROLES)
def invoice_proforma(request: HttpRequest, pk: int) -> HttpResponse:
    """The proforma preview of an unnumbered invoice: rendered now, never stored or sent."""
    invoice = Invoice.objects.filter(pk=pk).first()
    if invoice is None:
        raise Http404("No such invoice.")
    try:
        data, filename = invoice_proforma_pdf(invoice=invoice)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseSeeOther(reverse("billing:invoice_detail", args=[pk]))
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(False, filename)
    response["Cache-Control"] = "private, no-store"
    return response


# --- invoice actions (POST) -----------------------------------------------------------------------


def _revalidate(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    label = invoice.display_number
    invoice = invoice_revalidate(invoice=invoice, user=request.user)
    if invoice.status == Status.PENDING_APPROVAL:
        messages.success(request, f"{label} revalidated: no blocking exception; now pending approval.")
    elif invoice.status == Status.EXCEPTION:
        codes = ", ".join(
            sorted(set(invoice.exceptions.filter(state=InvoiceException.State.OPEN, severity="blocking")
                       .values_list("code", flat=True)))
        )
        messages.warning(request, f"{label} revalidated: still blocked by {codes}.")
    elif invoice.status == Status.CANCELLED:
        messages.info(request, f"{label} revalidated: nothing left to bill, so the draft was cancelled.")
    else:
        messages.success(request, f"{label} revalidated; now {invoice.get_status_display().lower()}.")


def _override(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    invoice = invoice_override(invoice=invoice, user=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, f"{invoice.display_number} overridden; now pending approval. The reason is kept.")


def _write_down(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    invoice = invoice_write_down_to_cap(invoice=invoice, user=request.user, reason=form.cleaned_data["reason"])
    messages.success(
        request,
        f"{invoice.display_number} written down to the contract cap; new total {invoice.total:,} {invoice.currency}, "
        f"now {invoice.get_status_display().lower()}.",
    )


def _approve(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    invoice = invoice_approve(invoice=invoice, user=request.user, comment=form.cleaned_data["comment"])
    if invoice.status == Status.PENDING_APPROVAL:
        messages.success(
            request, f"Your approval of {invoice.display_number} is recorded; it now waits for the next approval step."
        )
    elif invoice.status == Status.POSTED:
        messages.success(request, f"Invoice {invoice.number} approved and posted (no ERP configured).")
    else:
        messages.success(request, f"Invoice {invoice.number} approved; posting to ERP.")


def _reject(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    invoice = invoice_reject(invoice=invoice, user=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, f"{invoice.display_number} rejected and sent back to draft.")


def _cancel(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    invoice = invoice_cancel(invoice=invoice, user=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, f"{invoice.display_number} cancelled; its items can be billed again.")


def _resend(invoice: Invoice, request: HttpRequest, form: ReasonForm) -> None:
    reason = form.cleaned_data["reason"] or "Resent from the invoice page"
    attempt = invoice_deliver(invoice=invoice, user=request.user, reason=reason)
    if attempt.result == DeliveryAttempt.Result.SENT:
        verb = {"peppol": "handed to the Peppol access point for", "portal": "published to"}.get(attempt.channel,
                                                                                            "e-mailed to")
        what = attempt.to.removeprefix("Peppol ") if attempt.channel == "peppol" else attempt.to
        messages.success(request, f"{invoice.number} {verb} {what}.")
    else:
        messages.error(request, f"{invoice.number} could not be sent: {attempt.error} It is in the exception queue.")


ACTIONS: dict[str, tuple[Callable[[Invoice, HttpRequest, ReasonForm], None], bool]] = {
    # action: (handler, controllers only)
    "revalidate": (_revalidate, False),
    "override": (_override, True),
    "write-down": (_write_down, True),
    "approve": (_approve, False),
    "reject": (_reject, False),
    "cancel": (_cancel, False),
    "resend": (_resend, False),
}


@require_POST
@finance_view(act=True)
def invoice_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Run one invoice service; its refusal is shown as an error message. Redirects (303) to `next`."""
    handler, controllers_only = ACTIONS[action]
    if controllers_only and not _access(request).is_controller:
        return _forbidden(request, "Only a finance controller may override or write down an invoice.")
    try:
        invoice = Invoice.objects.get(pk=pk)
    except Invoice.DoesNotExist as exc:
        raise Http404("No such invoice.") from exc
    form = ReasonForm(request.POST)
    if not form.is_valid():  # fields are optional: only an over-long text gets here
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    else:
        try:
            handler(invoice, request, form)
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return HttpResponseSeeOther(safe_next(request, reverse("billing:invoice_detail", args=[pk])))



# --- purchase orders (docs/rules/billing.md §13) --------------------------------------------------


@require_GET
@finance_view(readers=(*READ_ROLES, BILLING_ADMIN))
def purchase_order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A PO's amount, invoiced, credited and remaining balance, and the invoices behind it."""
    page = selectors.purchase_order_page(pk)
    if page is None:
        raise Http404("No such purchase order.")
    return render(request, "billing/purchase_order_detail.html", {**page, "access": _access(request)})
