"""Filters shared by the API's lists (django-filter): code lists and timestamps that never reach the database raw."""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


def split_codes(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class CodeListFilter(django_filters.CharFilter):
    """`?client=C-1,C-2`: one or several codes."""

    def filter(self, qs, value):
        return qs.filter(**{f"{self.field_name}__in": split_codes(value)}) if value else qs


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with any offset, converted to UTC here (PostgreSQL refuses offsets beyond ±15:59)."""

    def strptime(self, value, format):
        parsed = super().strptime(value, format)
        try:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(datetime.UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError("out of range") from exc
        return parsed

    def to_python(self, value):
        result = super().to_python(value)
        if result is not None and not (1900 <= result.year <= 2200):
            raise forms.ValidationError("Use a date and time between 1900 and 2200.", code="invalid")
        return result


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
