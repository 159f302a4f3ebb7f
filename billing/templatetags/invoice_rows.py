"""Dense rows of the invoice screens, written in Python (ADR 0133, ADR 0134).

The review queue lists up to `QUEUE_LIMIT` invoices, an invoice page its lines and each time line's
drill-down every billed entry; a template loop with its filters, `{% url %}` and `{% include %}` per
row costs several times the queries of those pages. The markup is the templates' own, every value
escaped (`format_html`; the line and entry rows use `kernel.rows.format_html`, its cheaper twin).
Precedent: `project_options` in portal/templatetags/portal_tags.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from kernel import rows
from kernel.money import money
from kernel.rows import DateTexts, NumberTexts, url_pattern

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
    _date, _hours = DateTexts(), NumberTexts("2g")
    return mark_safe(  # every row from format_html, each value escaped
        "".join(
            rows.format_html(_ENTRY_ROW, person, _date(day, "D j M Y"), _hours(hours), description)
            for person, day, hours, description in entries
        )
    )


_LINE_ROW = (
    '<tr class="line line-{}"><td>{}{}</td><td class="num">{}{}</td><td class="num" title="{}">{}</td>'
    '<td class="num">{}</td><td class="small">{}</td></tr>'
)
_DRILL = (
    '<details class="drill"><summary>{} <span class="muted small">({} entr{})</span></summary>'
    '<table class="table nested"><thead><tr><th scope="col">Person</th><th scope="col">Date</th>'
    '<th scope="col" class="num">Hours</th><th scope="col">Description</th></tr></thead><tbody>{}</tbody></table>'
    "</details>"
)
_NO_ENTRIES = '<tr><td colspan="4" class="muted">{}</td></tr>'
_EXPENSE = '<div class="muted small">{} · {} · {} · {}{}</div>'
_SERVICE = '<div class="muted small line-service">Service {}</div>'
_HOURLY = frozenset({"time", "overage"})


@register.simple_tag
def invoice_line_rows(lines: Iterable[Any], currency: str) -> SafeString:
    """The `<tr>`s of an invoice's lines (a line group of billing.selectors.invoice_line_groups): what
    each line bills (a time line's drill-down of billed entries, an expense's receipts, a milestone's
    name), its service period, quantity × unit price = amount, and where the rate came from."""
    _date, _number = DateTexts(), NumberTexts("2g")

    def billed(line: Any) -> SafeString:
        kind = line.kind
        if kind in _HOURLY:
            entries = line.billed_entries
            what = line.description or line.get_kind_display()
            if not line.description and line.role_id:
                what = f"{what} · {line.role.code}"
            if kind == "overage":
                what = f"{line.get_kind_display()} · {what}"
            if entries:
                body = time_entry_rows(entries)
            else:
                body = rows.format_html(
                    _NO_ENTRIES,
                    "Hours split from entries partly covered by the retainer." if kind == "overage"
                    else "No entries linked.",
                )
            return rows.format_html(_DRILL, what, len(entries), "y" if len(entries) == 1 else "ies", body)
        if kind == "expense":
            text = line.get_kind_display() + (f" · {line.description}" if line.description else "")
            receipts = (
                rows.format_html(
                    _EXPENSE,
                    e.person.name,
                    _date(e.date, "j M Y"),
                    e.get_category_display(),
                    money(e.amount, e.currency),
                    " converted" if e.currency != currency else "",
                )
                for e in line.expenses.all()
            )
            return mark_safe(rows.escape(text) + "".join(receipts))  # every part escaped
        if kind == "milestone":
            names = [m.name for m in line.milestones.all()] or [line.description]
            return rows.format_html("{} · {}", line.get_kind_display(), "".join(names))
        return rows.format_html("{}", line.description or line.get_kind_display())

    def service(line: Any) -> SafeString | str:
        if not line.service_start:
            return ""
        start = _date(line.service_start, "j M Y")
        if line.service_start == line.service_end:
            return rows.format_html(_SERVICE, start)
        return rows.format_html(_SERVICE, f"{start} – {_date(line.service_end, 'j M Y')}")

    def unit_price(price: Any) -> str:
        return f"−{_number(-price)}" if price < 0 else _number(price)

    return mark_safe(  # every row from format_html, each value escaped
        "".join(
            rows.format_html(
                _LINE_ROW,
                line.kind,
                billed(line),
                service(line),
                _number(line.quantity),
                " h" if line.kind in _HOURLY else "",
                line.unit_price,
                unit_price(line.unit_price),
                money(line.amount, currency),
                line.rate_source_label or "—",
            )
            for line in lines
        )
    )
