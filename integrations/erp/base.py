"""The ERP adapter interface: four calls, one result type, errors classified for the outbox.

The outbox only needs to know whether a call worked (and the ERP's id), failed for good
(a 4xx: the document is wrong, retrying will not help), failed in a way worth
retrying (5xx, 429, connection refused), or ended with an unclear outcome (the request
left but no answer came back: a timeout, a dropped connection) — after which the next
attempt looks the document up by its idempotency key before sending it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


class Outcome(StrEnum):
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    UNCLEAR = "unclear"


@dataclass(frozen=True)
class ErpResult:
    """The ERP acknowledged the document (or already had it): its id for the document."""

    erp_id: str
    status_code: int = 200
    replayed: bool = False


@dataclass(frozen=True)
class ErpPayment:
    """Cash the ERP applied to one of Billable's invoices: `payment_id` is the ERP's, stable across reads."""

    payment_id: str
    invoice_erp_id: str
    date: Any
    amount: Any
    currency: str


class ErpError(Exception):
    """A call that did not deliver; `outcome` tells the outbox what to do next."""

    def __init__(
        self, message: str, *, outcome: Outcome, status_code: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.message = message
        self.outcome = outcome
        self.status_code = status_code
        self.retry_after = retry_after

    @property
    def trips_circuit(self) -> bool:
        """Only failures of the endpoint itself count towards opening its circuit (not a rejected document)."""
        return self.outcome != Outcome.PERMANENT and self.status_code != 429


class ErpAdapter(ABC):
    """What the outbox asks of an ERP. Every call carries the message's idempotency key."""

    endpoint = "erp"

    @abstractmethod
    def upsert_customer(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult: ...

    @abstractmethod
    def post_invoice(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult: ...

    @abstractmethod
    def post_credit_note(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult: ...

    def post_journal(self, document: dict[str, Any], *, idempotency_key: str) -> ErpResult:
        """Post a journal entry (canonical kind `journal`: the revenue close).

        Adapters that book journals override it; the others refuse it for good, so the message
        becomes a dead letter finance sees with this reason.
        """
        raise ErpError(
            f"{type(self).__name__} does not accept journal entries yet: book {document.get('number', '')} by hand "
            "in the ERP, or post it through an adapter that books journals.",
            outcome=Outcome.PERMANENT,
        )

    @abstractmethod
    def invoice_status(self, *, idempotency_key: str = "", number: str = "") -> ErpResult | None:
        """The ERP's record of a document, by idempotency key (or number); None when it has none."""

    def invoice_payments(self, erp_ids: list[str]) -> list[ErpPayment]:
        """Payments the ERP recorded against these invoices (adapters that read payments back override it)."""
        raise NotImplementedError(f"{type(self).__name__} does not read payments back.")

    def close(self) -> None:  # optional: adapters with connections override it
        return None


def get_adapter() -> ErpAdapter:
    """The configured adapter (`settings.ERP_ADAPTER`), one per process, reused across deliveries."""
    global _ADAPTER
    path = settings.ERP_ADAPTER
    key = (path, settings.ERP_BASE_URL, settings.ERP_AUTH, settings.ERP_TIMEOUT_S,
           getattr(settings, "TRYTON_DATABASE", ""))
    if _ADAPTER is None or _ADAPTER[0] != key:
        if _ADAPTER is not None:
            _ADAPTER[1].close()
        _ADAPTER = (key, import_string(path)())
    return _ADAPTER[1]


_ADAPTER: tuple[tuple, ErpAdapter] | None = None
