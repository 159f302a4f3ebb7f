"""Lists on screens: one page of rows, the age of a queued item, a person's display name."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

PAGE_SIZE = 50


def paginate(items: QuerySet | list, page_number: str | None, *, per_page: int = PAGE_SIZE) -> Page:
    return Paginator(items, per_page).get_page(page_number)


def age_label(since: datetime.datetime | None, now: datetime.datetime) -> str:
    """Compact age for queues: `45 min`, `7 h`, `3 d`."""
    if since is None:
        return ""
    seconds = max((now - since).total_seconds(), 0)
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def display_name(user: Any) -> str:
    if user is None:
        return "system"
    return user.get_full_name() or user.get_username()
