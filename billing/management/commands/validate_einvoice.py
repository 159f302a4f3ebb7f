"""Check UBL 2.1 Invoices and CreditNotes against the UBL XSD and the CEN EN 16931 rules.

`validate_einvoice FILE.xml …` checks files; `validate_einvoice --issued` renders
(without storing) and checks the e-invoice of every numbered invoice and credit note
in the database, and that its payable amount is the invoice's total — the support
check behind "every issued document passes" (used on the demo data).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from lxml import etree

from billing.documents.content import invoice_content
from billing.documents.ubl import render_ubl
from billing.documents.validation import ValidationReport, validate_ubl
from billing.models import Invoice

PAYABLE = "//{*}LegalMonetaryTotal/{*}PayableAmount"


class Command(BaseCommand):
    help = (
        "python manage.py validate_einvoice FILE.xml [FILE.xml ...] | --issued [--limit N]: "
        "prints every failed rule; exit 1 if any"
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", type=Path)
        parser.add_argument("--issued", action="store_true", help="Check every numbered invoice and credit note.")
        parser.add_argument("--limit", type=int, default=0, help="With --issued: at most N documents (newest first).")

    def handle(self, *args, files: list[Path], issued: bool, limit: int, **options):
        if bool(files) == issued:
            raise CommandError("Give UBL files, or --issued (not both).")
        if issued:
            self._issued(limit)
            return
        failed = 0
        for path in files:
            try:
                xml = path.read_bytes()
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc
            if not self._report(str(path), validate_ubl(xml)):
                failed += 1
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) failed validation.")

    def _report(self, name: str, report: ValidationReport) -> bool:
        if report.is_valid:
            self.stdout.write(f"{name}: valid {report.document} (UBL 2.1 XSD, EN 16931: no failed rule)")
            return True
        self.stdout.write(
            f"{name}: {len(report.xsd_errors)} XSD error(s), {len(report.fatal)} fatal and "
            f"{len(report.warnings)} warning rule(s) failed"
        )
        for finding in report.summary():
            self.stdout.write(f"  {finding}")
        return False

    def _issued(self, limit: int) -> None:
        invoices = Invoice.objects.filter(number__isnull=False).order_by("-approved_at", "-id")
        if limit:
            invoices = invoices[:limit]
        checked = failed = 0
        kinds = {Invoice.Kind.INVOICE: 0, Invoice.Kind.CREDIT_NOTE: 0}
        for invoice in invoices.iterator(chunk_size=200):
            xml = render_ubl(invoice_content(invoice))
            report = validate_ubl(xml)
            checked += 1
            kinds[invoice.kind] += 1
            ok = report.is_valid
            payable = Decimal(etree.fromstring(xml).find(PAYABLE.replace("//", ".//")).text)
            if payable != invoice.total:
                ok = False
                self.stdout.write(f"{invoice.number}: payable {payable} ≠ invoice total {invoice.total}")
            if not report.is_valid:
                self._report(invoice.number, report)
            failed += not ok
        self.stdout.write(
            f"{checked} issued document(s) checked ({kinds[Invoice.Kind.INVOICE]} invoices, "
            f"{kinds[Invoice.Kind.CREDIT_NOTE]} credit notes): {checked - failed} valid with totals equal, "
            f"{failed} failed."
        )
        if failed:
            raise CommandError(f"{failed} of {checked} issued document(s) failed.")
