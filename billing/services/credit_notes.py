"""Credit notes: full or partial corrections of an issued invoice (DESIGN §2, §6).

(Being built: creation by lines or amount, `credited_amount` under a row lock, release of
the billed items on a full credit. `credit_note_issued` is called by `invoice_approve` in
the approval transaction once the credit note is numbered.)
"""

from __future__ import annotations

from typing import Any

from billing.models import Invoice


def credit_note_issued(*, credit_note: Invoice, user: Any) -> None:
    """A credit note was approved and numbered: apply it to the invoice it credits."""
