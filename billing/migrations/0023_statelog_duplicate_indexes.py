"""Drop the two `varchar_pattern_ops` copies of `StateLog`'s state indexes (ADR 0110).

django-fsm-log declares `state` and `source_state` with `db_index=True`; on PostgreSQL Django
then creates each index twice: a plain btree and a `_like` one (`varchar_pattern_ops`) that only
a `LIKE 'x%'` filter would use. Nothing filters the transition log with LIKE; every billed item
writes a row into both. PostgreSQL only (other databases never had them); the reverse recreates them.
"""

from django.db import migrations

LIKE_INDEXES = {
    "django_fsm_log_statelog_state_7a86232b_like": "state",
    "django_fsm_log_statelog_source_state_07608825_like": "source_state",
}


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in LIKE_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def recreate(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in LIKE_INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "django_fsm_log_statelog" ("{column}" varchar_pattern_ops)'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0022_work_indexes_without_billed_work"),
        ("django_fsm_log", "0004_auto_20190131_0341"),
    ]

    operations = [migrations.RunPython(drop, recreate)]
