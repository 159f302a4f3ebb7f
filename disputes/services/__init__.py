"""Dispute and collections use cases (docs/rules/disputes-and-collections.md), one module per area.

- `disputes`: open, investigate, note, reassign, withdraw and resolve a dispute; what the
  credit-note services tell disputes (`CreditNoteListener`, ADR 0080).
- `collections`: dunning, hand-offs to collections, collections profiles.

The dispute services are re-exported here (`from disputes.services import dispute_open`).
"""

from disputes.services.disputes import (
    CREDIT_ROLES,
    DEFAULT_SLA_DAYS,
    DISPUTABLE,
    DISPUTE_ROLES,
    CreditNoteListener,
    can_credit,
    can_work_disputes,
    credit_note_is_reissue,
    dispute_add_note,
    dispute_investigate,
    dispute_note_credit_note_decided,
    dispute_open,
    dispute_reassign,
    dispute_resolve,
    dispute_sla_days,
    dispute_withdraw,
    disputes_close_on_full_credit,
)

__all__ = [
    "CREDIT_ROLES",
    "DEFAULT_SLA_DAYS",
    "DISPUTABLE",
    "DISPUTE_ROLES",
    "CreditNoteListener",
    "can_credit",
    "can_work_disputes",
    "credit_note_is_reissue",
    "dispute_add_note",
    "dispute_investigate",
    "dispute_note_credit_note_decided",
    "dispute_open",
    "dispute_reassign",
    "dispute_resolve",
    "dispute_sla_days",
    "dispute_withdraw",
    "disputes_close_on_full_credit",
]
