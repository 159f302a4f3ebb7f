"""Schedule the monthly billing run (django-q2): the 2nd of each month, 02:00 UTC."""
from datetime import datetime, timezone

from django.db import migrations


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    now = datetime.now(timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    Schedule.objects.get_or_create(
        name="Monthly billing run",
        defaults={
            "func": "billing.tasks.monthly_billing_run",
            "schedule_type": "M",
            "repeats": -1,
            "next_run": datetime(year, month, 2, 2, 0, tzinfo=timezone.utc),
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="Monthly billing run").delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_invoice_line_history"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]
    operations = [migrations.RunPython(schedule, unschedule)]
