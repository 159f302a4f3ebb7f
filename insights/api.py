"""GET /api/v1/kpis/: every KPI of docs/rules/kpis.md for a period and filters, one key per metric (scope `read:kpis`).

The same selectors serve the dashboards and `manage.py kpis`; each metric's definition is
`insights.selectors.DEFINITIONS[key]` (the selector's docstring), returned with `?definitions=1`.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from insights import selectors
from insights.params import EARLIEST, LATEST, parse_filters
from insights.snapshots import kpis_snapshot
from integrations.api.base import ApiView


class KpiQuery(serializers.Serializer):
    period_start = serializers.DateField(help_text="First day of the period (ISO date).")
    period_end = serializers.DateField(help_text="Last day of the period (ISO date), inclusive.")
    entity = serializers.CharField(required=False, allow_blank=True, max_length=20, help_text="Legal entity code.")
    client = serializers.CharField(required=False, allow_blank=True, max_length=40, help_text="Client code.")
    business_unit = serializers.CharField(required=False, allow_blank=True, max_length=60,
                                          help_text="Project business unit (practice).")
    metric = serializers.MultipleChoiceField(choices=list(selectors.METRICS), required=False,
                                             help_text="Only these metrics (repeat the parameter); default all.")
    definitions = serializers.BooleanField(required=False, default=False,
                                           help_text="Include each metric's definition.")

    def validate(self, data):
        for key in ("period_start", "period_end"):
            if not EARLIEST <= data[key] <= LATEST:
                raise serializers.ValidationError({key: [f"Between {EARLIEST} and {LATEST}."]})
        if data["period_end"] < data["period_start"]:
            raise serializers.ValidationError({"period_end": ["Must not be before period_start."]})
        if (data["period_end"] - data["period_start"]).days > 800:
            raise serializers.ValidationError({"period_end": ["A period spans at most 800 days."]})
        return data


class KpiView(ApiView):
    required_scopes = ["read:kpis"]

    @extend_schema(
        tags=["kpis"],
        summary="Process KPIs for a period (days-to-invoice, cycle time, approval latency, accuracy, ...)",
        parameters=[KpiQuery],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = KpiQuery(data={**request.query_params.dict(), "metric": request.query_params.getlist("metric")})
        query.is_valid(raise_exception=True)
        data = query.validated_data
        f = parse_filters(data)
        result, computed_at = kpis_snapshot(
            f.period_start, f.period_end, metrics=sorted(data.get("metric") or []) or None,
            entity=f.entity, client=f.client, business_unit=f.business_unit,
        )
        if data.get("definitions"):
            result["definitions"] = {k: selectors.DEFINITIONS[k] for k in result if k in selectors.DEFINITIONS}
        # The figures come from a snapshot at most INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S old: when it was computed.
        return Response(selectors.jsonable(result), headers={"X-Kpis-Computed-At": computed_at.isoformat()})
