"""Invoice and credit-note PDFs with WeasyPrint from `templates/billing/documents/invoice.html`.

The output is deterministic for the same invoice, template and library versions:
the PDF's creation and modification dates are the invoice's approval time and
its file identifier is derived from the number (no clock, no random id), so a
re-render can be compared with the stored bytes. The stored bytes are what is
served, whatever changes later.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal
from functools import cache

from django import template
from django.conf import settings
from django.template import Context, Engine

from billing.documents.content import InvoiceContent
from billing.documents.ubl import payment_terms_text
from billing.money import minor_unit, quantum, round_money

register = template.Library()

TEMPLATE = "billing/documents/invoice.html"
LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "CL", "CO", "VE", "GT", "CR", "PR"})


def generator() -> str:
    import weasyprint

    return f"billable invoice pdf 1 (WeasyPrint {weasyprint.__version__})"


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


def render_pdf(content: InvoiceContent, *, paper: str | None = None) -> bytes:
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # one INFO line per rendering step
    html = render_html(content, paper=paper)
    # Nothing is fetched: the template is self-contained, and text from the data cannot pull in a URL.
    no_fetching = URLFetcher(allowed_protocols=())
    document = HTML(string=html, base_url=str(settings.BASE_DIR), url_fetcher=no_fetching).render()
    return document.write_pdf(pdf_identifier=content.number.encode("utf-8"), uncompressed_pdf=False)
