"""Issue an invoice's documents once: the PDF and the UBL e-invoice, stored with their SHA-256.

Rendering is lazy (first download, `render_invoice`), not part of `invoice_approve`,
so approval stays fast. Once stored, a document is never rendered again: every
later call returns the stored row and every download the same bytes. Two first
requests racing both render, the unique (invoice, kind) constraint keeps one,
and the other returns it. An e-invoice is stored only when it passes the UBL 2.1
XSD and the EN 16931 rules with no failed assertion: it cannot be corrected later.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction

from billing.documents.content import InvoiceContent, invoice_content
from billing.documents.pdf import generator as pdf_generator
from billing.documents.pdf import pdf_from_html, render_html, render_pdf
from billing.documents.ubl import GENERATOR as UBL_GENERATOR
from billing.documents.ubl import render_ubl
from billing.documents.validation import validate_ubl
from billing.models import Invoice, InvoiceDocument
from kernel.errors import ApplicationError

logger = logging.getLogger(__name__)
Kind = InvoiceDocument.Kind


def _render(kind: str, content: InvoiceContent) -> tuple[bytes, str]:
    if kind == Kind.PDF:
        return render_pdf(content), pdf_generator()
    if kind == Kind.UBL:
        xml = render_ubl(content)
        report = validate_ubl(xml)
        if not report.is_valid:
            findings = "; ".join(report.summary()[:5])
            raise ApplicationError(
                f"The e-invoice of {content.number} fails validation, so it is not issued: {findings}",
                code="einvoice_invalid",
            )
        return xml, UBL_GENERATOR
    raise ApplicationError(f"Unknown document kind {kind!r}.")


def invoice_document(*, invoice: Invoice, kind: str, user: Any = None) -> InvoiceDocument:
    """The stored document of `kind` for a numbered invoice; rendered and stored on the first call."""
    if kind not in Kind.values:
        raise ApplicationError(f"Unknown document kind {kind!r}; use one of {', '.join(Kind.values)}.")
    stored = InvoiceDocument.objects.filter(invoice_id=invoice.pk, kind=kind).first()
    if stored is not None:
        return stored
    content = invoice_content(invoice)  # refuses an invoice without a number
    data, generator = _render(kind, content)
    try:
        with transaction.atomic():
            document = InvoiceDocument.objects.create(
                invoice_id=invoice.pk,
                kind=kind,
                content=data,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                generator=generator,
                created_by=user if getattr(user, "pk", None) else None,
            )
    except IntegrityError:
        stored = InvoiceDocument.objects.filter(invoice_id=invoice.pk, kind=kind).first()
        if stored is None:
            raise
        return stored  # a concurrent first request stored it: that one is the document
    logger.info("Issued %s of %s (%s bytes, sha256 %s)", kind, content.number, document.size, document.sha256)
    return document


def invoice_documents_render(*, invoice: Invoice, user: Any = None) -> dict[str, InvoiceDocument]:
    """Render and store the PDF and the UBL e-invoice of a numbered invoice; idempotent: returns the stored ones."""
    return {kind: invoice_document(invoice=invoice, kind=kind, user=user) for kind in Kind.values}


def invoice_document_matches_rerender(*, document: InvoiceDocument) -> bool:
    """Support check: does a fresh render give the stored bytes? Stores nothing, changes nothing."""
    data, _generator = _render(document.kind, invoice_content(document.invoice))
    return hashlib.sha256(data).hexdigest() == document.sha256


#: Invoices that can be previewed as a proforma: not numbered yet, still being prepared (docs/rules/billing.md §13).
PROFORMA_STATUSES = (Invoice.Status.DRAFT, Invoice.Status.EXCEPTION, Invoice.Status.PENDING_APPROVAL)


def invoice_proforma_pdf(*, invoice: Invoice) -> tuple[bytes, str]:
    """A proforma PDF of a draft, exception or pending invoice: (bytes, file name).

    Watermarked "PROFORMA — not a tax invoice", with no number; it is rendered for the
    reader and never stored, numbered, sent or posted — it changes nothing.
    """
    if invoice.number or invoice.status not in PROFORMA_STATUSES:
        raise ApplicationError(
            f"{invoice.display_number} is {invoice.get_status_display().lower()}: a proforma previews draft, "
            "exception and pending invoices only; issued invoices have their own PDF.",
            code="not_proforma",
        )
    content = invoice_content(invoice, proforma=True)
    data = pdf_from_html(render_html(content), identifier=f"proforma-{invoice.pk}".encode())
    return data, f"proforma-{invoice.pk}.pdf"
