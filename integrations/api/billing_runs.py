"""Billing runs: start one (POST, scope write:billing) and poll it (GET, scope read:billing)."""

from __future__ import annotations

import django_filters
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from billing.models import BillingRun
from billing.services.billing_run import billing_run_start
from integrations.api.base import ApiListView, ApiRetrieveView, validate
from integrations.api.filters import UtcIsoDateTimeFilter
from integrations.api.serializers import BillingRunSerializer, BillingRunStartSerializer


class BillingRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=BillingRun.Status.choices)
    period_start = django_filters.DateFilter()
    created_since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = BillingRun
        fields = ["status", "period_start", "created_since"]


class BillingRunListView(ApiListView):
    """Billing runs, newest first; POST starts one (it runs in the background: poll its URL)."""

    required_scopes = {"GET": ["read:billing"], "POST": ["write:billing"]}
    serializer_class = BillingRunSerializer
    filterset_class = BillingRunFilter
    cursor_ordering = ("-id",)
    queryset = BillingRun.objects.select_related("started_by")

    @extend_schema(tags=["billing runs"], summary="List billing runs")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=["billing runs"],
        summary="Start a billing run",
        request=BillingRunStartSerializer,
        responses={202: BillingRunSerializer},
    )
    def post(self, request, *args, **kwargs):
        data = validate(BillingRunStartSerializer, request.data)
        billing_run = billing_run_start(
            period_start=data["period_start"],
            period_end=data["period_end"],
            run_date=data["run_date"],
            contract_codes=data["contract_codes"],
            user=request.user,
        )
        return Response(
            BillingRunSerializer(billing_run).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": reverse("api:billing_run_detail", args=[billing_run.pk])},
        )


class BillingRunDetailView(ApiRetrieveView):
    required_scopes = {"GET": ["read:billing"]}
    serializer_class = BillingRunSerializer
    queryset = BillingRun.objects.select_related("started_by")

    @extend_schema(tags=["billing runs"], summary="A billing run (poll until status is done or failed)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
