"""django-q2 entry points for disputes and collections; they only call services."""

from __future__ import annotations

from django.utils import timezone

from disputes.services.collections import dunning_run

#: The daily dunning schedule (created by migration disputes 0002).
DAILY_DUNNING_FUNC = "disputes.tasks.daily_dunning"
DAILY_DUNNING_NAME = "Daily dunning"


def daily_dunning() -> str:
    """Scheduled: send the payment reminders due today. A repeat the same day sends nothing new."""
    return dunning_run(today=timezone.localdate()).as_text()
