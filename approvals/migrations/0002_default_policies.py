"""Default approval policies (see approvals.services.defaults); billing admins edit them in Django admin.

Re-running the migration does not overwrite edited policies.
"""
from django.db import migrations

from approvals.services.defaults import POLICIES, seed_default_policies


def seed(apps, schema_editor):
    seed_default_policies(apps.get_model("approvals", "ApprovalPolicy"), apps.get_model("approvals", "ApprovalStep"))


def unseed(apps, schema_editor):
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    Request = apps.get_model("approvals", "ApprovalRequest")
    names = [spec["name"] for spec in POLICIES]
    used = set(Request.objects.filter(policy__name__in=names).values_list("policy__name", flat=True))
    Policy.objects.filter(name__in=set(names) - used).delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
