"""Audit helpers: every save of a financial record carries who and why."""
from __future__ import annotations

from typing import Any

from django.db import models


def save_audited(obj: models.Model, *, user: Any, reason: str, update_fields: list[str] | None = None) -> None:
    """Save `obj` so its simple-history row names the acting user and the reason."""
    obj._history_user = user if getattr(user, "pk", None) else None
    obj._change_reason = reason[:100] if reason else ""
    obj.save(update_fields=update_fields)
