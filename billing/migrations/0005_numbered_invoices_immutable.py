"""PostgreSQL triggers: a numbered invoice (or credit note) and its lines and taxes never change.

Status may still move on (posted, sent, paid, ...); amounts, parties, dates, the
number and the lines may not. The services refuse first with a clear message;
the triggers make the rule hold for any code path, admin or SQL console.
"""
from django.db import migrations

FROZEN = (
    "number", "kind", "credit_of_id", "entity_id", "client_id", "contract_id", "project_id", "issue_date",
    "due_date", "currency", "po_number", "subtotal", "tax_total", "total", "period_start", "period_end",
)

CREATE = f"""
CREATE OR REPLACE FUNCTION billing_invoice_frozen() RETURNS trigger AS $$
BEGIN
    IF OLD.number IS NOT NULL AND (
        ROW({", ".join("NEW." + c for c in FROZEN)}) IS DISTINCT FROM
        ROW({", ".join("OLD." + c for c in FROZEN)})
    ) THEN
        RAISE EXCEPTION 'invoice % is numbered and immutable; correct it with a credit note', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_invoice_frozen BEFORE UPDATE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();

CREATE OR REPLACE FUNCTION billing_invoice_child_frozen() RETURNS trigger AS $$
DECLARE
    invoice_number varchar;
BEGIN
    SELECT number INTO invoice_number FROM billing_invoice
        WHERE id = (CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END);
    IF invoice_number IS NOT NULL THEN
        RAISE EXCEPTION 'invoice % is numbered and immutable; its lines and taxes cannot change', invoice_number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_invoiceline_frozen BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_child_frozen();
CREATE TRIGGER billing_invoicetax_frozen BEFORE INSERT OR UPDATE OR DELETE ON billing_invoicetax
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_child_frozen();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_invoicetax_frozen ON billing_invoicetax;
DROP TRIGGER IF EXISTS billing_invoiceline_frozen ON billing_invoiceline;
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
DROP FUNCTION IF EXISTS billing_invoice_child_frozen();
DROP FUNCTION IF EXISTS billing_invoice_frozen();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_monthly_billing_schedule")]
    operations = [migrations.RunPython(forwards, backwards)]
