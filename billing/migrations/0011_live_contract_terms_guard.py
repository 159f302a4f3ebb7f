"""PostgreSQL triggers: the terms of a live contract, and its rates, change only through an approved change order.

A contract that has left `draft` keeps its commercial terms (rates, cap, PO, payment
terms, billing frequency, ...) unless the writing transaction has switched on
`billable.contract_terms_unlocked`, which only `billing.models.contract_terms_unlocked()`
does (approving a change order, seeding data). The services and the models refuse
first with a clear message; the triggers make the rule hold for any code path,
admin, bulk update or SQL console.
"""
from django.db import migrations

TERMS = (
    "client_id", "entity_id", "billing_model", "currency", "rate_card_id", "cap", "expense_markup_pct",
    "discount_pct", "po_number", "payment_terms_days", "billing_frequency", "retainer_amount", "included_hours",
)

CREATE = f"""
CREATE OR REPLACE FUNCTION billing_contract_terms_locked() RETURNS trigger AS $$
BEGIN
    IF OLD.status <> 'draft' AND (
        ROW({", ".join("NEW." + c for c in TERMS)}) IS DISTINCT FROM
        ROW({", ".join("OLD." + c for c in TERMS)})
    ) AND current_setting('billable.contract_terms_unlocked', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'contract % is %: its terms change only through an approved change order', OLD.code,
            OLD.status USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_contract_terms_locked BEFORE UPDATE ON billing_contract
    FOR EACH ROW EXECUTE FUNCTION billing_contract_terms_locked();

CREATE OR REPLACE FUNCTION billing_contractrate_locked() RETURNS trigger AS $$
DECLARE
    contract_code varchar;
    contract_status varchar;
BEGIN
    IF current_setting('billable.contract_terms_unlocked', true) IS DISTINCT FROM 'on' THEN
        SELECT code, status INTO contract_code, contract_status FROM billing_contract
            WHERE id = (CASE WHEN TG_OP = 'INSERT' THEN NEW.contract_id ELSE OLD.contract_id END);
        IF contract_status IS NOT NULL AND contract_status <> 'draft' THEN
            RAISE EXCEPTION 'contract % is %: its rates change only through an approved change order',
                contract_code, contract_status USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER billing_contractrate_locked BEFORE INSERT OR UPDATE OR DELETE ON billing_contractrate
    FOR EACH ROW EXECUTE FUNCTION billing_contractrate_locked();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_contractrate_locked ON billing_contractrate;
DROP TRIGGER IF EXISTS billing_contract_terms_locked ON billing_contract;
DROP FUNCTION IF EXISTS billing_contractrate_locked();
DROP FUNCTION IF EXISTS billing_contract_terms_locked();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0010_change_order_terms")]
    operations = [migrations.RunPython(forwards, backwards)]
