"""POST /api/v1/webhooks/payments/: signed `payment.received` events (docs/manual/payments.md).

Authenticated by HMAC signature, not by token: no DRF authentication, permission or throttle
classes, CSRF exempt (DRF views are), and not `IdempotentPostMixin` — the event id is the natural
idempotency key. The rules are in `integrations.services.webhooks`; this view parses and answers.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.services.payments import MAX_REFERENCE
from integrations.api.errors import ApiErrorSerializer, error_response
from integrations.services import webhooks
from kernel.errors import ApplicationError
from kernel.security import client_ip


class PaymentEventDataSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"),
                                      coerce_to_string=True, help_text="Cash received, e.g. \"1190.00\".")
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217, e.g. EUR.")
    date = serializers.DateField(help_text="Value date, YYYY-MM-DD.")
    invoice_number = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                           help_text="The invoice number as the payer quoted it (may be empty).")
    payer_reference = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                            help_text="The payer: our client code or its external id, if known.")
    payment_reference = serializers.CharField(max_length=MAX_REFERENCE,
                                              help_text="The provider's own payment id: one payment, once.")


class PaymentEventSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=200, help_text="Event id, unique per client: a replay is not re-applied.")
    type = serializers.ChoiceField(choices=[webhooks.EVENT_TYPE])
    created_at = serializers.DateTimeField(required=False, help_text="When the provider made the event (info).")
    data = PaymentEventDataSerializer()

    def validate_id(self, value: str) -> str:
        if value.startswith(webhooks.REJECTED_PREFIX):
            raise serializers.ValidationError(f"Event ids may not start with {webhooks.REJECTED_PREFIX!r}.")
        return value


class WebhookAckSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    result = serializers.ChoiceField(choices=["applied", "exception"],
                                     help_text="applied, or exception: recorded for finance (unknown invoice, "
                                     "currency mismatch, overpayment, closed invoice).")
    payment_id = serializers.IntegerField(allow_null=True)
    payment_reference = serializers.CharField(allow_null=True)
    detail = serializers.CharField()
    replay = serializers.BooleanField(help_text="True when the event id was delivered before: nothing applied again.")


def _field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.update(_field_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list):
        out[prefix or "non_field_errors"] = [str(item) for item in detail]
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _error(exc: ApplicationError, status: int) -> Response:
    return error_response(status, exc.code, exc.message, exc.field_errors)


class PaymentWebhookView(APIView):
    """Signed payment events from the payment provider (HMAC over `timestamp.body`)."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    idempotent = False

    @extend_schema(
        tags=["webhooks"],
        summary="Payment received (signed webhook)",
        description="Authenticated by `X-Billable-Client` and `X-Billable-Signature: t=<unix>,v1=<hex "
        "HMAC-SHA256(webhook secret, \"t.\" + raw body)>` (5-minute tolerance), not by a token. The event id "
        "is unique per client: a replay answers 200 with the first answer and `replay: true`. A payment that "
        "cannot be applied (unknown invoice, other currency, overpayment, closed invoice) is recorded for "
        "finance and acknowledged with 202.",
        auth=[],
        request=PaymentEventSerializer,
        parameters=[
            OpenApiParameter(webhooks.CLIENT_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="The integration client's name."),
            OpenApiParameter(webhooks.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="t=<unix seconds>,v1=<hex HMAC-SHA256>."),
        ],
        responses={
            200: OpenApiResponse(WebhookAckSerializer, description="Applied, or a replay (nothing applied again)."),
            202: OpenApiResponse(WebhookAckSerializer, description="Recorded as an exception for finance."),
            400: OpenApiResponse(ApiErrorSerializer, description="Not JSON, or not a valid payment.received event."),
            401: OpenApiResponse(ApiErrorSerializer, description="`unauthenticated`: one answer for an unknown or "
                                 "revoked client, a bad or missing signature, a timestamp outside 5 minutes; "
                                 "nothing is stored."),
            403: OpenApiResponse(ApiErrorSerializer, description="The client lacks the scope webhooks:payments."),
            409: OpenApiResponse(ApiErrorSerializer, description="The payment reference was recorded with other "
                                 "data."),
            413: OpenApiResponse(ApiErrorSerializer, description="Body over 64 KiB."),
            429: OpenApiResponse(ApiErrorSerializer, description="Too many unauthenticated deliveries from this "
                                 "address in the last minute."),
        },
    )
    def post(self, request) -> Response:
        address = client_ip(request._request)
        if webhooks.throttled(address=address):
            response = error_response(429, "throttled", "Too many unauthenticated deliveries from this address; "
                                      "retry in a minute.")
            response["Retry-After"] = "60"
            return response
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > webhooks.MAX_BODY_BYTES:
            return error_response(413, "too_large", f"A webhook body is at most {webhooks.MAX_BODY_BYTES} bytes.")
        try:
            body: bytes = request._request.body
        except RequestDataTooBig:
            return error_response(413, "too_large", f"A webhook body is at most {webhooks.MAX_BODY_BYTES} bytes.")
        try:
            client = webhooks.authenticate(
                client_name=request.headers.get(webhooks.CLIENT_HEADER, ""),
                signature=request.headers.get(webhooks.SIGNATURE_HEADER, ""),
                body=body,
            )
        except webhooks.WebhookRejected as exc:
            if exc.status_code == 401:
                webhooks.count_failure(address=address)
            return _error(exc, exc.status_code)

        try:
            payload = json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            exc = ApplicationError("The body is not JSON.", code="parse_error")
            webhooks.webhook_reject(client=client, reason=exc, body=body)
            return _error(exc, 400)
        serializer = PaymentEventSerializer(data=payload if isinstance(payload, dict) else {})
        if not isinstance(payload, dict) or not serializer.is_valid():
            field_errors = _field_errors(serializer.errors) if isinstance(payload, dict) else {
                "non_field_errors": ["Expected a JSON object."]}
            exc = ApplicationError("Not a valid payment.received event; see field_errors.", code="invalid",
                                   field_errors=field_errors)
            event_id = payload.get("id") if isinstance(payload, dict) and isinstance(payload.get("id"), str) else ""
            webhooks.webhook_reject(client=client, reason=exc, body=body,
                                    payload=payload if isinstance(payload, dict) else None, event_id=event_id)
            return _error(exc, 400)
        event = serializer.validated_data
        try:
            answer = webhooks.payment_event_receive(client=client, event=event, payload=payload)
        except ApplicationError as exc:
            field_errors = {f"data.{k}": v for k, v in exc.field_errors.items()}
            refused = ApplicationError(exc.message, code=exc.code, field_errors=field_errors)
            webhooks.webhook_reject(client=client, reason=refused, body=body, payload=payload, event_id=event["id"])
            status = 409 if exc.code == "conflict" else (403 if exc.code == "permission_denied" else 400)
            return _error(refused, status)
        return Response(answer.body, status=answer.status_code)
