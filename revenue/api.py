"""GET /api/v1/revenue/reconciliation/?period=2026-10 (scope `read:revenue`): docs/rules/revenue.md."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from integrations.api.base import ApiView
from revenue import selectors
from revenue.recognition import month_start


class ReconciliationView(ApiView):
    required_scopes = ["read:revenue"]

    @extend_schema(
        tags=["revenue"],
        summary="Revenue reconciliation of a month: per contract recognised − billed = WIP − deferred; journals",
        parameters=[OpenApiParameter("period", str, description="Month, YYYY-MM.", required=True)],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        value = request.query_params.get("period", "")
        try:
            start, _end = month_start(value)
        except (ValueError, TypeError) as exc:
            raise ValidationError({"period": ["Use YYYY-MM, e.g. 2026-10."]}) from exc
        return Response(selectors.reconciliation(start).as_dict())
