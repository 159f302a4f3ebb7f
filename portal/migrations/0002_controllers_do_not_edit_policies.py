"""Finance controllers lose `change` on approval policies and steps (and reminders, decisions).

`ROLE_GRANTS` gave controllers `change` on every approvals model (`approvals.*`), meant for the admin
actions on approval requests; it also let them edit the policies that route their own approvals.
The grants only ever add permissions, so this migration removes the ones no longer granted.
"""
from django.db import migrations

REVOKED = ("approvalpolicy", "approvalstep", "approvaldecision", "reminder")


def forwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="finance_controller").first()
    if group is None:
        return
    perms = Permission.objects.filter(
        content_type__app_label="approvals", codename__in=[f"change_{model}" for model in REVOKED]
    )
    group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_roles"), ("approvals", "0003_reminder_schedules"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
