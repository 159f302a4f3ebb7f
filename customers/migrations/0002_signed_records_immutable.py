"""PostgreSQL triggers: a signed change-order document and a milestone sign-off never change and are never
deleted, whatever the code path (admin, bulk update, SQL console). The models refuse first."""

from django.db import migrations

TABLES = ("customers_signeddocument", "customers_milestonesignoff")

CREATE = """
CREATE OR REPLACE FUNCTION customers_write_once() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are written once: no %', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql;
""" + "".join(
    f"CREATE TRIGGER {t}_write_once BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION customers_write_once();\n"
    for t in TABLES
)
DROP = "".join(f"DROP TRIGGER IF EXISTS {t}_write_once ON {t};\n" for t in TABLES) + (
    "DROP FUNCTION IF EXISTS customers_write_once();\n"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
