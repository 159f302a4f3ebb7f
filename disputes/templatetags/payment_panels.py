"""Payments of an invoice, its balance, and recording a payment.

A panel of the invoice page (templates/billing/invoice_detail.html): `{% payment_panel invoice %}`.
It loads its own data in a fixed number of queries (two) and renders its own template.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

from billing.models import Invoice
from billing.services.payments import PAYABLE
from disputes.selectors import payments as selectors
from kernel.roles import FINANCE_ROLES, cached_user_roles

register = template.Library()


@register.simple_tag(takes_context=True)
def payment_panel(context: Any, invoice: Any) -> str:
    if not invoice.number or invoice.kind != Invoice.Kind.INVOICE:
        return ""
    request = context.get("request")
    user = getattr(request, "user", None)
    can_record = (
        user is not None
        and invoice.status in PAYABLE
        and invoice.balance > 0
        and (user.is_superuser or bool(cached_user_roles(user) & FINANCE_ROLES))
    )
    return render_to_string(
        "disputes/payments/_payment_panel.html",
        {
            "invoice": invoice,
            "payments": selectors.invoice_payments(invoice),
            "unapplied": selectors.invoice_open_payment_exceptions(invoice),
            "can_record": can_record,
            "here": request.get_full_path() if request else "",
        },
        request=request,
    )
