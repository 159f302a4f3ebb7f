"""HTTP answers the portal's views share."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: the browser (and htmx) fetch the target with GET after a POST."""

    status_code = 303


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    """403 with the reason on the portal's "not for you" page (before any service runs)."""
    return render(request, "billing/forbidden.html", {"reason": reason}, status=403)


def screen_url(name: str, params: dict | None = None) -> str | None:
    """URL of a portal screen by its URL name, or None while that screen does not exist yet."""
    try:
        url = reverse(name)
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode(params)}" if params else url


def safe_next(request: HttpRequest, default: str) -> str:
    """The `next` target of a form or link when it stays on this site (no open redirect), else `default`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
