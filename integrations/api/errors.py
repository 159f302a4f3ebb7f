"""One error shape for every API error: `{"code", "message", "field_errors"}`.

DRF's own errors (validation, authentication, scopes, throttling, parsing), Django's Http404 and
PermissionDenied, and the services' `ApplicationError` family all map here. Unexpected
exceptions are logged (with the correlation id) and answered as a 500 in the same shape.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from integrations.middleware import current_correlation_id
from kernel.errors import ApplicationError, ConflictError, InvalidTransitionError, PermissionDeniedError

logger = logging.getLogger("integrations.api")


class ApiErrorSerializer(serializers.Serializer):
    """Schema of every error response."""

    code = serializers.CharField(help_text="Stable, machine-readable, e.g. not_authenticated, idempotency_key_reused.")
    message = serializers.CharField(help_text="What is wrong and what to do, for a person.")
    field_errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Per input field (dotted paths for nested input): the messages.",
    )


def error_response(status_code: int, code: str, message: str, field_errors: dict | None = None,
                   headers: dict | None = None) -> Response:
    return Response(
        {"code": code, "message": message, "field_errors": field_errors or {}}, status=status_code, headers=headers
    )


#: Codes that mean "not now, in this state" even when raised as a plain ApplicationError.
CONFLICT_CODES = frozenset({"invalid_transition", "conflict", "in_progress"})


def application_error_status(exc: ApplicationError) -> int:
    explicit = getattr(exc, "status_code", None)
    if isinstance(explicit, int):
        return explicit
    if exc.code == "not_found":
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, PermissionDeniedError):
        return status.HTTP_403_FORBIDDEN
    if isinstance(exc, (ConflictError, InvalidTransitionError)) or exc.code in CONFLICT_CODES:
        return status.HTTP_409_CONFLICT
    return status.HTTP_400_BAD_REQUEST


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail → {"field.sub.0.x": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                if item:
                    for k, v in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                        out.setdefault(k, []).extend(v)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def _validation_response(detail: Any) -> Response:
    field_errors = _flatten(detail)
    general = field_errors.pop("non_field_errors", [])
    message = " ".join(general) if general else "The request has invalid fields; see field_errors."
    return error_response(status.HTTP_400_BAD_REQUEST, "invalid", message, field_errors)


def _code_of(exc: exceptions.APIException) -> str:
    detail = exc.detail
    code = getattr(detail, "code", None)
    return code if isinstance(code, str) and code else exc.default_code


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF EXCEPTION_HANDLER: every error in one shape; unexpected ones logged and answered as 500."""
    if isinstance(exc, ApplicationError):
        return error_response(application_error_status(exc), exc.code, exc.message, exc.field_errors)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return _validation_response(detail)
    if isinstance(exc, RequestDataTooBig):
        return error_response(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            "request_too_large",
            "The request body is too large; send fewer records per call.",
        )
    if isinstance(exc, SuspiciousOperation):
        return error_response(status.HTTP_400_BAD_REQUEST, "bad_request", "The request was refused as malformed.")
    if isinstance(exc, Http404):
        return error_response(status.HTTP_404_NOT_FOUND, "not_found", "No such resource.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(status.HTTP_403_FORBIDDEN, "permission_denied", str(exc) or "Not allowed.")
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc.detail)
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, math.ceil(exc.wait or 1))
        return error_response(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "throttled",
            f"Too many requests for this client; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else "Request refused."
        return error_response(exc.status_code, _code_of(exc), message, headers=headers)
    logger.exception("Unexpected API error (correlation id %s)", current_correlation_id())
    return error_response(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "server_error",
        f"Unexpected error; quote correlation id {current_correlation_id()} to support.",
    )
