"""The dense cells of the PM's time queue, rendered in Python.

A week grid holds one popover per entry (its description and a reject form). Through the template
engine each costs about a millisecond (two URL reversals, a CSRF input, eight filters), so a queue of a
few hundred entries spent most of its time there. `{% pm_week_rows group user.pk %}` writes a week's
project rows and day cells, and `{% pm_entry_popover e project_code %}` one entry, with the same markup
through `kernel.rows.format_html` (everything escaped), the URL reversed once per request and each
distinct date and hours formatted once. The person-week around them, its header (figures and the
approve form) and its grid's head and day totals, is `{% pm_week_head group user.pk %}` and
`{% pm_week_table group user.pk %}`: a queue of 50 person-weeks spent 30 ms in those template loops.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from kernel.money import money
from kernel.rows import DateTexts, NumberTexts, format_html, url_pattern

register = template.Library()

_NON_BILLABLE = SafeString('<abbr class="ap-nb" title="Non-billable">NB</abbr>')


def _reject_url(context: Any, kind: str, pk: int) -> str:
    patterns = context.render_context.setdefault("work_cells_reject_urls", {})  # reversed once per page
    if kind not in patterns:
        patterns[kind] = url_pattern("approvals:pm_work_reject", kind)
    return patterns[kind].format(pk)


def _texts(context: Any) -> tuple[DateTexts, NumberTexts]:
    """The page's date and hours texts, formatted once per distinct value (a grid repeats both)."""
    texts = context.render_context.get("work_cells_texts")
    if texts is None:
        texts = context.render_context["work_cells_texts"] = (DateTexts(), NumberTexts("-2"))
    return texts


@register.simple_tag(takes_context=True)
def pm_entry_popover(context: Any, entry: Any, project_code: str) -> str:
    """An entry's hours in the PM's week grid: a popover with its description and a reject form."""
    date_text, number_text = _texts(context)
    hours = number_text(entry.hours)
    nb = "" if entry.billable else _NON_BILLABLE
    description = entry.description or "No description"
    url = _reject_url(context, "time", entry.pk)
    return format_html(
        '<details class="ap-pop" id="entry-{pk}">'
        '<summary title="{description}" aria-label="{hours} h on {long_date}, {code}{nb_label}: details or reject">'
        "{hours}{nb}</summary>"
        '<div class="ap-pop-body">'
        '<p class="small"><strong>{short_date} · {hours} h</strong>{nb_text}<br>'
        '<span class="muted">{description}</span></p>'
        '<form method="post" action="{url}" hx-post="{url}" hx-target="#pm-time" hx-select="#pm-time" '
        'hx-swap="outerHTML" hx-disabled-elt="find button">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">'
        '<input type="hidden" name="next" value="{here}">'
        '<label for="reason-t{pk}">Reason for rejecting {hours} h on {short_date}</label>'
        '<input type="text" id="reason-t{pk}" name="reason" required maxlength="1000" placeholder="What must change">'
        '<button type="submit" class="btn btn-sm">Reject entry</button>'
        "</form></div></details>",
        pk=entry.pk,
        description=description,
        hours=hours,
        long_date=date_text(entry.date, "l j F"),
        short_date=date_text(entry.date, "D j M"),
        code=project_code,
        nb_label="" if entry.billable else ", non-billable",
        nb=nb,
        nb_text="" if entry.billable else " · non-billable",
        url=url,
        csrf=context.get("csrf_token", ""),
        here=context.get("here", ""),
    )


_OWN_ENTRY = '<span class="ap-cell-entry" title="{}">{}{}</span>'
_DAY_SUM = '<span class="ap-cell-sum" title="{} entries on this day">= {}</span>'
_PROJECT = '<th scope="row"><span class="ap-project-code">{}</span> <span class="muted small">{}</span>{}</th>'
_NON_BILLABLE_BADGE = SafeString(' <span class="badge badge-info">Non-billable</span>')


@register.simple_tag(takes_context=True)
def pm_week_rows(context: Any, group: Any, user_id: int) -> SafeString:
    """The `<tr>`s of a person-week's grid (billing.selectors_work.WeekGroup): a row per project with
    the day cells and its total. Each entry is a popover to reject it (`pm_entry_popover`), or plain
    hours when the work is the user's own (a controller decides it)."""
    _, number_text = _texts(context)
    own = group.person_user_id == user_id

    def entry_html(entry: Any, code: str) -> str:
        if own:
            return format_html(
                _OWN_ENTRY, entry.description, number_text(entry.hours), "" if entry.billable else _NON_BILLABLE
            )
        return pm_entry_popover(context, entry, code)

    def cell_html(index: int, cell: list, total: Any, code: str) -> str:
        weekend = " is-weekend" if index >= 5 else ""
        if not cell:
            return f'<td class="num ap-pm-cell{weekend}"></td>'
        entries = "".join(entry_html(entry, code) for entry in cell)
        total_html = format_html(_DAY_SUM, len(cell), number_text(total)) if len(cell) > 1 else ""
        return f'<td class="num ap-pm-cell{weekend}"><div class="ap-cell-stack">{entries}{total_html}</div></td>'

    rows = []
    for row in group.rows:
        code = row.project.code
        head = format_html(
            _PROJECT, code, Truncator(row.project.name).chars(34), _NON_BILLABLE_BADGE if row.non_billable else ""
        )
        cells = "".join(cell_html(i, cell, total, code) for i, (cell, total) in enumerate(row.day_cells))
        rows.append(f'<tr>{head}{cells}<td class="num"><strong>{number_text(row.total)}</strong></td></tr>')
    return mark_safe("".join(rows))  # every value escaped by format_html; the rest is this tag's markup


def _plural(count: int, singular: str, plural: str) -> str:
    return singular if count == 1 else plural


_HEAD = (
    '<header class="ap-group-head">'
    '<h2 id="group-title-{key}">{name} <span class="muted">· Week {week_number} · {first} – {last}</span></h2>'
    '<span class="ap-group-figures">{figures}'
    '<span class="muted" title="Since the oldest submission">waiting {age}</span></span>'
    '<span class="ap-group-actions">{actions}</span>'
    "</header>"
)
_OWN_WORK = SafeString(
    '<span class="badge badge-info">Your own work</span> '
    '<span class="muted small">A finance controller approves it (segregation of duties).</span>'
)
_APPROVE = (
    '<form method="post" action="{url}" hx-post="{url}" hx-target="#pm-time" hx-select="#pm-time" '
    'hx-swap="outerHTML" hx-disabled-elt="find button">'
    '<input type="hidden" name="csrfmiddlewaretoken" value="{csrf}"><input type="hidden" name="next" value="{here}">'
    "{items}"
    '<button type="submit" class="btn btn-sm btn-primary" aria-label="Approve week {week} of {name}">'
    "Approve week</button>"
    "</form>"
)


@register.simple_tag(takes_context=True)
def pm_week_head(context: Any, group: Any, user_id: int) -> SafeString:
    """A person-week's header: who and which week, hours, entries and expenses, how long it has waited,
    and the form approving exactly the items shown (none on the user's own work)."""
    date_text, number_text = _texts(context)
    figures = []
    if group.time_count:
        figures.append(format_html(
            "<span><strong>{} h</strong> in {} {}</span>",
            number_text(group.hours), group.time_count, _plural(group.time_count, "entry", "entries"),
        ))
    if group.non_billable_hours:
        figures.append(format_html(
            '<span class="badge badge-info" title="Not invoiced to the client">{} h non-billable</span>',
            number_text(group.non_billable_hours),
        ))
    if group.expense_count:
        amounts = "".join(f" · {money(amount, currency)}" for currency, amount in group.expense_totals)
        noun = _plural(group.expense_count, "expense", "expenses")
        amounts_html = mark_safe(amounts)  # money() escapes its currency
        figures.append(format_html("<span>{} {}{}</span>", group.expense_count, noun, amounts_html))
    if group.person_user_id == user_id:
        actions = _OWN_WORK
    else:
        items = "".join(f'<input type="hidden" name="time" value="{pk}">' for pk in group.time_ids)
        items += "".join(f'<input type="hidden" name="expense" value="{e.pk}">' for e in group.expenses)
        actions = format_html(
            _APPROVE,
            url=_approve_url(context),
            csrf=context.get("csrf_token", ""),
            here=context.get("here", ""),
            items=mark_safe(items),  # integer ids in this tag's markup
            week=group.week,
            name=group.person_name,
        )
    return format_html(
        _HEAD,
        key=group.key,
        name=group.person_name,
        week_number=date_text(group.monday, "W"),
        first=date_text(group.monday, "j M"),
        last=date_text(group.days[6], "j M Y"),
        figures=mark_safe("".join(figures)),  # built by format_html above
        age=group.age,
        actions=actions,
    )


def _approve_url(context: Any) -> str:
    cached = context.render_context.get("work_cells_approve_url")
    if cached is None:
        cached = context.render_context["work_cells_approve_url"] = reverse("approvals:pm_time_approve_week")
    return cached


@register.simple_tag(takes_context=True)
def pm_week_table(context: Any, group: Any, user_id: int) -> SafeString:
    """A person-week's grid: a column per day, a row per project (`pm_week_rows`) and the day totals."""
    date_text, number_text = _texts(context)
    days = "".join(
        format_html('<th scope="col" class="num{}">{}</th>', " is-weekend" if day.weekday() >= 5 else "",
                    date_text(day, "D j"))
        for day in group.days
    )
    totals = "".join(
        format_html('<td class="num">{}</td>', number_text(total) if total else "") for total in group.day_totals
    )
    return format_html(
        '<table class="table ap-dense ap-week-table">'
        '<caption class="visually-hidden">Hours of {name} by project and day</caption>'
        '<thead><tr><th scope="col">Project</th>{days}<th scope="col" class="num">Total</th></tr></thead>'
        "<tbody>{rows}</tbody>"
        '<tfoot><tr class="ap-totals"><th scope="row">Day total</th>{totals}'
        '<td class="num"><strong>{hours}</strong></td></tr></tfoot>'
        "</table>",
        name=group.person_name,
        days=mark_safe(days),  # built by format_html above
        rows=pm_week_rows(context, group, user_id),
        totals=mark_safe(totals),  # built by format_html above
        hours=number_text(group.hours),
    )
