"""The change-order document a client signs, and the signature certificate page appended to it.

Both are rendered with WeasyPrint; the certificate page is appended to the document with pypdf. The
certificate names the signer, the time (UTC), the IP address, the method and the SHA-256 of the
document as it was sent for signature, so anyone can check the signed PDF against the original.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import logging

from django.template.loader import render_to_string
from pypdf import PdfReader, PdfWriter

from billing.models import ChangeOrder


def _pdf(html: str, identifier: str) -> bytes:
    """A PDF from HTML; the fixed identifier keeps a rendering reproducible (the same bytes each time)."""
    from weasyprint import HTML

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # one INFO line per rendering step
    return HTML(string=html).write_pdf(pdf_identifier=identifier.encode())


def change_order_pdf(change_order: ChangeOrder) -> bytes:
    """The change order as sent for signature (its terms, rates and milestones)."""
    html = render_to_string(
        "customers/pdf/change_order.html",
        {
            "co": change_order,
            "contract": change_order.contract,
            "rates": list(change_order.rates.select_related("role", "person")),
            "milestones": list(change_order.milestones.select_related("project")),
            "terms": change_order.term_changes(),
        },
    )
    return _pdf(html, f"change-order-{change_order.pk}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_certificate(
    document: bytes,
    *,
    change_order: ChangeOrder,
    signer_name: str,
    signer_email: str,
    signer_ip: str | None,
    signed_at: datetime.datetime,
    method: str,
    reference: str,
) -> bytes:
    """`document` with a signature certificate page appended."""
    certificate = _pdf(
        render_to_string(
            "customers/pdf/certificate.html",
            {
                "co": change_order,
                "signer_name": signer_name,
                "signer_email": signer_email,
                "signer_ip": signer_ip or "—",
                "signed_at": signed_at,
                "method": method,
                "reference": reference,
                "document_sha256": sha256(document),
            },
        ),
        f"certificate-{change_order.pk}",
    )
    writer = PdfWriter()
    for source in (document, certificate):
        for page in PdfReader(io.BytesIO(source)).pages:
            writer.add_page(page)
    writer.add_metadata({"/Title": f"Change order {change_order} — signed", "/Subject": sha256(document)})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
