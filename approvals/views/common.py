"""Helpers shared by the approval screens (and billing's work screens): pages, ages, names, 403, htmx rendering."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from kernel.errors import ApplicationError
from kernel.roles import AUDITOR, BILLING_ADMIN, FINANCE_ROLES
from kernel.roles import cached_user_roles as memoised_user_roles

#: Roles that read every approval and every piece of work (no change).
READ_ALL_ROLES = FINANCE_ROLES | {AUDITOR, BILLING_ADMIN}


def screen_roles(request: HttpRequest) -> frozenset[str]:
    return memoised_user_roles(request.user)


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    return render(request, "approvals/forbidden.html", {"reason": reason}, status=403)


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def render_screen(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Full page; for htmx (after an inline action) the swapped region shows the messages itself."""
    context = {
        **context,
        "inline_messages": is_htmx(request),
        "here": request.get_full_path(),
        "ap_roles": screen_roles(request),
    }
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def form_errors(form: Any, exc: ApplicationError) -> None:
    placed = False
    for name, errors in exc.field_errors.items():
        if name in form.fields:
            for error in errors:
                form.add_error(name, error)
            placed = True
    if not placed:
        form.add_error(None, exc.message)
