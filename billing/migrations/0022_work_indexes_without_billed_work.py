"""The status indexes of time and expenses leave billed work out; time has no second person index (ADR 0110).

The billing run's link moves every billed item from approved to invoiced: a status index without
invoiced rows gets no new entry for it. `billing_time_person_date` (person, date) already serves
every look-up by person, so the foreign key's own index is dropped.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0021_contract_customer_flags"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="expense",
            name="billing_expense_status_date",
        ),
        migrations.RemoveIndex(
            model_name="timeentry",
            name="billing_time_status_date",
        ),
        migrations.AlterField(
            model_name="timeentry",
            name="person",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="time_entries",
                to="billing.person",
            ),
        ),
        migrations.AddIndex(
            model_name="expense",
            index=models.Index(
                condition=models.Q(("status", "invoiced"), _negated=True),
                fields=["status", "date"],
                name="billing_expense_status_date",
            ),
        ),
        migrations.AddIndex(
            model_name="timeentry",
            index=models.Index(
                condition=models.Q(("status", "invoiced"), _negated=True),
                fields=["status", "date"],
                name="billing_time_status_date",
            ),
        ),
    ]
