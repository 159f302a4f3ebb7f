"""HTTP answers the portal's views share."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme

from kernel.roles import cached_user_roles


class HttpResponseSeeOther(HttpResponseRedirect):
    """303: the browser (and htmx) fetch the target with GET after a POST."""

    status_code = 303


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    """403 with the reason on the portal's "not for you" page (before any service runs)."""
    return render(request, "billing/forbidden.html", {"reason": reason}, status=403)


def require_roles(roles: Iterable[str], message: str) -> Callable:
    """A view's role gate: login required; a superuser or a holder of one of `roles` passes, anyone else
    gets `forbidden(request, message)` (403). Per-object checks stay in the view and the services."""
    allowed = frozenset(roles)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            user = request.user
            if not (user.is_superuser or cached_user_roles(user) & allowed):
                return forbidden(request, message)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


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


def stored_file_response(
    content: bytes, *, content_type: str, filename: str, sha256: str, attachment: bool
) -> HttpResponse:
    """A stored, immutable document as sent: its bytes, its name, its hash as the ETag, never cached shared."""
    response = HttpResponse(bytes(content), content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(attachment, filename)
    response["ETag"] = f'"{sha256}"'
    response["Cache-Control"] = "private, no-cache"
    return response
