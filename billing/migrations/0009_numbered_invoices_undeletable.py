"""PostgreSQL: a numbered invoice (or credit note) cannot be deleted either.

`billing_invoice_frozen` (migration 0005) already refuses a DELETE of a numbered row
(for a DELETE, NEW is null, so the frozen columns differ), but its trigger fired on
UPDATE only: `DELETE FROM billing_invoice` of a numbered invoice without lines went
through and left a hole in the gapless numbering. The trigger now fires on DELETE too.
(TRUNCATE, as used by test flushes, fires no row trigger.)
"""
from django.db import migrations

CREATE = """
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
CREATE TRIGGER billing_invoice_frozen BEFORE UPDATE OR DELETE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
CREATE TRIGGER billing_invoice_frozen BEFORE UPDATE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_database_defaults_for_new_columns")]
    operations = [migrations.RunPython(forwards, backwards)]
