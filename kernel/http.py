"""HTTP answers the portal's views share."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: the browser (and htmx) fetch the target with GET after a POST."""

    status_code = 303


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    """403 with the reason on the portal's "not for you" page (before any service runs)."""
    return render(request, "billing/forbidden.html", {"reason": reason}, status=403)
