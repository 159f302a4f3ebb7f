"""Reads of the integration monitor: outbox health, circuits, the worker, webhooks and imports.

Every function runs a fixed number of queries, whatever the number of rows (the monitor's
query-count test holds them to it).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Min
from django.utils import timezone
from django_fsm_log.models import StateLog

from integrations.models import EndpointCircuit, ImportBatch, OutboxMessage, WebhookEvent

Status = OutboxMessage.Status
OPEN_STATUSES = (Status.PENDING, Status.FAILED)


@dataclass
class OutboxSummary:
    by_status: dict[str, int]
    rows: list[dict[str, Any]]  # one per kind: {kind, label, pending, failed, delivered, dead}
    oldest_open_at: datetime.datetime | None
    total_open: int = 0

    @property
    def oldest_open_age(self) -> datetime.timedelta | None:
        return timezone.now() - self.oldest_open_at if self.oldest_open_at else None


def outbox_summary() -> OutboxSummary:
    """Counts by state and kind (one query) and the oldest undelivered message (one query)."""
    counts = {(r["kind"], r["status"]): r["n"] for r in
              OutboxMessage.objects.order_by().values("kind", "status").annotate(n=Count("id"))}
    rows = []
    by_status = {s: 0 for s in Status.values}
    for kind, label in OutboxMessage.Kind.choices:
        row = {"kind": kind, "label": label}
        for status in Status.values:
            row[status] = counts.get((kind, status), 0)
            by_status[status] += row[status]
        rows.append(row)
    oldest = OutboxMessage.objects.filter(status__in=OPEN_STATUSES).aggregate(m=Min("created_at"))["m"]
    return OutboxSummary(by_status=by_status, rows=rows, oldest_open_at=oldest,
                         total_open=by_status[Status.PENDING] + by_status[Status.FAILED])


def dead_letters(limit: int = 50) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(status=Status.DEAD)
        .select_related("invoice", "client")
        .defer("payload")
        .order_by("created_at", "id")[:limit]
    )


def recent_failures(limit: int = 20) -> list[dict[str, Any]]:
    """The latest failed or dead-lettered attempts (transition log), with their message's correlation id."""
    content_type = ContentType.objects.get_for_model(OutboxMessage)
    logs = list(
        StateLog.objects.filter(content_type=content_type, transition__in=["mark_failed", "mark_dead"])
        .order_by("-timestamp", "-id")[:limit]
    )
    messages = OutboxMessage.objects.defer("payload").in_bulk({int(log.object_id) for log in logs})
    return [
        {"at": log.timestamp, "transition": log.transition, "description": log.description,
         "message": messages.get(int(log.object_id))}
        for log in logs
    ]


def circuits() -> list[EndpointCircuit]:
    return list(EndpointCircuit.objects.order_by("endpoint"))


@dataclass
class WorkerHeartbeat:
    clusters: list[dict[str, Any]] = field(default_factory=list)  # django-q2 Stat (Redis broker / shared cache)
    last_task_at: datetime.datetime | None = None  # the latest task the cluster finished (saved results)
    queued: int = 0  # tasks waiting in the broker
    oldest_queued_at: datetime.datetime | None = None
    sweep_next_run: datetime.datetime | None = None

    @property
    def last_task_age(self) -> datetime.timedelta | None:
        return timezone.now() - self.last_task_at if self.last_task_at else None

    @property
    def stale(self) -> bool:
        """No finished task for 3 minutes while the every-minute sweep should run: the worker is likely down."""
        age = self.last_task_age
        return age is None or age > datetime.timedelta(minutes=3)


def worker_heartbeat() -> WorkerHeartbeat:
    """The django-q2 cluster's signs of life: its own status where the broker shares it, else its results."""
    from django_q.conf import Conf
    from django_q.models import OrmQ, Schedule, Task

    from integrations.schedules import SWEEP_FUNC

    beat = WorkerHeartbeat()
    try:
        from django_q.status import Stat

        for stat in Stat.get_all():
            beat.clusters.append({"cluster_id": stat.cluster_id, "status": stat.status, "host": stat.host,
                                  "workers": len(stat.workers), "uptime_s": int(stat.uptime())})
    except Exception:  # noqa: S110 - a broker without shared stats: the results below say enough
        pass
    beat.last_task_at = Task.objects.order_by("-stopped").values_list("stopped", flat=True).first()
    if Conf.ORM:
        queued = OrmQ.objects.filter(key=Conf.CLUSTER_NAME).aggregate(n=Count("id"), oldest=Min("lock"))
        beat.queued, beat.oldest_queued_at = queued["n"], queued["oldest"]
    beat.sweep_next_run = Schedule.objects.filter(func=SWEEP_FUNC).values_list("next_run", flat=True).first()
    return beat


def recent_webhook_events(limit: int = 10) -> list[WebhookEvent]:
    return list(WebhookEvent.objects.select_related("client").defer("payload").order_by("-received_at", "-id")[:limit])


def recent_imports(limit: int = 10) -> list[ImportBatch]:
    return list(
        ImportBatch.objects.select_related("integration_client", "submitted_by")
        .defer("errors")
        .order_by("-started_at", "-id")[:limit]
    )
