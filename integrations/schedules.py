"""django-q2 schedule of the outbox sweep (every minute), shared by the data migration and the demo."""

from __future__ import annotations

SWEEP_FUNC = "integrations.tasks.sweep_outbox"
SWEEP_NAME = "ERP outbox sweep"


def schedule_outbox_sweep(schedule_model) -> None:
    """Every minute: queue due retries and messages whose delivery task was lost."""
    from django.utils import timezone

    schedule_model.objects.get_or_create(
        func=SWEEP_FUNC,
        defaults={"name": SWEEP_NAME, "schedule_type": "I", "minutes": 1, "repeats": -1,
                  "next_run": timezone.now()},
    )


PAYMENTS_FUNC = "integrations.tasks.pull_erp_payments"
PAYMENTS_NAME = "ERP payment read-back"


def schedule_erp_payments(schedule_model) -> None:
    """Every 15 minutes: payments recorded in the ERP are read back (the task does nothing unless enabled)."""
    from django.utils import timezone

    schedule_model.objects.get_or_create(
        func=PAYMENTS_FUNC,
        defaults={"name": PAYMENTS_NAME, "schedule_type": "I", "minutes": 15, "repeats": -1,
                  "next_run": timezone.now()},
    )
