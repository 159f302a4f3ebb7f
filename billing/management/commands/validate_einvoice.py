"""Check UBL 2.1 Invoices and CreditNotes: UBL XSD, CEN EN 16931 rules, Peppol BIS Billing 3.0 rules.

`validate_einvoice FILE.xml …` checks files; `validate_einvoice --issued` renders
(without storing) and checks the e-invoice of every numbered invoice and credit note
in the database, and that its payable amount is the invoice's total — the support
check behind "every issued document passes" (used on the demo data); it prints the
counts per layer. Fatal findings fail a document; warnings are printed, not counted
as failures (Peppol's own examples carry some).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from lxml import etree

from billing.documents.content import invoice_content
from billing.documents.ubl import render_ubl
from billing.documents.validation import LAYERS, PEPPOL_RELEASE, ValidationReport, validate_ubl
from billing.models import Invoice
from kernel.errors import ApplicationError

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

    def _report(self, name: str, report: ValidationReport, *, quiet_warnings: bool = False) -> bool:
        if report.is_valid:
            self.stdout.write(
                f"{name}: valid {report.document} (UBL 2.1 XSD, EN 16931, Peppol BIS 3.0 {PEPPOL_RELEASE}: "
                f"no fatal rule; {len(report.warnings)} warning(s))"
            )
            if not quiet_warnings:
                for finding in report.warnings:
                    self.stdout.write(f"  {finding}")
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
        checked = failed = unrenderable = xsd_failed = 0
        kinds = {Invoice.Kind.INVOICE: 0, Invoice.Kind.CREDIT_NOTE: 0}
        per_layer = {layer: [0, 0] for layer in LAYERS}  # documents with a fatal, with a warning
        for invoice in invoices.iterator(chunk_size=200):
            checked += 1
            kinds[invoice.kind] += 1
            try:
                xml = render_ubl(invoice_content(invoice))
            except ApplicationError as exc:
                unrenderable += 1
                failed += 1
                self.stdout.write(f"{invoice.number}: no e-invoice: {exc}")
                continue
            report = validate_ubl(xml)
            xsd_failed += bool(report.xsd_errors)
            for layer, (fatal, warning) in report.counts().items():
                per_layer[layer][0] += bool(fatal)
                per_layer[layer][1] += bool(warning)
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
        self.stdout.write(f"  not renderable (no e-invoice possible): {unrenderable}")
        self.stdout.write(f"  UBL 2.1 XSD: {xsd_failed} with errors")
        for layer, (fatal, warning) in per_layer.items():
            self.stdout.write(f"  {layer}: {fatal} with a fatal finding, {warning} with a warning")
        if failed:
            raise CommandError(f"{failed} of {checked} issued document(s) failed.")
