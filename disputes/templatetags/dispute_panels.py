"""Disputes and credit notes of an invoice (and the actions to open one).

A panel of the invoice page (templates/billing/invoice_detail.html): `{% dispute_panel invoice %}`.
It loads its own data in a fixed number of queries and renders its own template.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

register = template.Library()


@register.simple_tag(takes_context=True)
def dispute_panel(context: Any, invoice: Any) -> str:
    from disputes.selectors.disputes import invoice_dispute_panel
    from disputes.views.disputes import access_of

    request = context.get("request")
    if request is None or invoice is None:
        return ""
    if invoice.kind != "invoice" or not invoice.number:
        return ""  # drafts and credit notes have no disputes; a credit note links its invoice in the header
    panel = invoice_dispute_panel(invoice)
    return render_to_string(
        "disputes/_dispute_panel.html",
        {"panel": panel, "invoice": invoice, "access": access_of(request), "request": request},
        request=request,
    )
