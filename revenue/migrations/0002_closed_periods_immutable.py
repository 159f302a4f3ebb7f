"""PostgreSQL triggers: a closed revenue period, its schedules and its journals never change.

Nothing may be inserted into, updated in or deleted from a closed period's schedules and
journal lines; a closed period's journal entries change only in their ERP status and id
(posting happens after the close); the closed period itself cannot be reopened, edited or
deleted. The close service refuses first with a clear message; the triggers make the rule
hold for any code path — admin, a task, raw SQL.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION revenue_period_is_closed(pid bigint) RETURNS boolean AS $$
    SELECT EXISTS (SELECT 1 FROM revenue_revenueperiod WHERE id = pid AND status = 'closed');
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION revenue_schedule_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND revenue_period_is_closed(OLD.period_id) THEN
        RAISE EXCEPTION 'revenue period % is closed: its schedules cannot change', OLD.period_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND revenue_period_is_closed(NEW.period_id) THEN
        RAISE EXCEPTION 'revenue period % is closed: nothing can be added to it', NEW.period_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revenue_schedule_frozen BEFORE INSERT OR UPDATE OR DELETE ON revenue_revenueschedule
    FOR EACH ROW EXECUTE FUNCTION revenue_schedule_frozen();

CREATE OR REPLACE FUNCTION revenue_journal_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND revenue_period_is_closed(OLD.period_id) THEN
        RAISE EXCEPTION 'revenue period % is closed: its journals cannot be deleted', OLD.period_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'INSERT' AND revenue_period_is_closed(NEW.period_id) THEN
        RAISE EXCEPTION 'revenue period % is closed: nothing can be added to it', NEW.period_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND revenue_period_is_closed(OLD.period_id) AND (
        NEW.period_id IS DISTINCT FROM OLD.period_id OR NEW.entity_id IS DISTINCT FROM OLD.entity_id
        OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.reference IS DISTINCT FROM OLD.reference
        OR NEW.created_at IS DISTINCT FROM OLD.created_at
    ) THEN
        RAISE EXCEPTION 'journal % belongs to a closed period: only its ERP status may change', OLD.reference
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revenue_journal_frozen BEFORE INSERT OR UPDATE OR DELETE ON revenue_journalentry
    FOR EACH ROW EXECUTE FUNCTION revenue_journal_frozen();

CREATE OR REPLACE FUNCTION revenue_journal_line_frozen() RETURNS trigger AS $$
DECLARE
    eid bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN eid := OLD.entry_id; ELSE eid := NEW.entry_id; END IF;
    IF EXISTS (SELECT 1 FROM revenue_journalentry j WHERE j.id IN (eid, CASE WHEN TG_OP = 'UPDATE' THEN OLD.entry_id END)
               AND revenue_period_is_closed(j.period_id)) THEN
        RAISE EXCEPTION 'journal lines of a closed revenue period cannot change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revenue_journal_line_frozen BEFORE INSERT OR UPDATE OR DELETE ON revenue_journalline
    FOR EACH ROW EXECUTE FUNCTION revenue_journal_line_frozen();

CREATE OR REPLACE FUNCTION revenue_period_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.status = 'closed' THEN
        RAISE EXCEPTION 'revenue period % is closed: it cannot be deleted', OLD.start
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'closed' AND (
        NEW.status IS DISTINCT FROM OLD.status OR NEW.start IS DISTINCT FROM OLD.start
        OR NEW."end" IS DISTINCT FROM OLD."end" OR NEW.closed_at IS DISTINCT FROM OLD.closed_at
        OR NEW.closed_by_id IS DISTINCT FROM OLD.closed_by_id OR NEW.close_reason IS DISTINCT FROM OLD.close_reason
        OR NEW.checklist_override IS DISTINCT FROM OLD.checklist_override
    ) THEN
        RAISE EXCEPTION 'revenue period % is closed: it cannot be reopened or edited', OLD.start
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revenue_period_frozen BEFORE UPDATE OR DELETE ON revenue_revenueperiod
    FOR EACH ROW EXECUTE FUNCTION revenue_period_frozen();
"""

DROP = """
DROP TRIGGER IF EXISTS revenue_period_frozen ON revenue_revenueperiod;
DROP TRIGGER IF EXISTS revenue_journal_line_frozen ON revenue_journalline;
DROP TRIGGER IF EXISTS revenue_journal_frozen ON revenue_journalentry;
DROP TRIGGER IF EXISTS revenue_schedule_frozen ON revenue_revenueschedule;
DROP FUNCTION IF EXISTS revenue_period_frozen();
DROP FUNCTION IF EXISTS revenue_journal_line_frozen();
DROP FUNCTION IF EXISTS revenue_journal_frozen();
DROP FUNCTION IF EXISTS revenue_schedule_frozen();
DROP FUNCTION IF EXISTS revenue_period_is_closed(bigint);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("revenue", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
