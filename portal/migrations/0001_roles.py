"""Create the Billable role groups with their model permissions (kernel.roles.ROLE_GRANTS).

Permissions are normally created by a post_migrate signal, i.e. after every
migration ran; we create them here first so the groups can be granted them.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from kernel.roles import sync_role_permissions

    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        app_config.models_module = True  # historical app configs have none; create_permissions skips those
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None
    sync_role_permissions(apps=apps, using=using)


def remove_roles(apps, schema_editor):
    from kernel.roles import ALL_ROLES

    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=ALL_ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0002_default_tax_rules"),
        ("django_fsm_log", "0004_auto_20190131_0341"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
