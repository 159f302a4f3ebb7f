"""Posting an issued invoice or credit note to the ERP, and what follows the ERP's acknowledgement.

`request_posting` runs inside the approval transaction, right after numbering:
with an ERP configured (`ERP_POSTING_ENABLED`) it writes the outbox message in
that same transaction (the outbox registered in `billing.hooks` by integrations:
delivered by a django-q2 task, exactly once); without one, posting completes at once (docs/rules/domain.md).
`invoice_mark_posted` is the one way to `posted`: it records the ERP id and
schedules the customer delivery (e-mail) after commit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from billing.hooks import enqueue_posting
from billing.models import Invoice
from kernel.audit import save_audited
from kernel.workflow import apply_transition


def erp_posting_enabled() -> bool:
    return bool(getattr(settings, "ERP_POSTING_ENABLED", False))


def request_posting(*, invoice: Invoice, user: Any) -> None:
    """Post a just-numbered invoice: through the ERP outbox, or at once when no ERP is configured."""
    if erp_posting_enabled():
        enqueue_posting(invoice=invoice, user=user)
    else:
        invoice_mark_posted(invoice=invoice, erp_id="", user=user, reason="No ERP configured: posted on approval")


def invoice_mark_posted(*, invoice: Invoice, erp_id: str, user: Any, reason: str) -> Invoice:
    """`approved → posted` with the ERP's id (call inside a transaction, the invoice locked); then delivery."""
    from billing.services.delivery import schedule_delivery

    apply_transition(invoice, "mark_posted", user=user, reason=reason, label=invoice.display_number)
    invoice.erp_id = erp_id or invoice.erp_id
    save_audited(invoice, user=user, reason=reason)
    schedule_delivery(invoice=invoice)
    return invoice
