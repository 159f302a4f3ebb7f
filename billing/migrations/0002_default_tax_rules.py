"""Built-in tax rules of docs/rules/billing.md §9; billing admins edit them in admin."""
from django.db import migrations

from billing.tax_defaults import create_default_tax_rules


def seed(apps, schema_editor):
    create_default_tax_rules(apps.get_model("billing", "TaxRule"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
