"""The signature seam: billing asks "is this change order signed / this milestone signed off by the customer?"
without importing the app that holds signatures (ADR 0014, ADR 0095).

A feature app (`customers`) registers one check per kind from its `AppConfig.ready()`. With no check
registered the answer is *no*: a contract that requires a signature then blocks approval (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHANGE_ORDER = "change_order"
MILESTONE = "milestone"

_CHECKS: dict[str, Callable[[Any], bool]] = {}


def register_signature_check(kind: str, check: Callable[[Any], bool]) -> None:
    """`check(obj) -> bool`: whether `obj` carries a valid customer signature (or sign-off)."""
    if kind not in (CHANGE_ORDER, MILESTONE):
        raise ValueError(f"Unknown signature kind {kind!r}.")
    _CHECKS[kind] = check


def is_signed(kind: str, obj: Any) -> bool:
    check = _CHECKS.get(kind)
    return bool(check is not None and check(obj))
