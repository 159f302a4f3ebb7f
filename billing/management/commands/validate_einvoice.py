"""Check any UBL 2.1 Invoice or CreditNote against the UBL XSD and the CEN EN 16931 rules."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing.documents.validation import validate_ubl


class Command(BaseCommand):
    help = "python manage.py validate_einvoice FILE.xml [FILE.xml ...]: prints every failed rule; exit 1 if any"

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args, files: list[Path], **options):
        failed = 0
        for path in files:
            try:
                xml = path.read_bytes()
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
            report = validate_ubl(xml)
            if report.is_valid:
                self.stdout.write(f"{path}: valid {report.document} (UBL 2.1 XSD, EN 16931: no failed rule)")
                continue
            failed += 1
            self.stdout.write(
                f"{path}: {len(report.xsd_errors)} XSD error(s), {len(report.fatal)} fatal and "
                f"{len(report.warnings)} warning rule(s) failed"
            )
            for finding in report.summary():
                self.stdout.write(f"  {finding}")
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) failed validation.")
