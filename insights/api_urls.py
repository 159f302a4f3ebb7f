"""KPI routes of the API (namespace `api`, under /api/v1/)."""

from django.urls import path

from insights import api

urlpatterns: list = [
    path("kpis/", api.KpiView.as_view(), name="kpis"),
]
