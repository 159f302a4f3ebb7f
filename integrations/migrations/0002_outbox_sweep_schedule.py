"""The every-minute django-q2 schedule of the outbox sweep (integrations.schedules)."""

from django.db import migrations

from integrations.schedules import SWEEP_FUNC, schedule_outbox_sweep


def forwards(apps, schema_editor):
    schedule_outbox_sweep(apps.get_model("django_q", "Schedule"))


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=SWEEP_FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
