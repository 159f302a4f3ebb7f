"""The delivery log of an issued invoice, and resend.

A panel of the invoice page (templates/billing/invoice_detail.html): `{% delivery_panel invoice %}`.
It loads its own data in one query and renders its own template.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

from billing.models import DeliveryAttempt
from billing.services.delivery import DELIVERABLE
from kernel.roles import FINANCE_ROLES, cached_user_roles

register = template.Library()


@register.simple_tag(takes_context=True)
def delivery_panel(context: Any, invoice: Any) -> str:
    if not invoice.number:
        return ""
    request = context.get("request")
    user = getattr(request, "user", None)
    attempts = list(
        DeliveryAttempt.objects.filter(invoice_id=invoice.pk).select_related("triggered_by").order_by("-attempted_at")
    )
    # kernel.roles.is_finance on the request's memoised roles (the page asked for them already).
    can_resend = invoice.status in DELIVERABLE and user is not None and (
        bool(getattr(user, "is_superuser", False)) or bool(cached_user_roles(user) & FINANCE_ROLES)
    )
    return render_to_string(
        "billing/_delivery_panel.html",
        {
            "invoice": invoice,
            "attempts": attempts,
            "can_resend": can_resend,
            "recipients": _recipients(invoice.client),
            "here": request.get_full_path() if request else "",
        },
        request=request,
    )


def _recipients(client: Any) -> list[str]:
    """Who a (re)send reaches, per the client's delivery channel."""
    if client.delivery_channel == "peppol":
        return [f"Peppol {client.peppol_id}"]
    if client.delivery_channel == "portal":
        return ["the customer portal"]
    return client.billing_email_list
