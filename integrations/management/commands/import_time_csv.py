"""`manage.py import_time_csv FILE [--dry-run] [--partial] [--source psa] [--user USERNAME]`.

The same service as the upload page (integrations.services.csv_import): every row a
time-entry upsert, errors with their line numbers, all or nothing unless --partial.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from integrations.services.csv_import import import_time_csv


class Command(BaseCommand):
    help = "Import a PSA time export (CSV): one time-entry upsert per row; all or nothing unless --partial."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The CSV file (UTF-8, header on line 1).")
        parser.add_argument("--dry-run", action="store_true", help="Check every row, save nothing.")
        parser.add_argument("--partial", action="store_true", help="Keep the good rows when some are in error.")
        parser.add_argument("--source", default="psa", help="Source of the external ids (default: psa).")
        parser.add_argument("--user", help="Username the import is recorded under (default: the system).")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        user = None
        if options["user"]:
            user = get_user_model()._default_manager.filter(username=options["user"], is_active=True).first()
            if user is None:
                raise CommandError(f"No active user {options['user']!r}.")
        outcome = import_time_csv(
            content=path.read_bytes(),
            filename=path.name,
            user=user,
            source=options["source"],
            dry_run=options["dry_run"],
            partial=options["partial"],
        )
        for result in outcome.errors:
            where = f"line {result.line}" if result.line else f"record {result.index}"
            fields = "; ".join(f"{k}: {' '.join(v)}" for k, v in result.field_errors.items())
            self.stdout.write(f"{where} ({result.external_id or '-'}): {result.message}" + (f" [{fields}]"
                                                                                          if fields else ""))
        if outcome.error:
            self.stdout.write(f"error: {outcome.error}")
        counts = outcome.summary()
        batch = outcome.batch
        self.stdout.write(
            f"Import {batch.pk if batch else '-'} {outcome.status}: {counts['total']} rows, "
            f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged, "
            f"{counts['error']} in error" + (" (dry run: nothing saved)" if outcome.dry_run else "")
            + (" — nothing saved" if outcome.status == "failed" else "")
        )
        if outcome.status == "failed":
            raise CommandError("Import failed: nothing was saved.")
