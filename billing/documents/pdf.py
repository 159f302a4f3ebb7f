"""Invoice and credit-note PDFs with WeasyPrint from `templates/billing/documents/invoice.html`.

The output is deterministic for the same invoice, template, vendored fonts and library
versions, on any machine (the fonts are vendored, see `fonts_dir`):
the PDF's creation and modification dates are the invoice's approval time and
its file identifier is derived from the number (no clock, no random id), so a
re-render can be compared with the stored bytes. The stored bytes are what is
served, whatever changes later.
"""

from __future__ import annotations

import datetime
import io
import logging
from decimal import Decimal
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from django import template
from django.conf import settings
from django.template import Context, Engine

from billing.documents.content import InvoiceContent
from billing.documents.ubl import payment_terms_text
from kernel.money import minor_unit, quantum, round_money

register = template.Library()

TEMPLATE = "billing/documents/invoice.html"
LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "CL", "CO", "VE", "GT", "CR", "PR"})


def generator() -> str:
    import weasyprint

    return f"billable invoice pdf 2 (WeasyPrint {weasyprint.__version__})"


# --- filters used by the template (plain text; the template autoescapes) -----------------------


@register.filter
def amount(value: Decimal, currency: str) -> str:
    """`1234.5, EUR` → `1,234.50`; JPY without decimals; minus sign U+2212."""
    return f"{round_money(Decimal(value), currency):,}".replace("-", "−")


@register.filter
def rate(value: Decimal, currency: str) -> str:
    """Unit price as precise as stored, at least the currency's minor unit."""
    value = Decimal(value)
    q = quantum(currency)
    normalized = value.normalize()
    shown = value.quantize(q) if normalized.as_tuple().exponent > q.as_tuple().exponent else normalized
    decimals = max(-shown.as_tuple().exponent, minor_unit(currency))
    return f"{shown:,.{decimals}f}".replace("-", "−")


@register.filter
def quantity(value: Decimal) -> str:
    return f"{Decimal(value):,.2f}".replace("-", "−")


@register.filter
def percent(value: Decimal) -> str:
    normalized = Decimal(value).normalize()
    return f"{normalized:f} %"


@register.filter
def iban(value: str) -> str:
    """IBAN in groups of four, as printed on paper."""
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


@cache
def _engine() -> Engine:
    dirs = [d for options in settings.TEMPLATES for d in options.get("DIRS", [])]
    return Engine(dirs=dirs, libraries={"documents_pdf": "billing.documents.pdf"}, autoescape=True)


def paper_size(content: InvoiceContent) -> str:
    """US Letter for entities in Letter countries, else A4."""
    return "letter" if content.seller.country in LETTER_COUNTRIES else "A4"


def render_html(content: InvoiceContent, *, paper: str | None = None) -> str:
    issued_at = content.issued_at.astimezone(datetime.UTC).replace(microsecond=0)
    context = {
        "c": content,
        "paper": paper or paper_size(content),
        "payment_terms": payment_terms_text(content),
        "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
        "generator": generator(),
        "contract_default_name": f"Contract {content.contract_code}",
    }
    return _engine().get_template(TEMPLATE).render(Context(context))


def fonts_dir() -> Path:
    """The vendored fonts the template's @font-face rules name: the only files a rendering reads."""
    return Path(settings.BASE_DIR) / "static" / "vendor" / "fonts" / "ibm-plex"


@cache
def _decompressed(path: Path) -> bytes:
    """The font of a WOFF2 file as TrueType bytes, once per process.

    WeasyPrint would decompress every font of every @font-face rule on every rendering (in
    pure Python: four times the cost of the rest of a rendering); the result is the same bytes.
    """
    from fontTools.ttLib import woff2

    out = io.BytesIO()
    woff2.decompress(io.BytesIO(path.read_bytes()), out)
    return out.getvalue()


@cache
def _font_fetcher():
    """WeasyPrint URL fetcher: a font file of `fonts_dir()`, and nothing else.

    No network, no other file: text from the data cannot pull in a URL, and the fonts are
    the vendored ones, never the machine's (the same bytes on every machine).
    """
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class VendoredFontFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            parts = urlsplit(url)
            path = Path(url2pathname(parts.path)).resolve() if parts.scheme == "file" else None
            if path is None or path.parent != fonts_dir().resolve() or path.suffix != ".woff2" or not path.is_file():
                raise ValueError(f"invoice PDFs fetch no resource but the vendored fonts: {url}")
            return URLFetcherResponse(url, body=_decompressed(path), headers={"Content-Type": "font/ttf"})

    return VendoredFontFetcher(allowed_protocols=("file",))


def render_pdf(content: InvoiceContent, *, paper: str | None = None) -> bytes:
    """The invoice PDF; for a Factur-X client a PDF/A-3b with the CII e-invoice embedded (billing.documents.cii)."""
    if not content.facturx:
        return pdf_from_html(render_html(content, paper=paper), identifier=content.number.encode("utf-8"))
    from billing.documents.cii import facturx_pdf, render_cii
    from billing.documents.validation import validate_facturx
    from kernel.errors import ApplicationError

    xml = render_cii(content)
    report = validate_facturx(xml)
    if not report.is_valid:
        raise ApplicationError(
            f"The Factur-X XML of {content.number} fails validation, so it is not issued: "
            + "; ".join(report.summary()[:5]),
            code="einvoice_invalid",
        )
    pdf = pdf_from_html(render_html(content, paper=paper), identifier=content.number.encode("utf-8"),
                        variant="pdf/a-3b")
    return facturx_pdf(pdf, xml, content)


def pdf_from_html(html: str, *, identifier: bytes, variant: str | None = None) -> bytes:
    """The PDF of a rendered invoice template: reads the vendored fonts, nothing else of the machine."""
    from weasyprint import HTML

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # one INFO line per rendering step
    base_url = f"{Path(settings.BASE_DIR).resolve().as_uri()}/"  # the font URLs are relative to the repository
    document = HTML(string=html, base_url=base_url, url_fetcher=_font_fetcher()).render()
    return document.write_pdf(pdf_identifier=identifier, uncompressed_pdf=False, pdf_variant=variant)
