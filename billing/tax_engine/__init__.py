"""Tax determination behind one interface (docs/rules/tax-engine.md).

A `TaxEngine` prices the tax of a draft invoice during a billing run or a revalidation
(`determine`), and is told when an invoice is approved (`commit`) and when a credit note cancels
it (`void`). The built-in engine is the rule table (`billing.tax_engine.rule_table.RuleTableEngine`,
today's behaviour); `BILLING_TAX_ENGINE` names another by dotted path, e.g. the HTTP adapter for an
Avalara/Vertex-style service (`billing.tax_engine.http.HttpTaxEngine`).

An engine that cannot answer never yields a silent zero: `determine` records the blocking
`TAX_ENGINE_UNAVAILABLE` exception on the draft, and revalidation prices it again. An engine that
cannot take an approved invoice's report has it retried until it does (`billing.services.tax_recordings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from billing.models import Contract, Invoice
    from billing.services.billing_engine import InvoiceDraft


class TaxEngineUnavailable(Exception):
    """The engine could not be reached or answered an error (retryable)."""


class TaxEngine:
    """The interface. Subclasses override `determine`; `commit`/`void` default to nothing to do."""

    name = "tax engine"

    def determine(self, draft: InvoiceDraft, contract: Contract) -> None:
        """Set `draft.taxes`, `draft.tax_total` and `draft.total`; record exceptions on the draft."""
        raise NotImplementedError

    def records(self, invoice: Invoice) -> bool:
        """Whether this engine keeps a record of `invoice` (then approval reports it: `commit` or `void`)."""
        return False

    def commit(self, invoice: Invoice) -> None:
        """The invoice was approved and numbered: record it as a final sale (idempotent)."""

    def void(self, invoice: Invoice, *, credit_note: Invoice) -> None:
        """A credit note cancelled the invoice: void its committed transaction (idempotent)."""


def get_tax_engine(**kwargs: Any) -> TaxEngine:
    """The configured engine: a fresh instance per run or revalidation (it may cache rules)."""
    path = getattr(settings, "BILLING_TAX_ENGINE", "") or "billing.tax_engine.rule_table.RuleTableEngine"
    return import_string(path)(**kwargs)
