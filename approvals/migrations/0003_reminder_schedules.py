"""Schedule the approval reminders (django-q2): escalation and missing time daily at
06:00 UTC, the exception digest on Mondays at 07:00 UTC. Each task is idempotent."""
from datetime import datetime, time, timedelta, timezone

from django.db import migrations

SCHEDULES = [
    ("Approvals: escalate overdue approvals", "approvals.tasks.escalate_overdue", "D", None, time(6, 0)),
    ("Approvals: remind missing time", "approvals.tasks.remind_missing_time", "D", None, time(6, 0)),
    ("Approvals: weekly exception digest", "approvals.tasks.weekly_exception_digest", "W", 0, time(7, 0)),
]


def _next_run(weekday, at):
    now = datetime.now(timezone.utc)
    candidate = datetime.combine(now.date(), at, tzinfo=timezone.utc)
    while candidate <= now or (weekday is not None and candidate.weekday() != weekday):
        candidate += timedelta(days=1)
    return candidate


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, schedule_type, weekday, at in SCHEDULES:
        Schedule.objects.get_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": schedule_type,
                "repeats": -1,
                "next_run": _next_run(weekday, at),
            },
        )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_default_policies"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
