"""Row fragments of the dense collections tables (AR aging, client statement), rendered in one join.

A template loop over these rows spent most of the page's time resolving variables, running
the `money` and `date` filters, `{% url %}` and the status-badge `{% include %}` cell by cell.
Here each row is one `format_html` call over values computed once: URLs are reversed once
per table, the status badge is made once per status (billing's `invoice_status_badge`). Every value is
escaped: by `format_html`, or once by `escape` for the drill-down link an aging row repeats in
six cells; amounts come from `kernel.money.money` as on every other page. The markup is the
templates' own (templates/disputes/collections/), and so are their ids and labels.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from django import template
from django.template.defaultfilters import urlencode
from django.utils.dates import MONTHS_3
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import template_localtime

from billing.templatetags.invoice_rows import invoice_status_badge
from kernel.money import money
from kernel.rows import url_pattern

register = template.Library()

#: Markup without data (constants, never user input).
_ZERO = mark_safe('<span class="zero">–</span>')
_MUTED_DASH = mark_safe('<span class="muted">–</span>')
_NOT_DUE = mark_safe('<span class="muted">not due</span>')
_HANDED_OFF = mark_safe(' <span class="badge badge-info">Handed off</span>')
_KIND_BADGES = {
    "credit_note": mark_safe('<span class="badge badge-info">Credit note</span>'),
    "payment": mark_safe('<span class="badge badge-success">Payment</span>'),
}
_UNAPPLIED_ROW = mark_safe(' class="ledger-row-unapplied"')
_EMPTY = SafeString("")


def _date(value: datetime.date | None) -> str:
    """As the templates' `|date:"j M Y"` (Django's DateFormat `j`, `M`, `Y`), without parsing the format per cell."""
    return f"{value.day} {MONTHS_3[value.month].title()} {value.year:04d}" if value else ""


# --- AR aging -----------------------------------------------------------------------------------------------

_AGING_ROW = (
    '<tr><th scope="row"><a href="{}?as_of={}">{}</a> <span class="muted small">{}</span></th><td>{}</td>{}'
    '<td class="num"><a class="cell-link" href="{}all#drill"><strong>{}</strong></a></td>'
    '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>'
)
_AGING_CELL = '<td class="num"><a class="cell-link" href="{}{}#drill">{}</a></td>'
_ZERO_CELL = f'<td class="num">{_ZERO}</td>'


@register.simple_tag
def aging_client_rows(rows: Iterable[Any], base_query: str, as_of: datetime.date) -> SafeString:
    """The client rows of one entity of the AR aging: statement link, bucket cells drilling down, totals."""
    statement = url_pattern("disputes:client_statement")
    as_of_param = as_of.isoformat()  # as `|date:'Y-m-d'`
    out = []
    for row in rows:
        ccy = row.currency
        drill = escape(f"?{base_query}&client={row.client_id}&bucket=")  # escaped once for the row's six links
        # Safe parts only: the escaped link, a bucket key (a constant of the selector), `money`'s markup.
        cells = SafeString(
            "".join(
                _AGING_CELL.format(drill, key, money(amount, ccy)) if amount else _ZERO_CELL
                for key, amount in row.cells
            )
        )
        out.append(
            format_html(
                _AGING_ROW,
                statement.format(row.client_id),
                as_of_param,
                row.client_name,
                row.client_code,
                ccy,
                cells,
                drill,
                money(row.total, ccy),
                money(row.disputed, ccy) if row.disputed else _ZERO,
                money(row.unapplied, ccy) if row.unapplied else _ZERO,
                row.invoices,
            )
        )
    return SafeString("".join(out))


@register.simple_tag
def aging_total_rows(totals: Iterable[Any], row_class: str, label: str, suffix: str = "") -> SafeString:
    """Subtotal or grand-total rows of the AR aging, one per currency, headed `label` + `suffix`."""
    return format_html_join(
        "",
        '<tr class="{}"><th scope="row">{}{}</th><td>{}</td>{}<td class="num">{}</td><td class="num">{}</td>'
        '<td class="num">{}</td><td class="num">{}</td></tr>',
        (
            (
                row_class,
                label,
                suffix,
                t.currency,
                format_html_join("", '<td class="num">{}</td>', ((money(a, t.currency),) for _k, a in t.cells)),
                money(t.total, t.currency),
                money(t.disputed, t.currency),
                money(t.unapplied, t.currency),
                t.invoices,
            )
            for t in totals
        ),
    )


@register.simple_tag
def aging_unapplied_rows(unapplied: Iterable[Any]) -> SafeString:
    """Unapplied cash per payer: the client's statement link (an unknown payer has none), payments, amount."""
    statement = url_pattern("disputes:client_statement")
    return format_html_join(
        "",
        '<tr><th scope="row">{}</th><td class="num">{}</td><td class="num">{}</td></tr>',
        (
            (
                format_html(
                    '<a href="{}">{}</a> <span class="muted small">{}</span>',
                    statement.format(u.client_id),
                    u.client_name,
                    u.client_code,
                )
                if u.client_id
                else u.client_name,
                u.payments,
                money(u.amount, u.currency),
            )
            for u in unapplied
        ),
    )


_DRILL_ROW = (
    '<tr><th scope="row"><a href="{}">{}</a></th>{}<td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td>'
    "<td>{} {} {} {}</td><td>{}</td>"
    '<td class="num">{}</td><td class="num"><strong>{}</strong></td><td>{}</td></tr>'
)
_DISPUTE_OPEN = mark_safe('<span class="badge badge-todo">Dispute open</span>')
_HANDED_OFF_BADGE = mark_safe('<span class="badge badge-info">Handed off</span>')
_NO_REMINDER = mark_safe('<span class="muted">none</span>')


def _status_badges() -> Any:
    """invoice → its status badge (billing's one definition of it), made once per status of a table."""
    badges: dict[str, str] = {}

    def badge(invoice: Any) -> str:
        html = badges.get(invoice.status)
        if html is None:
            html = badges[invoice.status] = invoice_status_badge(invoice.status, invoice.get_status_display())
        return html

    return badge


@register.simple_tag
def aging_drill_rows(invoices: Iterable[Any], drill_client: Any, can_hand_off: bool, here: str) -> SafeString:
    """The invoices behind an aging cell: status and dispute, reminders, amounts, hand-off (templates' _drill.html).

    The client column only when the drill-down is not already one client's (`drill_client` None).
    """
    detail = url_pattern("billing:invoice_detail")
    handoff = url_pattern("disputes:handoff_new")
    next_param = urlencode(here)
    badge = _status_badges()
    out = []
    for inv in invoices:
        ccy = inv.currency
        held = inv.held_in_dispute
        if inv.dunning_level:
            reminded = template_localtime(inv.last_reminder_at)
            reminders = format_html(
                'Level {} <span class="muted small">{}</span>',
                inv.dunning_level,
                f"{reminded.day} {MONTHS_3[reminded.month].title()}" if reminded else "",
            )
        else:
            reminders = _NO_REMINDER
        out.append(
            format_html(
                _DRILL_ROW,
                detail.format(inv.pk),
                inv.number,
                format_html('<td>{}<div class="muted small">{}</div></td>', inv.client.legal_name, inv.client.code)
                if not drill_client
                else _EMPTY,
                inv.entity.code,
                _date(inv.issue_date),
                _date(inv.due_date),
                inv.days_past_due if inv.days_past_due > 0 else _NOT_DUE,
                badge(inv),
                _DISPUTE_OPEN if inv.has_live_dispute else _EMPTY,
                format_html(
                    '<div class="muted small partial-dispute">{} in dispute; the rest is due</div>', money(held, ccy)
                )
                if held and held < inv.open_balance
                else _EMPTY,
                _HANDED_OFF_BADGE if inv.open_handoff_id else _EMPTY,
                reminders,
                money(inv.total, ccy),
                money(inv.open_balance, ccy),
                format_html('<a class="btn btn-sm" href="{}?next={}">Hand off</a>', handoff.format(inv.pk), next_param)
                if can_hand_off and not inv.open_handoff_id
                else _EMPTY,
            )
        )
    return SafeString("".join(out))


# --- client statement ---------------------------------------------------------------------------------------

_OPEN_ITEM_ROW = (
    '<tr><th scope="row"><a href="{}">{}</a></th><td>{}</td><td>{}</td><td class="num">{}</td>'
    "<td>{}{}{}</td>"
    '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
    '<td class="num"><strong>{}</strong></td><td class="no-print">{}</td></tr>'
)


@register.simple_tag
def statement_open_item_rows(invoices: Iterable[Any], can_hand_off: bool, here: str) -> SafeString:
    """The open invoices of a client statement: dates, days late, status and reminders, amounts, hand-off."""
    detail = url_pattern("billing:invoice_detail")
    handoff = url_pattern("disputes:handoff_new")
    next_param = urlencode(here)
    badge = _status_badges()
    out = []
    for inv in invoices:
        ccy = inv.currency
        action = (
            format_html('<a class="btn btn-sm" href="{}?next={}">Hand off</a>', handoff.format(inv.pk), next_param)
            if can_hand_off and not inv.open_handoff_id
            else _EMPTY
        )
        out.append(
            format_html(
                _OPEN_ITEM_ROW,
                detail.format(inv.pk),
                inv.number,
                _date(inv.issue_date),
                _date(inv.due_date),
                inv.days_past_due if inv.days_past_due > 0 else _NOT_DUE,
                badge(inv),
                _HANDED_OFF if inv.open_handoff_id else _EMPTY,
                format_html(' <span class="small muted">reminder {}</span>', inv.dunning_level)
                if inv.dunning_level
                else _EMPTY,
                money(inv.total, ccy),
                money(inv.credited_amount, ccy) if inv.credited_amount else _MUTED_DASH,
                money(inv.paid_amount, ccy) if inv.paid_amount else _MUTED_DASH,
                money(inv.open_balance, ccy),
                action,
            )
        )
    return SafeString("".join(out))


_LEDGER_ROW = (
    "<tr{}><td>{}</td><td>{} {}</td><td>{}</td>"
    '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>'
)


@register.simple_tag
def statement_ledger_rows(ledger: Any) -> SafeString:
    """The activity of one currency of a client statement: documents and payments with the running balance."""
    detail = url_pattern("billing:invoice_detail")
    ccy = ledger.currency
    return format_html_join(
        "",
        _LEDGER_ROW,
        (
            (
                _UNAPPLIED_ROW if e.unapplied else _EMPTY,
                _date(e.date),
                e.reference
                if e.kind == "payment"
                else format_html('<a href="{}">{}</a>', detail.format(e.invoice_id), e.reference),
                _KIND_BADGES.get(e.kind, _EMPTY),
                e.description,
                money(e.debit, ccy) if e.debit else _EMPTY,
                money(e.credit, ccy) if e.credit else _EMPTY,
                money(e.balance, ccy),
            )
            for e in ledger.entries
        ),
    )
