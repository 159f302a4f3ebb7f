"""The dense cells of the PM's time queue, rendered in Python.

A week grid holds one popover per entry (its description and a reject form). Through the template
engine each costs about a millisecond (two URL reversals, a CSRF input, eight filters), so a queue of a
few hundred entries spent most of its time there. `{% pm_entry_popover e project_code %}` writes the
same markup with `kernel.rows.format_html` (everything escaped), the URL reversed once per request.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import floatformat
from django.utils.safestring import SafeString

from kernel.rows import format_html, url_pattern

register = template.Library()

_NON_BILLABLE = SafeString('<abbr class="ap-nb" title="Non-billable">NB</abbr>')


def _reject_url(context: Any, kind: str, pk: int) -> str:
    patterns = context.render_context.setdefault("work_cells_reject_urls", {})  # reversed once per page
    if kind not in patterns:
        patterns[kind] = url_pattern("approvals:pm_work_reject", kind)
    return patterns[kind].format(pk)


@register.simple_tag(takes_context=True)
def pm_entry_popover(context: Any, entry: Any, project_code: str) -> str:
    """An entry's hours in the PM's week grid: a popover with its description and a reject form."""
    hours = floatformat(entry.hours, "-2")
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
        long_date=date_filter(entry.date, "l j F"),
        short_date=date_filter(entry.date, "D j M"),
        code=project_code,
        nb_label="" if entry.billable else ", non-billable",
        nb=nb,
        nb_text="" if entry.billable else " · non-billable",
        url=url,
        csrf=context.get("csrf_token", ""),
        here=context.get("here", ""),
    )
