"""CSV import of PSA time exports: line numbers in errors, dry run, all or nothing, the command, the sample."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from billing.models import TimeEntry
from integrations.models import ImportBatch
from integrations.services.csv_import import (
    import_checked_file,
    import_time_csv,
    parse_time_csv,
    stored_file_exists,
)
from kernel.errors import ApplicationError
from tests.factories import PersonFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[3] / "docs" / "samples" / "psa_time_export.csv"
HEADER = "external_id,person_external_id,person_email,project_code,date,hours,billable,description,status\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def csv_bytes(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


GOOD = ("psa-1,psa-anna,,PRJ-A,2025-03-10,7.5,true,Workshop,",
        "psa-2,,ben@billable.example,PRJ-A,2025-03-10,\"7,25\",no,\"Review, part 1\",draft")


def test_import_saves_rows_and_keeps_the_file(world, psa_user):
    outcome = import_time_csv(content=csv_bytes(*GOOD), filename="week.csv", user=psa_user)
    assert outcome.status == "done" and outcome.summary()["created"] == 2
    ben = TimeEntry.objects.get(external_id="psa-2")
    assert (str(ben.hours), ben.billable, ben.description, ben.status) == ("7.25", False, "Review, part 1", "draft")
    batch = outcome.batch
    assert (batch.kind, batch.filename, batch.rows_created, batch.submitted_by) == ("csv_time", "week.csv", 2, psa_user)
    assert stored_file_exists(batch)
    assert TimeEntry.objects.get(external_id="psa-1").history.get().history_change_reason == "CSV import week.csv"


def test_errors_carry_line_numbers_and_nothing_is_left_behind(world, psa_user):
    content = csv_bytes(
        GOOD[0],
        "psa-3,psa-anna,,PRJ-A,2025-13-01,2,true,Bad date,",
        "",  # a blank line counts, and is skipped
        "psa-4,psa-nobody,,PRJ-A,2025-03-11,2,true,\"Two\nlines\",",
        "psa-5,psa-anna,,PRJ-A,2025-03-11,25,true,Too long,",
    )
    before = TimeEntry.objects.count()
    outcome = import_time_csv(content=content, filename="bad.csv", user=psa_user)

    assert outcome.status == "failed" and not outcome.saved
    assert TimeEntry.objects.count() == before
    errors = {r.line: r for r in outcome.errors}
    assert sorted(errors) == [3, 5, 7]
    assert "date" in errors[3].field_errors
    assert errors[5].field_errors == {"person_external_id": ["Not found."]}
    assert errors[7].code == "invalid_hours"
    batch = ImportBatch.objects.get(pk=outcome.batch.pk)
    assert [e["line"] for e in batch.errors] == [3, 5, 7] and batch.rows_failed == 3


def test_partial_keeps_the_good_rows(world, psa_user):
    outcome = import_time_csv(content=csv_bytes(GOOD[0], "psa-9,psa-anna,,NOPE,2025-03-10,1,,x,"),
                              filename="p.csv", user=psa_user, partial=True)
    assert outcome.status == "partial"
    assert list(TimeEntry.objects.values_list("external_id", flat=True)) == ["psa-1"]


def test_dry_run_saves_nothing_then_the_checked_file_is_imported(world, psa_user):
    dry = import_time_csv(content=csv_bytes(*GOOD), filename="week.csv", user=psa_user, dry_run=True)
    assert dry.status == "dry_run" and dry.summary()["created"] == 2
    assert not TimeEntry.objects.exists()

    real = import_checked_file(batch=dry.batch, user=psa_user)
    assert real.status == "done" and real.batch.pk != dry.batch.pk
    assert TimeEntry.objects.count() == 2
    with pytest.raises(ApplicationError):
        import_checked_file(batch=real.batch, user=psa_user)


def test_header_problems_fail_on_line_1(world, psa_user):
    outcome = import_time_csv(content=b"external_id,hours,colour\nx,1,red\n", filename="h.csv", user=psa_user)
    assert outcome.status == "failed" and outcome.batch.errors[0]["line"] == 1
    assert "missing columns: date" in outcome.error and "unknown columns: colour" in outcome.error
    with pytest.raises(ApplicationError, match="UTF-8"):
        parse_time_csv("external_id;date\n\xe9".encode("latin-1"))


def test_semicolons_and_a_bom(world, psa_user):
    content = ("\ufeff" + HEADER.replace(",", ";") + GOOD[0].replace(",", ";") + "\n").encode()
    records, lines = parse_time_csv(content)
    assert lines == [2] and records[0]["hours"] == "7.5" and records[0]["project_code"] == "PRJ-A"


def test_command(world, psa_user, tmp_path):
    path = tmp_path / "week.csv"
    path.write_bytes(csv_bytes(*GOOD))
    out = StringIO()
    call_command("import_time_csv", str(path), "--dry-run", "--user", "svc-psa", stdout=out)
    assert "dry_run: 2 rows, 2 created" in out.getvalue() and not TimeEntry.objects.exists()
    call_command("import_time_csv", str(path), stdout=out)
    assert TimeEntry.objects.count() == 2

    path.write_bytes(csv_bytes("psa-7,psa-anna,,PRJ-A,2025-03-12,x,,y,"))
    out = StringIO()
    with pytest.raises(CommandError, match="nothing was saved"):
        call_command("import_time_csv", str(path), stdout=out)
    assert "line 2 (psa-7)" in out.getvalue()


def test_the_shipped_sample_imports_cleanly(db, psa_user):
    """docs/samples/psa_time_export.csv against the people and projects it names."""
    for code in ("PRJ-ROLLOUT", "PRJ-AUDIT"):
        ProjectFactory(code=code)
    PersonFactory(code="P-0001", source="psa", external_id="E-1001", email="lena.hoffmann@nordwind.example")
    PersonFactory(code="P-0002", source="psa", external_id="E-1002", email="tom.baker@nordwind.example")
    from approvals.services.defaults import ensure_approval_defaults

    ensure_approval_defaults()
    outcome = import_time_csv(content=SAMPLE.read_bytes(), filename=SAMPLE.name, user=psa_user, dry_run=True)
    assert outcome.status == "dry_run" and not outcome.errors, [r.as_dict() for r in outcome.errors]
    assert outcome.summary()["created"] >= 5


def test_demo_leaves_one_checked_export_and_saves_no_time(world, settings):
    from integrations.demo_sync import DEMO_FILE, seed_demo_sync

    made = seed_demo_sync(log=lambda line: None)
    assert made["checked PSA export"] == 1
    batch = ImportBatch.objects.get(filename=DEMO_FILE)
    assert batch.status == "dry_run" and batch.rows_failed == 0 and batch.rows_total == 2
    assert not TimeEntry.objects.exists()
    assert not seed_demo_sync(log=lambda line: None)  # idempotent
