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


def working_days(start: date, end: date) -> int:
    """Monday to Friday in [start, end] (public holidays are not modelled)."""
    days = (end - start).days + 1
    return sum(1 for offset in range(days) if (start + timedelta(days=offset)).weekday() < 5)


def first_of_month(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return month_of(day)[1] + timedelta(days=1)
