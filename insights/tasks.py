"""django-q2 entry points of the assistive scores; they only call services."""

from __future__ import annotations

RETRAIN_FUNC = "insights.tasks.retrain_risk_model"


def read_sow_task(reading_id: int) -> dict:
    """Read an uploaded statement of work (page cap, time limit, child process) and suggest its terms."""
    from insights.services.sow import sow_read

    reading = sow_read(reading_id=reading_id)
    return {"reading": reading.pk, "status": reading.status, "suggestions": reading.suggestions_created,
            "message": reading.message}


def retrain_risk_model() -> dict:
    """Weekly: train a new dispute-risk model on the labelled history, then refresh open invoices' scores."""
    from insights.services.risk import train_risk_model  # numpy/scikit-learn: loaded by the worker only
    from insights.services.scoring import rescore_open_invoices

    model = train_risk_model()
    rescored = rescore_open_invoices()
    return {
        "model": model.pk,
        "active": model.is_active,
        "samples": model.samples,
        "positives": model.positives,
        "roc_auc": str(model.roc_auc) if model.roc_auc is not None else None,
        "baseline_auc": str(model.baseline_auc) if model.baseline_auc is not None else None,
        "note": model.note,
        "rescored": rescored,
    }


RETRAIN_SCHEDULE = "Insights: retrain the dispute-risk model"


def ensure_retrain_schedule(sender: object = None, *, using: str = "default", **kwargs: object) -> None:
    """post_migrate receiver: put the weekly retraining back when a flush emptied the schedules.

    The data migration `insights/0002` creates it; a flush (transactional tests) empties the table
    and emits post_migrate. Only a missing schedule is created: an admin's edits are kept.
    """
    from django_q.models import Schedule

    if Schedule.objects.using(using).filter(func=RETRAIN_FUNC).exists():
        return
    from datetime import UTC, datetime, time, timedelta

    now = datetime.now(UTC)
    next_run = datetime.combine(now.date(), time(3, 0), tzinfo=UTC)
    while next_run <= now or next_run.weekday() != 6:
        next_run += timedelta(days=1)
    Schedule.objects.using(using).create(
        name=RETRAIN_SCHEDULE, func=RETRAIN_FUNC, schedule_type="W", repeats=-1, next_run=next_run
    )


SNAPSHOT_FUNC = "insights.tasks.refresh_kpi_snapshots"
SNAPSHOT_SCHEDULE = "Insights: refresh the KPI snapshots"


def refresh_kpi_snapshots() -> dict:
    """Recompute the default KPI snapshots the dashboards and `/api/v1/kpis/` read (every few minutes)."""
    from insights.snapshots import refresh_default_snapshots

    return refresh_default_snapshots()


def ensure_snapshot_schedule(sender: object = None, *, using: str = "default", **kwargs: object) -> None:
    """post_migrate receiver: the KPI snapshot refresh runs every `INSIGHTS_KPI_REFRESH_MINUTES` (kept if present)."""
    from django.conf import settings
    from django_q.models import Schedule

    if Schedule.objects.using(using).filter(func=SNAPSHOT_FUNC).exists():
        return
    Schedule.objects.using(using).create(
        name=SNAPSHOT_SCHEDULE,
        func=SNAPSHOT_FUNC,
        schedule_type="I",
        minutes=getattr(settings, "INSIGHTS_KPI_REFRESH_MINUTES", 10),
        repeats=-1,
    )
