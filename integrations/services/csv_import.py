"""CSV import of PSA time exports (docs/rules/integrations.md): the upload page and `manage.py import_time_csv`.

A file is one batch of the inbound-sync engine (`integrations.services.inbound`): every
row is a time-entry upsert by `(source, external_id)`, and its result carries the file's
line number (the header is line 1). All or nothing unless `partial`; a dry run checks
everything and keeps nothing. The original file is kept with the import record
(`imports/batch-<id>.csv` in the media storage), so finance can see what came in and import a
checked file without uploading it again. The columns are described in
docs/manual/inbound-sync.md.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from integrations.models import ImportBatch
from integrations.services.inbound import UpsertOutcome, upsert_records
from kernel.errors import ApplicationError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User
else:
    User = Any

#: Inline imports stop here: a bigger export is split (or sent through the bulk API).
MAX_CSV_ROWS = 10_000
MAX_CSV_BYTES = 5 * 1024 * 1024
COLUMNS = (
    "external_id",
    "person_external_id",
    "person_email",
    "person_code",
    "project_code",
    "project_external_id",
    "date",
    "hours",
    "billable",
    "description",
    "status",
)
REQUIRED = ("external_id", "date", "hours")
ONE_OF = (("person_external_id", "person_email", "person_code"), ("project_code", "project_external_id"))


def stored_file_name(batch: ImportBatch) -> str:
    return f"imports/batch-{batch.pk}.csv"


def stored_file_exists(batch: ImportBatch) -> bool:
    return default_storage.exists(stored_file_name(batch))


def parse_time_csv(content: bytes) -> tuple[list[dict[str, str]], list[int]]:
    """The rows as upsert records with their line numbers; refuses a file that is not a PSA time export."""
    if len(content) > MAX_CSV_BYTES:
        raise ApplicationError(
            f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB; split the export.", code="file_too_large"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApplicationError("The file is not UTF-8 text; export it as UTF-8 CSV.", code="invalid_file") from exc
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ApplicationError("The file is empty.", code="invalid_file") from exc
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    missing += [" or ".join(group) for group in ONE_OF if not any(n in names for n in group)]
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown columns: {', '.join(unknown)}")
        raise ApplicationError(
            f"Line 1 (header): {'; '.join(problems)}. Expected columns: {', '.join(COLUMNS)}.", code="invalid_header"
        )
    if len(set(names)) != len(names):
        raise ApplicationError("Line 1 (header): a column appears twice.", code="invalid_header")
    records: list[dict[str, str]] = []
    lines: list[int] = []
    previous_end = reader.line_num
    try:
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(records) >= MAX_CSV_ROWS:
                raise ApplicationError(
                    f"More than {MAX_CSV_ROWS:,} rows; split the export (or use the bulk API).", code="too_many_rows"
                )
            records.append(_record(names, row, start))
            lines.append(start)
    except csv.Error as exc:
        raise ApplicationError(f"Line {reader.line_num}: not valid CSV ({exc}).", code="invalid_file") from exc
    return records, lines


def _record(names: list[str], row: list[str], line: int) -> dict[str, str]:
    if len(row) > len(names):
        # Too many cells: the engine reports it as an unknown field on this line.
        external_id = row[names.index("external_id")].strip()
        return {"external_id": external_id, "extra_cells": f"{len(row) - len(names)} more than the header"}
    record: dict[str, str] = {}
    for name, cell in zip(names, row, strict=False):
        value = cell.strip()
        if name == "hours" and "," in value and "." not in value:
            value = value.replace(",", ".")  # 7,5 in a European export
        if value == "" and name in ("person_external_id", "person_email", "person_code", "project_code",
                                    "project_external_id", "billable", "status"):
            continue  # not given: another key names the person or project; defaults apply
        record[name] = value
    return record


def import_time_csv(
    *,
    content: bytes,
    filename: str,
    user: User | None,
    source: str = "psa",
    dry_run: bool = False,
    partial: bool = False,
    keep_file: bool = True,
) -> UpsertOutcome:
    """Import (or, on a dry run, check) a PSA time export; every outcome is recorded as an ImportBatch."""
    try:
        records, lines = parse_time_csv(content)
    except ApplicationError as exc:
        batch = ImportBatch.objects.create(
            kind=ImportBatch.Kind.CSV_TIME, resource="time_entries", source=source, filename=filename[:255],
            dry_run=dry_run, all_or_nothing=not partial, status=ImportBatch.Status.FAILED,
            errors=[{"index": None, "line": 1, "external_id": "", "code": exc.code, "message": exc.message,
                     "field_errors": {}}],
            submitted_by=user if getattr(user, "pk", None) else None, finished_at=timezone.now(),
        )
        _keep(batch, content, keep_file)
        return UpsertOutcome(resource="time_entries", results=[], saved=False, dry_run=dry_run, partial=partial,
                             batch=batch, error=exc.message)
    outcome = upsert_records(
        resource="time_entries",
        records=records,
        lines=lines,
        user=user,
        source=source,
        partial=partial,
        dry_run=dry_run,
        kind=ImportBatch.Kind.CSV_TIME,
        filename=filename,
        reason=f"CSV import {filename}"[:100],
        max_records=None,
    )
    if outcome.batch is not None:
        _keep(outcome.batch, content, keep_file)
    return outcome


def _keep(batch: ImportBatch, content: bytes, keep_file: bool) -> None:
    if keep_file:
        name = stored_file_name(batch)
        if default_storage.exists(name):
            default_storage.delete(name)
        default_storage.save(name, ContentFile(content))


def import_checked_file(*, batch: ImportBatch, user: User, partial: bool = False) -> UpsertOutcome:
    """Import the file of a dry run as it was checked (no second upload): a new batch, the same file."""
    if batch.kind != ImportBatch.Kind.CSV_TIME or batch.status != ImportBatch.Status.DRY_RUN:
        raise ApplicationError("Only a dry run of a CSV time import can be imported from here.", code="not_dry_run")
    if not stored_file_exists(batch):
        raise ApplicationError("The checked file is no longer stored; upload it again.", code="file_missing")
    with default_storage.open(stored_file_name(batch), "rb") as handle:
        content = handle.read()
    return import_time_csv(content=content, filename=batch.filename, user=user, source=batch.source,
                           dry_run=False, partial=partial)
