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


#: The weekly retraining of the dispute-category model (created by migration disputes 0005).
WEEKLY_CLASSIFIER_FUNC = "disputes.tasks.retrain_dispute_classifier"
WEEKLY_CLASSIFIER_NAME = "Disputes: retrain the dispute-category model"


def retrain_dispute_classifier() -> str:
    """Scheduled weekly: retrain on every dispute so far (too little history: says so, changes nothing)."""
    from disputes.services.classifier import train_dispute_classifier
    from kernel.errors import ApplicationError

    try:
        model = train_dispute_classifier()
    except ApplicationError as exc:
        return exc.message
    return (f"Trained on {model.samples} disputes; held-out accuracy {model.accuracy} "
            f"(baseline {model.baseline_accuracy}).")
