"""One error type for business-rule violations, so views, API and tasks answer alike."""
from __future__ import annotations


class ApplicationError(Exception):
    """A use case refused: the message says what is wrong and what to do."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field_errors: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field_errors = field_errors or {}


class PermissionDeniedError(ApplicationError):
    code = "permission_denied"


class SegregationOfDutiesError(PermissionDeniedError):
    code = "segregation_of_duties"


class InvalidTransitionError(ApplicationError):
    code = "invalid_transition"


class ConflictError(ApplicationError):
    code = "conflict"
