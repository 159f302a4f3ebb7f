"""django-q2 schedules of billing, shared by the data migration and the post_migrate safety net."""
from datetime import UTC, datetime

MONTHLY_RUN_FUNC = "billing.tasks.monthly_billing_run"


def schedule_monthly_run(schedule_model) -> None:
    """The monthly billing run: the 2nd of each month, 02:00 UTC (django-q2)."""
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    schedule_model.objects.get_or_create(
        name="Monthly billing run",
        defaults={
            "func": MONTHLY_RUN_FUNC,
            "schedule_type": "M",
            "repeats": -1,
            "next_run": datetime(year, month, 2, 2, 0, tzinfo=UTC),
        },
    )


STALE_RUN_SWEEP_FUNC = "billing.tasks.sweep_stale_billing_runs"


def schedule_stale_run_sweep(schedule_model) -> None:
    """Every minute: billing runs whose worker stopped beating are shown `interrupted` (ADR 0037)."""
    schedule_model.objects.get_or_create(
        func=STALE_RUN_SWEEP_FUNC,
        defaults={
            "name": "Interrupt billing runs whose worker died",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
            "next_run": datetime.now(UTC),
        },
    )


TAX_ENGINE_RETRY_FUNC = "billing.tasks.retry_tax_engine_recordings"


def schedule_tax_engine_retry(schedule_model) -> None:
    """Every 5 minutes: approved invoices the tax engine could not take yet are reported again."""
    schedule_model.objects.get_or_create(
        func=TAX_ENGINE_RETRY_FUNC,
        defaults={
            "name": "Report approved invoices to the tax engine (retries)",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
            "next_run": datetime.now(UTC),
        },
    )
