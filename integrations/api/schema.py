"""OpenAPI details every operation shares: the error responses and the standard headers."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from integrations.api.errors import ApiErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "Invalid input (`invalid`, `idempotency_key_missing`, ...); see `field_errors`.",
    "401": "Missing, invalid or revoked token (`not_authenticated`, `authentication_failed`, `token_revoked`).",
    "403": "The client lacks a scope (`insufficient_scope`) or a business rule forbids it.",
    "404": "No such resource (`not_found`).",
    "406": "Only JSON answers are offered (`not_acceptable`).",
    "409": "Conflict: `idempotency_key_reused`, `in_progress`, an invalid state transition, ...",
    "413": "Request body too large (`request_too_large`).",
    "415": "Send `Content-Type: application/json` (`unsupported_media_type`).",
    "429": "Throttled (`throttled`); the `Retry-After` header says when to retry.",
}


class ApiAutoSchema(AutoSchema):
    """Adds the shared error responses and the `Idempotency-Key` / `X-Correlation-ID` headers."""

    def _error_codes(self) -> list[str]:
        codes = ["400", "401", "403", "404", "406", "429"]
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes += ["409", "413", "415"]
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if getattr(self.view, "schema_error_responses", True):
            for code in self._error_codes():
                if code not in responses:
                    response = self._get_response_for_code(ApiErrorSerializer, code, direction=direction)
                    response["description"] = ERROR_DESCRIPTIONS[code]
                    responses[code] = response
        return responses

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = dict(super()._get_response_headers_for_code(status_code, direction))
        headers["X-Correlation-ID"] = {
            "schema": {"type": "string"},
            "required": True,
            "description": "Your X-Correlation-ID when well formed, else a new id; quote it to support.",
        }
        if str(status_code) == "429":
            headers["Retry-After"] = {
                "schema": {"type": "integer", "minimum": 1},
                "required": True,
                "description": "Seconds to wait before retrying.",
            }
        if self.method == "POST" and getattr(self.view, "idempotent", False) and str(status_code).startswith("2"):
            headers["Idempotent-Replayed"] = {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "Present when this is the stored answer to an earlier request with the same key.",
            }
        return headers

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        parameters.append(
            OpenApiParameter(
                "X-Correlation-ID",
                {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,63}$"},
                OpenApiParameter.HEADER,
                required=False,
                description="Optional trace id (8–64 of A-Z a-z 0-9 . _ : -); echoed on the response, else generated.",
            )
        )
        if self.method == "POST" and getattr(self.view, "idempotent", False):
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    {"type": "string", "pattern": r"^[!-~]{1,255}$", "minLength": 1, "maxLength": 255},
                    OpenApiParameter.HEADER,
                    required=True,
                    description="Unique per operation (e.g. a UUID). A retry with the same key and body replays "
                    "the first response (`Idempotent-Replayed: true`); another body → 409.",
                )
            )
        return parameters
