"""Customer delivery of issued invoices and credit notes by e-mail, with a delivery log (issue #7).

(Being built.) `schedule_delivery` is called when an invoice becomes `posted`.
"""

from __future__ import annotations

from billing.models import Invoice


def schedule_delivery(*, invoice: Invoice) -> None:
    """After commit, e-mail the posted invoice to the client's billing addresses (django-q2 task)."""
