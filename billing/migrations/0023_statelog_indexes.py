"""The transition log (`StateLog`) keeps the indexes its queries use, no more (ADR 0110).

django-fsm-log owns the table and declares `state`, `source_state`, `object_id` and the two
foreign keys indexed; on PostgreSQL Django adds a `varchar_pattern_ops` copy of each text one.
Every billed item writes a row into each of them. What the code reads (selectors, insights,
the admin, `StateLog.objects.for_`): an object's log by (content type, object id), the target
state, the user's rows when a user is deleted. So:

- the two `_like` copies go (nothing filters the log with LIKE), and `source_state`'s index
  (nothing filters on it);
- one (content_type_id, object_id) index replaces the two single-column ones (its first column
  serves the content-type foreign key);
- `by_id` is indexed where it is set (system rows, such as a scheduled run's, have none; a look-up
  by user never needs them).

PostgreSQL only (the SQLite demo keeps django-fsm-log's own); the reverse restores them.
"""

from django.db import migrations

TABLE = "django_fsm_log_statelog"

FORWARD = [
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_state_7a86232b_like"',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_source_state_07608825_like"',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_source_state_07608825"',
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_subject" ON "{TABLE}" ("content_type_id", "object_id")',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_content_type_id_e63b15b9"',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_object_id_21cdf73c"',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_by_id_df6b9a17"',
    f'CREATE INDEX "django_fsm_log_statelog_by_id_df6b9a17" ON "{TABLE}" ("by_id") WHERE "by_id" IS NOT NULL',
]

BACKWARD = [
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_state_7a86232b_like" ON "{TABLE}" '
    '("state" varchar_pattern_ops)',
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_source_state_07608825_like" ON "{TABLE}" '
    '("source_state" varchar_pattern_ops)',
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_source_state_07608825" ON "{TABLE}" ("source_state")',
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_content_type_id_e63b15b9" ON "{TABLE}" ("content_type_id")',
    f'CREATE INDEX IF NOT EXISTS "django_fsm_log_statelog_object_id_21cdf73c" ON "{TABLE}" ("object_id")',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_subject"',
    'DROP INDEX IF EXISTS "django_fsm_log_statelog_by_id_df6b9a17"',
    f'CREATE INDEX "django_fsm_log_statelog_by_id_df6b9a17" ON "{TABLE}" ("by_id")',
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0022_work_indexes_without_billed_work"),
        ("django_fsm_log", "0004_auto_20190131_0341"),
    ]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
