"""Check e-invoices: UBL XSD, CEN EN 16931, Peppol BIS Billing 3.0, XRechnung; Factur-X (CII in PDF/A-3).

Files: a UBL Invoice or CreditNote (.xml), a Factur-X CII XML, or a Factur-X PDF (its embedded XML).

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
from billing.documents.validation import (
    FACTURX,
    LAYERS,
    PEPPOL_RELEASE,
    ValidationReport,
    validate_facturx,
    validate_ubl,
)
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
            if not self._report(str(path), self._validate_file(xml)):
                failed += 1
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) failed validation.")

    @staticmethod
    def _validate_file(data: bytes) -> ValidationReport:
        """A Factur-X PDF or CII XML gets the Factur-X checks; anything else is read as UBL."""
        if data.startswith(b"%PDF"):
            from facturx import get_xml_from_pdf

            _name, xml = get_xml_from_pdf(data, check_xsd=False)
            if not xml:
                return ValidationReport(xsd_errors=["A PDF without an embedded Factur-X / ZUGFeRD XML."])
            return validate_facturx(xml)
        if b"CrossIndustryInvoice" in data[:2000]:
            return validate_facturx(data)
        return validate_ubl(data)

    def _report(self, name: str, report: ValidationReport, *, quiet_warnings: bool = False) -> bool:
        if report.is_valid:
            syntax = "Factur-X XSD" if report.layers == (FACTURX,) else "UBL 2.1 XSD"
            rules = ", ".join(f"{layer} {PEPPOL_RELEASE}" if "Peppol" in layer else layer for layer in report.layers)
            self.stdout.write(
                f"{name}: valid {report.document} ({syntax}, {rules}: "
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
        invoices = (Invoice.objects.filter(number__isnull=False).select_related("client")
                    .order_by("-approved_at", "-id"))
        if limit:
            invoices = invoices[:limit]
        checked = failed = unrenderable = 0
        kinds = {Invoice.Kind.INVOICE: 0, Invoice.Kind.CREDIT_NOTE: 0}
        xsd = [0, 0]  # documents checked, with errors
        per_layer = {layer: [0, 0, 0] for layer in LAYERS}  # documents checked, with a fatal, with a warning
        for invoice in invoices.iterator(chunk_size=200):
            checked += 1
            kinds[invoice.kind] += 1
            try:
                content = invoice_content(invoice)
                xml = render_ubl(content)
            except ApplicationError as exc:
                unrenderable += 1
                failed += 1
                self.stdout.write(f"{invoice.number}: no e-invoice: {exc}")
                continue
            reports = [validate_ubl(xml)]
            if content.facturx:
                from billing.documents.cii import render_cii

                try:
                    reports.append(validate_facturx(render_cii(content)))
                except Exception as exc:  # factur-x raises bare exceptions: a finding, not a crash
                    reports.append(ValidationReport(document="CrossIndustryInvoice", layers=(FACTURX,),
                                                    xsd_errors=[str(exc)]))
            ok = True
            for report in reports:
                xsd[0] += 1
                xsd[1] += bool(report.xsd_errors)
                for layer, (fatal, warning) in report.counts().items():
                    per_layer[layer][0] += 1
                    per_layer[layer][1] += bool(fatal)
                    per_layer[layer][2] += bool(warning)
                if not report.is_valid:
                    ok = False
                    self._report(invoice.number, report)
            payable = Decimal(etree.fromstring(xml).find(PAYABLE.replace("//", ".//")).text)
            if payable != invoice.total:
                ok = False
                self.stdout.write(f"{invoice.number}: payable {payable} ≠ invoice total {invoice.total}")
            failed += not ok
        self.stdout.write(
            f"{checked} issued document(s) checked ({kinds[Invoice.Kind.INVOICE]} invoices, "
            f"{kinds[Invoice.Kind.CREDIT_NOTE]} credit notes): {checked - failed} valid with totals equal, "
            f"{failed} failed."
        )
        self.stdout.write(f"  not renderable (no e-invoice possible): {unrenderable}")
        self.stdout.write(f"  XSD (UBL 2.1, Factur-X CII): {xsd[0]} checked, {xsd[1]} with errors")
        for layer, (run, fatal, warning) in per_layer.items():
            self.stdout.write(f"  {layer}: {run} checked, {fatal} with a fatal finding, {warning} with a warning")
        if failed:
            raise CommandError(f"{failed} of {checked} issued document(s) failed.")
