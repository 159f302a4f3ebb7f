"""Peppol delivery through an access-point provider (ADR 0070).

Billable is no Peppol access point itself: a provider's access point (Storecove, ecosio, Pagero-style
REST APIs) takes the UBL document, looks the receiver up in the Peppol SMP, transmits it over AS4 and
reports back. This package is the seam: `AccessPointAdapter` (send, status) with the shipped HTTP
adapter (`billing.access_point.http`) and a simulator of the provider (`billing.access_point.simulator`,
`manage.py peppol_simulator`). The provider's delivery receipts come back as a signed webhook
(`integrations.api.peppol_receipts`), which `billing.services.delivery.peppol_receipt_apply` applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

#: Transmission states an access point reports.
ACCEPTED, DELIVERED, REJECTED = "accepted", "delivered", "rejected"


@dataclass(frozen=True)
class PeppolError:
    """One reason of a rejection: a Peppol rule id (PEPPOL-EN16931-R…, BR-…) or a transport code, and its text."""

    code: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.text}" if self.text else self.code

    @classmethod
    def parse(cls, items: Any) -> list[PeppolError]:
        errors = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("code"):
                errors.append(cls(str(item["code"])[:100], str(item.get("text", ""))[:500]))
        return errors


@dataclass(frozen=True)
class Transmission:
    id: str
    status: str  # accepted | delivered | rejected
    errors: list[PeppolError] = field(default_factory=list)


class AccessPointError(Exception):
    """The access point did not take the document: refused it (`errors`), or could not be reached."""

    def __init__(self, message: str, *, errors: list[PeppolError] | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.retryable = retryable


class AccessPointAdapter(Protocol):
    def send(self, *, document: bytes, sender: str, receiver: str, document_type: str,
             idempotency_key: str) -> Transmission:
        """Hand a UBL document (`document_type` invoice | credit_note) to the access point for `receiver`."""

    def status(self, transmission_id: str) -> Transmission:
        """Where the transmission is now (accepted, delivered, rejected with errors)."""


@cache
def _adapter_class(path: str) -> type:
    from django.utils.module_loading import import_string

    return import_string(path)


def access_point() -> AccessPointAdapter:
    """The configured adapter (`PEPPOL_AP_ADAPTER`)."""
    from django.conf import settings

    return _adapter_class(settings.PEPPOL_AP_ADAPTER)()
