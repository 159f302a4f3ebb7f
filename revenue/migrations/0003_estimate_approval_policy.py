"""The approval policy of estimates at completion: one finance-controller step (editable by billing admins)."""

from django.db import migrations


def forwards(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Step = apps.get_model("approvals", "ApprovalStep")
    if Policy.objects.filter(subject_type="estimate").exists():
        return
    policy = Policy.objects.create(name="Estimate at completion", subject_type="estimate")
    Step.objects.create(policy=policy, order=1, approver_kind="role", role="finance_controller", sla_hours=72)


def backwards(apps, schema_editor):
    apps.get_model("approvals", "ApprovalPolicy").objects.filter(subject_type="estimate").delete()


class Migration(migrations.Migration):
    dependencies = [("revenue", "0002_closed_periods_immutable"), ("approvals", "0004_four_eyes_route_override")]
    operations = [migrations.RunPython(forwards, backwards)]
