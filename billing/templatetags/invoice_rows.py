"""Dense rows of the invoice screens, rendered in one `format_html_join` each.

The review queue lists up to `QUEUE_LIMIT` invoices and an invoice's drill-down every billed time
entry; a template loop with its filters, `{% url %}` and `{% include %}` per row costs several times
the queries of those pages. The markup is the templates' own, every value escaped (format_html).
Precedent: `project_options` in portal/templatetags/portal_tags.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.template.defaultfilters import floatformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from kernel.money import money
from kernel.rows import DateTexts, url_pattern

register = template.Library()

_ERROR = frozenset({"exception"})
_TODO = frozenset({"pending_approval", "disputed"})
_SUCCESS = frozenset({"approved", "posted", "sent", "partially_paid", "paid"})


def status_badge_class(status: str) -> str:
    """The badge colour of an invoice status (one definition for every screen that shows it)."""
    if status in _ERROR:
        return "badge-error"
    if status in _TODO:
        return "badge-todo"
    if status in _SUCCESS:
        return "badge-success"
    return "badge-info"


@register.simple_tag
def invoice_status_badge(status: str, label: Any) -> SafeString:
    """`<span class="badge …">label</span>` of an invoice status (templates/billing/_invoice_status.html)."""
    return format_html('<span class="badge {}">{}</span>', status_badge_class(status), label)


def _user_name(user: Any) -> str:
    return user.get_full_name() or user.get_username()


_QUEUE_ROW = (
    '<tr><th scope="row"><a href="{}">{}</a>{}</th>'
    '<td>{}<div class="muted small">{}</div></td><td>{}{}</td><td>{}</td>'
    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
    '<td class="num">{} d</td><td class="num">{}</td>{}</tr>'
)
_CREDIT_NOTE = format_html(' <span class="badge badge-info">{}</span>', "Credit note")
_YOU = format_html(
    '<span class="badge badge-info" title="{}">You</span>', "You prepared it; someone else approves it"
)
_SYSTEM = format_html('<span class="muted">{}</span>', "system")


def _flags(invoice: Any) -> SafeString:
    parts = []
    if invoice.open_blocking:
        parts.append(format_html('<span class="badge badge-error">{} blocking</span>', invoice.open_blocking))
    if invoice.open_warnings:
        n = invoice.open_warnings
        parts.append(format_html('<span class="badge badge-todo">{} warning{}</span>', n, "" if n == 1 else "s"))
    return SafeString(" ".join(parts))


def _priority_cell(invoice: Any) -> SafeString:
    risk = ""
    if getattr(invoice, "risk", None):
        # As `{% widthratio invoice.risk 1 100 %}` prints it.
        risk = format_html('<div class="muted small">risk {} %</div>', str(round(float(invoice.risk) * 100)))
    return format_html(
        '<td class="num">{}{}</td>', money(getattr(invoice, "cash_impact", None), invoice.entity.currency), risk
    )


@register.simple_tag
def invoice_queue_rows(invoices: Iterable[Any], user_id: int | None, priority: bool = False) -> SafeString:
    """The `<tr>`s of the review queue (invoice_queue rows); `priority` adds the cash-impact cell."""
    detail_url = url_pattern("billing:invoice_detail")
    _date = DateTexts()

    def row(invoice: Any) -> tuple:
        prepared_by = invoice.prepared_by
        if prepared_by is None:
            prepared = _SYSTEM
        elif invoice.prepared_by_id == user_id:
            prepared = _YOU
        else:
            prepared = _user_name(prepared_by)
        project = invoice.project
        return (
            detail_url.format(invoice.pk),
            invoice.display_number,
            _CREDIT_NOTE if invoice.kind == "credit_note" else "",
            invoice.client.legal_name,
            invoice.client.code,
            invoice.contract.code if invoice.contract_id else "",
            format_html('<div class="muted small">{}</div>', project.code) if project is not None else "",
            invoice.entity.code,
            _date(invoice.period_start, "M Y"),
            _date(invoice.issue_date, "j M Y"),
            _date(invoice.due_date, "j M Y"),
            invoice_status_badge(invoice.status, invoice.get_status_display()),
            _flags(invoice),
            prepared,
            invoice.age_days,
            money(invoice.total, invoice.currency),
            _priority_cell(invoice) if priority else "",
        )

    return format_html_join("", _QUEUE_ROW, (row(invoice) for invoice in invoices))


_ENTRY_ROW = '<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="muted">{}</td></tr>'


@register.filter
def time_entry_rows(entries: Iterable[Any]) -> SafeString:
    """The drill-down `<tr>`s of a time line's billed entries (billing.selectors.BilledEntry rows):
    person, date, hours, description."""
    _date = DateTexts()
    return format_html_join(
        "",
        _ENTRY_ROW,
        (
            (person, _date(day, "D j M Y"), floatformat(hours, "2g"), description)
            for person, day, hours, description in entries
        ),
    )
