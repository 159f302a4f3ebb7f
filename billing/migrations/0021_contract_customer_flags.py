"""The customer-side gates on a contract (signed change orders, customer sign-off of milestones), and the
PostgreSQL terms guard extended to them: switching a gate off on a live contract would lift a control."""

from django.db import migrations, models

TERMS = (
    "client_id",
    "entity_id",
    "billing_model",
    "currency",
    "rate_card_id",
    "cap",
    "expense_markup_pct",
    "discount_pct",
    "po_number",
    "payment_terms_days",
    "billing_frequency",
    "retainer_amount",
    "included_hours",
    "purchase_order_id",
)
NEW_TERMS = (*TERMS, "requires_signed_change_orders", "requires_customer_signoff")


def _function(terms):
    return f"""
CREATE OR REPLACE FUNCTION billing_contract_terms_locked() RETURNS trigger AS $$
BEGIN
    IF OLD.status <> 'draft' AND (
        ROW({", ".join("NEW." + c for c in terms)}) IS DISTINCT FROM
        ROW({", ".join("OLD." + c for c in terms)})
    ) AND current_setting('billable.contract_terms_unlocked', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'contract % is %: its terms change only through an approved change order', OLD.code,
            OLD.status USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_function(NEW_TERMS), params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_function(TERMS), params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0020_tax_engine_and_vies"),
    ]

    operations = [
        migrations.AddField(
            model_name="contract",
            name="requires_customer_signoff",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="A milestone becomes billable only after a client contact signed it off in the customer portal.",
            ),
        ),
        migrations.AddField(
            model_name="contract",
            name="requires_signed_change_orders",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="A change order is approved only once the client signed it (portal click-to-sign or e-signature).",
            ),
        ),
        migrations.AddField(
            model_name="historicalcontract",
            name="requires_customer_signoff",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="A milestone becomes billable only after a client contact signed it off in the customer portal.",
            ),
        ),
        migrations.AddField(
            model_name="historicalcontract",
            name="requires_signed_change_orders",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="A change order is approved only once the client signed it (portal click-to-sign or e-signature).",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
