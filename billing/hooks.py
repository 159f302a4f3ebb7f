"""Where feature apps plug into billing without billing importing them (ADR 0014, ADR 0080).

Billing is below the feature apps (`integrations`, `disputes`, `insights`): it may not
import them. Where a billing service needs one of them at a fixed point, the feature app
registers its callable here from its `AppConfig.ready()`, and billing calls the hook:

| hook | registered by | called by |
|---|---|---|
| `score_invoices(invoices, drafts=)` | `insights` (anomaly, dispute risk) | the billing run, `invoice_revalidate` |
| `annotate_cash_impact(queryset)` | `insights` (cash priority) | the invoice list sorted by priority |
| `enqueue_posting(invoice=, user=)` | `integrations` (the ERP outbox) | `request_posting` with an ERP configured |
| `credit_note_listener()` | `disputes` (a credit note's dispute) | the credit-note services |

A hook nobody registered does nothing (scores, credit-note listener) or refuses with
`ImproperlyConfigured` where skipping it would lose data (posting to the ERP).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet

_hooks: dict[str, Any] = {}


def _register(name: str, value: Any) -> None:
    _hooks[name] = value


# --- scores (insights) ------------------------------------------------------------------------------

InvoiceScorer = Callable[..., Any]


def register_invoice_scorer(scorer: InvoiceScorer) -> None:
    """`scorer(invoices, drafts=None)`: score new drafts before they are routed for approval."""
    _register("invoice_scorer", scorer)


def score_invoices(invoices: Sequence[Any], *, drafts: Sequence[Any] | None = None) -> None:
    scorer = _hooks.get("invoice_scorer")
    if scorer is not None:
        if drafts is None:
            scorer(invoices)
        else:
            scorer(invoices, drafts=drafts)


def register_cash_impact(annotate: Callable[[QuerySet], QuerySet]) -> None:
    """`annotate(invoices)` adds `cash_impact` (the invoice list's "priority" order)."""
    _register("cash_impact", annotate)


def annotate_cash_impact(queryset: QuerySet) -> QuerySet:
    annotate = _hooks.get("cash_impact")
    if annotate is None:
        from django.db.models import Value

        return queryset.annotate(cash_impact=Value(0))
    return annotate(queryset)


# --- posting (integrations) ---------------------------------------------------------------------------


def register_posting_outbox(enqueue: Callable[..., Any]) -> None:
    """`enqueue(invoice=, user=)`: write the ERP posting message in the caller's transaction."""
    _register("posting_outbox", enqueue)


def enqueue_posting(*, invoice: Any, user: Any) -> None:
    enqueue = _hooks.get("posting_outbox")
    if enqueue is None:
        raise ImproperlyConfigured("ERP_POSTING_ENABLED is set but no posting outbox is registered (integrations).")
    enqueue(invoice=invoice, user=user)


# --- credit notes and disputes (disputes) ---------------------------------------------------------------


class CreditNoteListener(Protocol):
    """What the credit-note services tell the app that holds disputes (all inside their transaction)."""

    def is_reissue(self, credit_note: Any) -> bool:
        """The credit note was made to credit and reissue (its lines go back to be billed again)."""
        ...

    def fully_credited(self, invoice: Any, *, credit_note: Any, user: Any) -> None:
        """`invoice` was fully credited by `credit_note`: settle what the customer still disputed."""
        ...

    def decided(self, credit_note: Any, *, user: Any, text: str) -> None:
        """`credit_note` was approved or rejected: record `text` where its claim is followed up."""
        ...


class _NoListener:
    def is_reissue(self, credit_note: Any) -> bool:
        return False

    def fully_credited(self, invoice: Any, *, credit_note: Any, user: Any) -> None:
        return None

    def decided(self, credit_note: Any, *, user: Any, text: str) -> None:
        return None


def register_credit_note_listener(listener: CreditNoteListener) -> None:
    _register("credit_note_listener", listener)


def credit_note_listener() -> CreditNoteListener:
    return _hooks.get("credit_note_listener") or _NoListener()
