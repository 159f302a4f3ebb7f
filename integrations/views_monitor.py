"""The integration monitor: is the ERP getting its documents, and is anything stuck?

Finance analysts and controllers, billing admins and auditors read it; finance (analysts
and controllers) retries dead letters, through `outbox_retry_dead`, which checks again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from integrations import selectors
from integrations.models import OutboxMessage
from integrations.services.outbox import can_retry_dead_letters, outbox_retry_dead
from kernel.errors import ApplicationError
from kernel.http import forbidden as _forbidden
from kernel.roles import (
    AUDITOR,
    BILLING_ADMIN,
    FINANCE_ROLES,
    has_any_role,
    is_finance,
)

READ_ROLES = (*sorted(FINANCE_ROLES), BILLING_ADMIN, AUDITOR)


def monitor_view(*, retry: bool = False) -> Callable:
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if retry and not can_retry_dead_letters(request.user):
                return _forbidden(request, "Only finance analysts and controllers retry dead letters.")
            if not (request.user.is_superuser or has_any_role(request.user, READ_ROLES)):
                return _forbidden(request, "The integration monitor is for finance, billing admins and auditors.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _imports_url() -> str | None:
    try:
        return reverse("integrations:import_list")
    except NoReverseMatch:
        return None


@require_GET
@monitor_view()
def monitor(request: HttpRequest) -> HttpResponse:
    context = {
        "summary": selectors.outbox_summary(),
        "dead_letters": selectors.dead_letters(),
        "failures": selectors.recent_failures(),
        "circuits": selectors.circuits(),
        "heartbeat": selectors.worker_heartbeat(),
        "webhooks": selectors.recent_webhook_events(),
        "imports": selectors.recent_imports(),
        "can_retry": can_retry_dead_letters(request.user),
        "imports_url": _imports_url(),
        "monitor_url": reverse("integrations:monitor"),
        "can_import": is_finance(request.user),
    }
    return render(request, "integrations/monitor.html", context)


@require_POST
@monitor_view(retry=True)
def outbox_retry(request: HttpRequest, pk: int) -> HttpResponse:
    message = OutboxMessage.objects.filter(pk=pk).first()
    if message is None:
        raise Http404("No such outbox message.")
    try:
        outbox_retry_dead(message=message, user=request.user, reason=request.POST.get("reason", ""))
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{message.idempotency_key} queued again; the ERP is asked first whether it "
                                  "has it already.")
    return redirect("integrations:monitor")
