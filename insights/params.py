"""Parsing of the KPI filters from a query string, a form or the command line (one place for all three)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from insights.selectors import KpiFilters

#: Dates a period may use (the arithmetic of 90-day windows and weeks stays far from date's limits).
EARLIEST = datetime.date(2000, 1, 1)
LATEST = datetime.date(2100, 12, 31)


def default_period(today: datetime.date | None = None) -> tuple[datetime.date, datetime.date]:
    """The twelve months up to today: from the first day of the month a year ago (12 full months + this one)."""
    today = today or timezone.localdate()
    start = today.replace(day=1)
    start = start.replace(year=start.year - 1)
    return start, today


def _date(value: Any) -> datetime.date | None:
    if isinstance(value, datetime.date):
        return value if EARLIEST <= value <= LATEST else None
    if not value:
        return None
    try:
        day = datetime.date.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return day if EARLIEST <= day <= LATEST else None


def parse_filters(data: Mapping[str, Any], *, today: datetime.date | None = None) -> KpiFilters:
    """Filters from `data` (period_start, period_end, entity, client, business_unit); bad dates → defaults."""
    start, end = default_period(today)
    period_start = _date(data.get("period_start")) or start
    period_end = _date(data.get("period_end")) or end
    if period_end < period_start:
        period_start, period_end = period_end, period_start

    def text(key: str) -> str | None:
        value = str(data.get(key) or "").strip()
        return value or None

    return KpiFilters(period_start, period_end, entity=text("entity"), client=text("client"),
                      business_unit=text("business_unit"), today=today)
