"""Schedule the weekly retraining of the dispute-category model (django-q2): Sundays, 03:30 UTC."""

from datetime import UTC, datetime, time, timedelta

from django.db import migrations

NAME = "Disputes: retrain the dispute-category model"
FUNC = "disputes.tasks.retrain_dispute_classifier"


def _next_sunday() -> datetime:
    now = datetime.now(UTC)
    candidate = datetime.combine(now.date(), time(3, 30), tzinfo=UTC)
    while candidate <= now or candidate.weekday() != 6:
        candidate += timedelta(days=1)
    return candidate


def schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=NAME,
        defaults={"func": FUNC, "schedule_type": "W", "repeats": -1, "next_run": _next_sunday()},
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("disputes", "0004_dispute_classifier"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
