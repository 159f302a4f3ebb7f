"""Calendar periods: a billing month as its first and last day."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """First and last day of the month; `calendar.IllegalMonthError` (a ValueError) for a bad month."""
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def month_of(day: date) -> tuple[date, date]:
    """First and last day of the month `day` falls in."""
    return month_bounds(day.year, day.month)


def previous_month(today: date) -> tuple[date, date]:
    """First and last day of the month before `today`'s (what a monthly run bills, a reminder checks)."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end
