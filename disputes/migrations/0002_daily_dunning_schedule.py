"""Schedule the daily dunning run (django-q2): every day at 06:00 UTC, before the working day."""
from datetime import UTC, datetime, timedelta

from django.db import migrations

NAME = "Daily dunning"
FUNC = "disputes.tasks.daily_dunning"


def schedule(apps, schema_editor):
    now = datetime.now(UTC)
    first = now.replace(hour=6, minute=0, second=0, microsecond=0)
    if first <= now:
        first += timedelta(days=1)
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=NAME, defaults={"func": FUNC, "schedule_type": "D", "repeats": -1, "next_run": first}
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("disputes", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
