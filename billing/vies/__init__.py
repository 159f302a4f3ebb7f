"""EU VIES VAT-number validation behind an adapter (ADR 0077).

`VIES_ADAPTER` names the adapter by dotted path (empty: no VIES checks); the shipped one speaks the
Commission's REST API (`billing.vies.rest.RestViesAdapter`), and the simulator
(`manage.py vies_simulator`) speaks the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils.module_loading import import_string


class ViesUnavailable(Exception):
    """VIES (or the member state's service behind it) did not answer: never a block."""


@dataclass(frozen=True)
class ViesAnswer:
    valid: bool
    request_date: date
    consultation_number: str = ""
    name: str = ""
    address: str = ""


def get_vies_adapter():
    path = getattr(settings, "VIES_ADAPTER", "")
    return import_string(path)() if path else None
