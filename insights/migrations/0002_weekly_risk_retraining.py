"""Schedule the weekly retraining of the dispute-risk model (django-q2): Sundays, 03:00 UTC."""

from datetime import UTC, datetime, time, timedelta

from django.db import migrations

NAME = "Insights: retrain the dispute-risk model"
FUNC = "insights.tasks.retrain_risk_model"


def _next_sunday_3am() -> datetime:
    now = datetime.now(UTC)
    candidate = datetime.combine(now.date(), time(3, 0), tzinfo=UTC)
    while candidate <= now or candidate.weekday() != 6:
        candidate += timedelta(days=1)
    return candidate


def schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=NAME,
        defaults={"func": FUNC, "schedule_type": "W", "repeats": -1, "next_run": _next_sunday_3am()},
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("insights", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
