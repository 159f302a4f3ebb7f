"""Payment screens: all payments and unapplied cash, record a payment, apply cash, close a payment exception.

Thin views: reads from `disputes.selectors.payments`, changes through `billing.services.payments`
(whose `ApplicationError.message` is shown as it is). Finance analysts and controllers act;
collections and auditors read. The services check the role again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.models import InvoiceException, Payment
from billing.services.payments import find_invoice, payment_apply, payment_exception_resolve, payment_record
from disputes.forms.payments import PaymentApplyForm, PaymentFilterForm, PaymentForm, ResolveForm
from disputes.selectors import payments as selectors
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.http import forbidden as _forbidden
from kernel.roles import AUDITOR, COLLECTIONS, FINANCE_ROLES
from kernel.roles import cached_user_roles as memoised_user_roles

ACT_ROLES = FINANCE_ROLES
READ_ROLES = ACT_ROLES | {COLLECTIONS, AUDITOR}


def can_act(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_superuser) or bool(memoised_user_roles(user) & ACT_ROLES)


def payments_view(*, act: bool = False) -> Callable:
    """Login required; finance acts, collections and auditors read; anyone else gets 403."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            roles = memoised_user_roles(request.user)
            if act and not can_act(request):
                return _forbidden(request, "Only finance analysts and controllers record and apply payments; "
                                           "collections and auditors read them.")
            if not (request.user.is_superuser or roles & READ_ROLES):
                return _forbidden(request, "The payment screens are for finance, collections and auditors.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@require_GET
@payments_view()
def payment_list(request: HttpRequest) -> HttpResponse:
    form = PaymentFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    return render(request, "disputes/payments/payment_list.html", {
        "listing": selectors.payment_list(filters),
        "filter_form": form,
        "can_act": can_act(request),
        "here": request.get_full_path(),
    })


def _outcome_message(payment: Payment) -> tuple[int, str]:
    """What happened, in a finance person's words (the payment's exceptions are prefetched)."""
    payment = selectors.get_payment(payment.pk)
    what = f"Payment {payment.external_reference} of {payment.amount} {payment.currency}"
    if payment.invoice_id:
        invoice = payment.invoice
        text = f"{what} applied to {invoice.number}; balance now {invoice.balance} {invoice.currency}."
        excess = Payment.objects.filter(external_reference__startswith=payment.external_reference + "~",
                                        invoice__isnull=True).first()
        if excess is not None:
            return messages.WARNING, f"{text} Excess of {excess.amount} {excess.currency} kept as unapplied cash."
        return messages.SUCCESS, text
    exception = selectors.open_payment_exception(payment)
    reason = f" ({exception.code}: {exception.message})" if exception else ""
    return messages.WARNING, f"{what} kept as unapplied cash{reason}."


@require_http_methods(["GET", "POST"])
@payments_view(act=True)
def payment_new(request: HttpRequest) -> HttpResponse:
    default_next = reverse("disputes:payment_list")
    if request.method == "POST":
        form = PaymentForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                payment = payment_record(
                    amount=data["amount"], currency=data["currency"], date=data["date"],
                    external_reference=data["external_reference"], source=Payment.Source.MANUAL,
                    user=request.user, invoice_reference=data["invoice_number"], note=data["note"],
                )
            except ApplicationError as exc:
                for name, errors in exc.field_errors.items():
                    target = "invoice_number" if name == "invoice" else name
                    if target in form.fields:
                        for error in errors:
                            form.add_error(target, error)
                messages.error(request, exc.message)
            else:
                level, text = _outcome_message(payment)
                messages.add_message(request, level, text)
                return HttpResponseSeeOther(safe_next(request, default_next))
    else:
        initial = {}
        invoice = find_invoice(request.GET.get("invoice", ""))
        if invoice is not None:
            initial = {"invoice_number": invoice.number, "currency": invoice.currency}
            if invoice.balance > 0:
                initial["amount"] = invoice.balance
        form = PaymentForm(initial=initial)
    return render(request, "disputes/payments/payment_form.html", {
        "form": form, "next": safe_next(request, ""), "can_act": True,
    })


@require_http_methods(["GET", "POST"])
@payments_view(act=True)
def payment_apply_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        payment = selectors.get_payment(pk)
    except Payment.DoesNotExist as exc:
        raise Http404("No such payment.") from exc
    if request.method == "POST":
        form = PaymentApplyForm(request.POST)
        if form.is_valid():
            number = form.cleaned_data["invoice_number"]
            invoice = find_invoice(number)
            if invoice is None:
                form.add_error("invoice_number", "No invoice with this number.")
                messages.error(request, f"No invoice {number}.")
            else:
                try:
                    payment = payment_apply(payment=payment, invoice=invoice, user=request.user,
                                            reason=form.cleaned_data["reason"])
                except ApplicationError as exc:
                    messages.error(request, exc.message)
                else:
                    messages.success(request, f"Payment {payment.external_reference} of {payment.amount} "
                                              f"{payment.currency} applied to {invoice.number}.")
                    return HttpResponseSeeOther(safe_next(request, reverse("disputes:payment_list")))
    else:
        form = PaymentApplyForm(initial={"invoice_number": request.GET.get("invoice", "")[:100]})
    return render(request, "disputes/payments/payment_apply.html", {
        "payment": payment,
        "exception": selectors.open_payment_exception(payment),
        "candidates": selectors.apply_candidates(payment) if not payment.invoice_id else [],
        "form": form,
        "can_act": True,
    })


@require_POST
@payments_view(act=True)
def payment_exception_resolve_view(request: HttpRequest, pk: int) -> HttpResponse:
    exception = InvoiceException.objects.filter(pk=pk, payment__isnull=False).first()
    if exception is None:
        raise Http404("No such payment exception.")
    form = ResolveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A reason is required to close a payment exception.")
    else:
        try:
            payment_exception_resolve(exception=exception, user=request.user, reason=form.cleaned_data["reason"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{exception.code} closed: {form.cleaned_data['reason']}")
    return HttpResponseSeeOther(safe_next(request, reverse("disputes:payment_list")))
