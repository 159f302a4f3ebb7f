"""/integrations/monitor/: the integration monitor (outbox, circuits, worker, webhooks, imports)."""

from django.urls import path

from integrations import views_monitor

urlpatterns: list = [
    path("monitor/", views_monitor.monitor, name="monitor"),
    path("outbox/<int:pk>/retry/", views_monitor.outbox_retry, name="outbox_retry"),
]
