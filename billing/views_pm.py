"""A project manager's read-only view of the invoices of their projects: the list and each invoice.

What was billed of their projects' work (lines, hours, entries, taxes, status, history) —
no action, no document download: the invoice is finance's. Another project's invoice is a 403.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing import selectors
from billing.models import Invoice, InvoiceException
from kernel.http import forbidden
from kernel.roles import PROJECT_MANAGER, cached_user_roles


def _is_pm(request: HttpRequest) -> bool:
    return request.user.is_superuser or PROJECT_MANAGER in cached_user_roles(request.user)


@require_GET
@login_required
def pm_invoice_list(request: HttpRequest) -> HttpResponse:
    if not _is_pm(request):
        return forbidden(request, "This list shows a project manager the invoices of their projects.")
    status = request.GET.get("status", "")
    invoices, truncated = selectors.pm_invoice_list(request.user, status=status)
    return render(
        request,
        "billing/pm_invoice_list.html",
        {"invoices": invoices, "truncated": truncated, "status": status, "statuses": Invoice.Status.choices},
    )


@require_GET
@login_required
def pm_invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    if not _is_pm(request):
        return forbidden(request, "This page shows a project manager an invoice of their projects.")
    if not Invoice.objects.filter(pk=pk).exists():
        raise Http404("No such invoice.")
    mine = selectors.invoices_of_managed_projects(request.user).filter(pk=pk).exists()
    if not (mine or request.user.is_superuser):
        return forbidden(request, "This invoice bills another manager's projects; you read the invoices of yours.")
    invoice = selectors.get_invoice(pk)
    return render(
        request,
        "billing/pm_invoice_detail.html",
        {
            "invoice": invoice,
            "line_groups": selectors.invoice_line_groups(invoice),
            "taxes": list(invoice.taxes.all()),
            "open_exceptions": [e for e in invoice.exceptions.all() if e.state == InvoiceException.State.OPEN],
            "timeline": selectors.invoice_timeline(invoice),
        },
    )
