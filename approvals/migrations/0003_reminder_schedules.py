"""Schedule the approval reminders (django-q2, see approvals.services.defaults): escalation and
missing time daily at 06:00 UTC, the exception digest on Mondays at 07:00 UTC. Each task is idempotent."""
from django.db import migrations

from approvals.services.defaults import SCHEDULES, schedule_reminders


def schedule(apps, schema_editor):
    schedule_reminders(apps.get_model("django_q", "Schedule"))


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_default_policies"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
