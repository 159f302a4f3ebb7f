"""django-q2 entry points for the revenue close; they only call services."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils import timezone

from kernel.periods import previous_month
from revenue.services.close import revenue_close


def revenue_close_task(period: str, user_id: int | None = None, lock: bool = False, override_reason: str = "") -> dict:
    """Run a close queued from the finance screen (or the scheduler) as the user who asked for it."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    record = revenue_close(period=period, user=user, lock=lock, reason="queued close", override_reason=override_reason)
    return {"period": record.label, "status": record.status, "duration_ms": record.duration_ms}


def monthly_revenue_draft() -> dict:
    """Scheduled: compute last month's close as a draft (a controller locks it after the checklist)."""
    start, _end = previous_month(timezone.now().date())
    return revenue_close_task(f"{start:%Y-%m}")
