"""POST /api/v1/webhooks/peppol/: the access-point provider's signed delivery receipts (ADR 0070).

Authenticated by HMAC signature (`PEPPOL_AP_WEBHOOK_SECRET`), not by token; the rules are in
`integrations.services.peppol_receipts`, this view parses and answers.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.errors import ApiErrorSerializer, error_response
from integrations.services import peppol_receipts, webhooks
from kernel.errors import ApplicationError
from kernel.security import client_ip


class PeppolReceiptWebhookView(APIView):
    """Delivery receipts (delivered / rejected with Peppol error codes) from the Peppol access point."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    idempotent = False

    @extend_schema(
        tags=["webhooks"],
        summary="Peppol delivery receipt (signed webhook)",
        description="`{\"id\", \"type\": \"transmission.delivered\" | \"transmission.rejected\", \"transmission_id\", "
        "\"at\", \"errors\": [{\"code\", \"text\"}]}`, signed `X-Billable-Signature: t=<unix>,v1=<hex "
        "HMAC-SHA256(PEPPOL_AP_WEBHOOK_SECRET, \"t.\" + raw body)>` (5-minute tolerance). A rejection opens a "
        "DELIVERY_FAILED exception with the Peppol error codes. A repeated receipt changes nothing.",
        auth=[],
        request={"application/json": {"type": "object"}},
        parameters=[OpenApiParameter(webhooks.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                                     description="t=<unix seconds>,v1=<hex HMAC-SHA256>.")],
        responses={
            200: OpenApiResponse(description="Applied (or a repeat: nothing changed)."),
            202: OpenApiResponse(description="No delivery attempt has this transmission id."),
            400: OpenApiResponse(ApiErrorSerializer, description="Not JSON, or not a receipt event."),
            401: OpenApiResponse(ApiErrorSerializer, description="`unauthenticated`: signature missing, wrong or "
                                 "stale; nothing changes."),
            413: OpenApiResponse(ApiErrorSerializer, description="Body over 64 KiB."),
            429: OpenApiResponse(ApiErrorSerializer, description="Too many unauthenticated deliveries."),
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
        too_large = f"A webhook body is at most {webhooks.MAX_BODY_BYTES} bytes."
        if length > webhooks.MAX_BODY_BYTES:
            return error_response(413, "too_large", too_large)
        try:
            body: bytes = request._request.body
        except RequestDataTooBig:
            return error_response(413, "too_large", too_large)
        try:
            answer = peppol_receipts.peppol_receipt_receive(
                signature=request.headers.get(webhooks.SIGNATURE_HEADER, ""), body=body
            )
        except webhooks.WebhookRejected as exc:
            webhooks.count_failure(address=address)
            return error_response(exc.status_code, exc.code, exc.message)
        except ApplicationError as exc:
            return error_response(400, exc.code, exc.message)
        return Response(answer.body, status=answer.status_code)
