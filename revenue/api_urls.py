"""Revenue routes of the API (namespace `api`, under /api/v1/)."""

from django.urls import path

from revenue import api

urlpatterns: list = [
    path("revenue/reconciliation/", api.ReconciliationView.as_view(), name="revenue-reconciliation"),
]
