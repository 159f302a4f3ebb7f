"""What the row tags share: dense table rows written in Python instead of a template loop (ADR 0133).

A row of a queue costs 0.5–1 ms through the template engine (variables, filters, `{% url %}`,
`{% csrf_token %}` per row). The apps' row tags (`approvals/templatetags/approval_queue.py`,
`billing/templatetags/invoice_rows.py`, `billing/templatetags/work_cells.py`,
`disputes/templatetags/collections_tables.py`) write the same markup with these helpers:

- `format_html`: Django's, on a cheaper escape (every value escaped unless already safe);
- `url_pattern`: a URL reversed once per table, the row's id put in its place;
- `DateTexts`: the `date` filter's text, formatted once per distinct date of a table;
- `NumberTexts`: the `floatformat` filter's text, once per distinct number of a table.
"""

from __future__ import annotations

import datetime
import html
from typing import Any

from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import dateformat
from django.utils.safestring import SafeString, mark_safe

#: A stand-in id: the URL is reversed with it, then each row's id is put in its place.
_SLOT = 2_147_483_647


def escape(value: Any) -> str:
    """`django.utils.html.conditional_escape` without its lazy-string wrapper (a row escapes thirty values)."""
    if hasattr(value, "__html__"):
        return value.__html__()
    return html.escape(str(value))


def format_html(template: str, *args: Any, **kwargs: Any) -> SafeString:
    """`django.utils.html.format_html` on `escape`: every argument escaped unless already safe."""
    return mark_safe(  # the template is ours and every value in it is escaped
        template.format(*map(escape, args), **{name: escape(value) for name, value in kwargs.items()})
    )


def url_pattern(name: str, *args: Any) -> str:
    """The URL `name` for `args` and one object id (its last argument), as a `str.format` pattern: `/…/{}/…`."""
    return reverse(name, args=[*args, _SLOT]).replace(str(_SLOT), "{}")


class DateTexts:
    """What the `date` filter prints for a format, once per distinct (date, format) of one table."""

    def __init__(self) -> None:
        self._seen: dict[tuple[datetime.date, str], str] = {}

    def __call__(self, value: datetime.date | None, fmt: str) -> str:
        if not value:
            return ""
        key = (value, fmt)
        text = self._seen.get(key)
        if text is None:
            text = self._seen[key] = dateformat.format(value, fmt)
        return text


class NumberTexts:
    """What the `floatformat` filter prints for an argument, once per distinct number of one table
    (a drill-down's hundreds of entries book a handful of distinct hours)."""

    def __init__(self, arg: str) -> None:
        self._arg = arg
        self._seen: dict[Any, str] = {}

    def __call__(self, value: Any) -> str:
        text = self._seen.get(value)
        if text is None:
            text = self._seen[value] = floatformat(value, self._arg)
        return text
