"""Core API routes: schema and docs, billing reads, billing runs, documents, disputes (namespace `api`)."""

from django.urls import path

from integrations.api import billing_runs, docs, whoami

urlpatterns: list = [
    path("schema/", docs.SchemaView.as_view(), name="schema"),
    path("docs/", docs.swagger_ui, name="docs"),
    path("redoc/", docs.redoc, name="redoc"),
    path("whoami/", whoami.WhoAmIView.as_view(), name="whoami"),
    path("billing-runs/", billing_runs.BillingRunListView.as_view(), name="billing_run_list"),
    path("billing-runs/<int:pk>/", billing_runs.BillingRunDetailView.as_view(), name="billing_run_detail"),
]
