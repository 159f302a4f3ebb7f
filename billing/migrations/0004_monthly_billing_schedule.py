"""Schedule the monthly billing run (django-q2): the 2nd of each month, 02:00 UTC."""
from django.db import migrations

from billing.schedules import schedule_monthly_run


def schedule(apps, schema_editor):
    schedule_monthly_run(apps.get_model("django_q", "Schedule"))


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="Monthly billing run").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_invoice_line_history"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
