"""Dashboards (namespace `insights`): finance leadership, operations, the workflow monitor, drill-down lists."""

from django.urls import path

from insights import views_dashboards as views

urlpatterns: list = [
    path("", views.dashboard, name="dashboard"),
    path("operations/", views.operations, name="operations"),
    path("workflow/", views.workflow_monitor, name="workflow_monitor"),
    path("records/", views.drilldown_view, name="drilldown"),
    path("rework/", views.rework_ranking, name="rework_ranking"),
]
