"""Write an issued invoice's PDF and UBL e-invoice to files (support, tests).

The first call renders and stores the documents (as a first download would);
later calls write the stored bytes, identical every time.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing.models import Invoice, InvoiceDocument
from billing.services.documents import invoice_document, invoice_document_matches_rerender
from kernel.errors import ApplicationError


class Command(BaseCommand):
    help = "python manage.py render_invoice NUMBER [--pdf out.pdf] [--ubl out.xml] [--verify]"

    def add_arguments(self, parser):
        parser.add_argument("number", help="Invoice or credit-note number, e.g. DE01-2025-000042")
        parser.add_argument("--pdf", type=Path, help="Write the PDF here")
        parser.add_argument("--ubl", type=Path, help="Write the UBL 2.1 e-invoice here")
        parser.add_argument(
            "--verify", action="store_true", help="Also re-render and say whether the stored bytes are reproduced"
        )

    def handle(self, *args, number: str, pdf: Path | None, ubl: Path | None, verify: bool, **options):
        try:
            invoice = Invoice.objects.get(number=number)
        except Invoice.DoesNotExist as exc:
            raise CommandError(f"No invoice or credit note numbered {number!r}.") from exc
        targets = {InvoiceDocument.Kind.PDF: pdf, InvoiceDocument.Kind.UBL: ubl}
        if not pdf and not ubl:
            self.stdout.write("No --pdf or --ubl given: issuing (storing) both documents only.")
        for kind, target in targets.items():
            try:
                document = invoice_document(invoice=invoice, kind=kind)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            stored = f"{document.created_at:%Y-%m-%d %H:%M:%S} UTC"
            line = f"{kind}: {document.size} bytes, sha256 {document.sha256}, stored {stored}"
            if target:
                target.write_bytes(bytes(document.content))
                line += f" → {target}"
            if verify:
                same = invoice_document_matches_rerender(document=document)
                line += " · re-render identical" if same else " · re-render DIFFERS (stored bytes stay authoritative)"
            self.stdout.write(line)
