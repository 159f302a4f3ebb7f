"""Query parameters: validated once, answered with 400 and the error shape — never a 500.

A number in a query string goes into the database, a date offset or a page; a value out of
range there (an id of 30 digits overflows SQLite's and PostgreSQL's 64-bit integers; 10**18 days
overflow a date) used to end as a 500. Two defences (docs/decisions/0036-csv-and-parameters.md):

- `QueryParameterGuardMiddleware` refuses, for every request, a query value that is an integer
  beyond the 64-bit range or that holds a NUL byte (PostgreSQL refuses those in text), so no
  view, form or django-filter filterset ever sees one;
- `int_param` parses an integer parameter with its bounds (ids, day counts), in the views.

Both raise `BadQueryParameter`, answered 400 as `{"code", "message", "field_errors"}` (JSON for
the API and for clients that ask for JSON, the same fields on an HTML page otherwise).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from kernel.errors import ApplicationError

#: The largest id a database row can have (signed 64-bit, BigAutoField).
MAX_ID = 2**63 - 1
#: What `int()` reads as a number (any Unicode digits: the guard must catch those too) ...
_INTEGER = re.compile(r"\s*[+-]?\d+\s*\Z")
#: ... and what an integer parameter may be: ASCII digits only.
_ASCII_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*\Z")


class BadQueryParameter(ApplicationError):
    code = "invalid_parameter"

    def __init__(self, name: str, message: str):
        super().__init__(f"Query parameter '{name}': {message}", field_errors={name: [message]})
        self.name = name


def int_param(query: Mapping[str, str], name: str, *, min_value: int = 1, max_value: int = MAX_ID) -> int | None:
    """The integer parameter `name` of `query` (None when absent or blank); BadQueryParameter when it is not
    a whole number between `min_value` and `max_value`."""
    raw = query.get(name)
    if raw is None or not raw.strip():
        return None
    if not _ASCII_INTEGER.match(raw):
        raise BadQueryParameter(name, "must be a whole number.")
    value = int(raw)
    if not min_value <= value <= max_value:
        raise BadQueryParameter(name, f"must be between {min_value} and {max_value}.")
    return value


def check_query(query: Mapping[str, list[str]] | object) -> None:
    """Refuses an integer beyond the 64-bit range or a NUL byte in any value of `query` (a QueryDict)."""
    for name, values in query.lists():
        for value in values:
            if "\x00" in value or "\x00" in name:
                raise BadQueryParameter(name.replace("\x00", ""), "must not contain NUL characters.")
            if _INTEGER.match(value) and abs(int(value)) > MAX_ID:
                raise BadQueryParameter(name, "number out of range.")


def wants_json(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def bad_request(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    """400 with the error shape: JSON for the API (and JSON clients), the portal's error page otherwise."""
    body = {"code": error.code, "message": error.message, "field_errors": error.field_errors}
    if wants_json(request):
        return JsonResponse(body, status=400)
    return render(request, "portal/bad_request.html", {"error": body}, status=400)


class QueryParameterGuardMiddleware:
    """Answers 400 for out-of-range integers or NUL bytes in the query string, and for any `BadQueryParameter`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_query(request.GET)
        except BadQueryParameter as error:
            return bad_request(request, error)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, BadQueryParameter):
            return bad_request(request, exception)
        return None
