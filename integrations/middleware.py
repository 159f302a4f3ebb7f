"""A correlation id on every request, response and log line; one error shape for the API's own 404/500.

The id comes from the caller's `X-Correlation-ID` header when it is well formed (so a
middleware/iPaaS trace carries through), else a new one is made. It is kept in a context
variable for the request's duration, so any log line written while serving it names it
(`CorrelationIdFilter`), and services that store it (outbox messages, imports, webhook events)
read it with `current_correlation_id()`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "X-Correlation-ID"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$")
_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

API_PREFIX = "/api/"


def current_correlation_id() -> str:
    """The correlation id of the request (or task) being served; empty outside one."""
    return _correlation_id.get()


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def correlation_id_from(value: str | None) -> str:
    """The caller's id when well formed (8–64 of letters, digits, `.`, `_`, `:`, `-`), else a new one."""
    if value and _WELL_FORMED.match(value):
        return value
    return new_correlation_id()


class correlation_scope:  # lower case: used like a function, `with correlation_scope(cid):`
    """Bind a correlation id for a block outside a request (a task that carries the id of its origin)."""

    def __init__(self, value: str | None = None):
        self.value = correlation_id_from(value)
        self._token: contextvars.Token | None = None

    def __enter__(self) -> str:
        self._token = _correlation_id.set(self.value)
        return self.value

    def __exit__(self, *exc_info) -> None:
        if self._token is not None:
            _correlation_id.reset(self._token)


class CorrelationIdFilter(logging.Filter):
    """Adds `record.correlation_id` ('-' outside a request) so formatters can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = _correlation_id.get() or "-"
        return True


def _api_error(status: int, code: str, message: str) -> HttpResponse:
    body = {"code": code, "message": message, "field_errors": {}}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


class CorrelationIdMiddleware:
    """Put the correlation id on the request, in the logging context and on the response.

    Under /api/ it also turns Django's HTML 404 and 500 pages (an unknown URL, a crash outside
    DRF) into the API's error shape, so API clients only ever parse one kind of error.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = correlation_id_from(request.headers.get(HEADER))
        request.correlation_id = correlation_id
        token = _correlation_id.set(correlation_id)
        try:
            response = self.get_response(request)
            if request.path.startswith(API_PREFIX) and response.status_code in (404, 500):
                content_type = response.get("Content-Type", "")
                if not content_type.startswith("application/json"):
                    if response.status_code == 404:
                        response = _api_error(404, "not_found", "No such resource.")
                    else:
                        response = _api_error(
                            500, "server_error", f"Unexpected error; quote correlation id {correlation_id}."
                        )
            response[HEADER] = correlation_id
            return response
        finally:
            _correlation_id.reset(token)


# --- background tasks: the id of the request that queued a task follows it into the worker -------------

TASK_KEY = "correlation_id"
_task_tokens: list[contextvars.Token] = []


def _on_enqueue(sender, task: dict, **kwargs) -> None:
    correlation_id = _correlation_id.get()
    if correlation_id:
        task[TASK_KEY] = correlation_id


def _on_execute(sender, task: dict, **kwargs) -> None:
    value = task.get(TASK_KEY) or f"task-{str(task.get('id', ''))[:12] or new_correlation_id()}"
    _task_tokens.append(_correlation_id.set(value))


def _on_executed(sender, task: dict, **kwargs) -> None:
    if _task_tokens:
        _correlation_id.reset(_task_tokens.pop())


def connect_task_signals() -> None:
    """Carry the correlation id from the enqueuing request into django-q2 tasks (call from AppConfig.ready)."""
    from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

    pre_enqueue.connect(_on_enqueue, dispatch_uid="integrations.correlation.enqueue")
    pre_execute.connect(_on_execute, dispatch_uid="integrations.correlation.execute")
    post_execute_in_worker.connect(_on_executed, dispatch_uid="integrations.correlation.executed")
