"""Request size limits, checked on the `Content-Length` header before any byte of the body is read.

Django reads a body only when a view (or the CSRF check) touches `request.POST`,
`request.FILES` or `request.body`; this middleware answers first, so an oversized upload
is never read into memory or spooled to disk. Limits (settings):

- `UPLOAD_MAX_BYTES`: a multipart request (a file upload: SOW, receipts, signed change
  orders in admin, CSV import, dispute attachments), plus `UPLOAD_FORM_OVERHEAD_BYTES`
  for the form's other fields and boundaries; `UPLOAD_MAX_BYTES_BY_PATH` lowers it for
  path prefixes (the CSV import takes 5 MB).
- `DATA_UPLOAD_MAX_MEMORY_SIZE` (Django's own): any other body (forms, JSON API calls).

The answer is 413 with a sentence that says the limit: the API's error shape under
`/api/`, the portal's page elsewhere. The forms keep their own, finer checks.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

BODY_METHODS = {"POST", "PUT", "PATCH"}


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} kB"


def request_limit(request: HttpRequest) -> tuple[int | None, str]:
    """The largest body this request may carry, and what the limit is about."""
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type.startswith("multipart/"):
        limit = settings.UPLOAD_MAX_BYTES
        for prefix, size in getattr(settings, "UPLOAD_MAX_BYTES_BY_PATH", {}).items():
            if request.path.startswith(prefix):
                limit = min(limit, size)
        return limit + settings.UPLOAD_FORM_OVERHEAD_BYTES, f"A file may be at most {_mb(limit)}"
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "A request may carry at most " + _mb(
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    )


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in BODY_METHODS:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit, what = request_limit(request)
            if limit is not None and length > limit:
                return self.too_large(request, length, what)
        return self.get_response(request)

    @staticmethod
    def too_large(request: HttpRequest, length: int, what: str) -> HttpResponse:
        message = f"The upload is too large ({_mb(length)}). {what}; nothing was saved."
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"code": "request_too_large", "message": message, "field_errors": {}}, status=413
            )
        return render(request, "portal/request_too_large.html", {"message": message}, status=413)
