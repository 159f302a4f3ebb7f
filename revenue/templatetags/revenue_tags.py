"""Small template filters of the revenue screens."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def index(sequence: Any, position: int) -> Any:
    try:
        return sequence[position]
    except (IndexError, TypeError, KeyError):
        return None


@register.filter
def get(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def sub(a: Any, b: Any) -> Any:
    return a - b
