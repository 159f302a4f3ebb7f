"""Objects of the dispute and credit-note rows of the permissions matrix (portal/matrix/disputes.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import Invoice
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_approve
from disputes.services import dispute_add_note, dispute_open
from tests.disputes.factories import issued_invoice
from tests.factories import UserFactory

REASON = "Permissions matrix check"


def build_targets(world) -> dict[str, Any]:
    analyst = UserFactory(username="matrix-dispute-analyst", groups=["finance_analyst"])
    controller = UserFactory(username="matrix-dispute-controller", groups=["finance_controller"])
    clean = issued_invoice()
    disputed = issued_invoice()
    dispute = dispute_open(invoice=disputed, category="hours", disputed_amount=Decimal("10.00"), user=analyst)
    note = dispute_add_note(dispute=dispute, user=analyst, text="Customer's timesheet",
                            attachment=SimpleUploadedFile("timesheet.txt", b"hours", "text/plain"))
    pending = credit_note_create(invoice=issued_invoice(), user=analyst, reason=REASON, amount=Decimal("10.00"))
    credited = issued_invoice()
    full = credit_note_create(invoice=credited, user=analyst, reason=REASON)
    invoice_approve(invoice=full, user=controller)
    credited.refresh_from_db()
    assert credited.status == Invoice.Status.CREDITED
    return {"disp-inv": clean, "disp-live": dispute, "disp-note": note, "cn-pending": pending,
            "inv-credited": credited}


BODIES = {
    "disputes:dispute_open": lambda w, o: {"category": "rate", "disputed_amount": "10.00"},
    "disputes:category_suggest": lambda w, o: {"description": "The hourly rate is wrong"},
    "disputes:dispute_investigate": lambda w, o: {},
    "disputes:dispute_note": lambda w, o: {"text": REASON},
    "disputes:dispute_withdraw": lambda w, o: {"reason": REASON},
    "disputes:dispute_reassign": lambda w, o: {"owner": o.owner_id, "due_date": "2030-01-31"},
    "disputes:dispute_resolve": lambda w, o: {"resolve-outcome": "upheld", "resolve-note": REASON},
    "disputes:credit_note_new": lambda w, o: {"mode": "amount", "amount": "10.00", "reason": REASON},
    "disputes:credit_note_withdraw": lambda w, o: {"reason": REASON},
    "disputes:invoice_reissue": lambda w, o: {},
}


def url_kwarg(param: str, obj: Any, rule) -> Any:
    if param == "invoice_id" and isinstance(obj, Invoice):
        return obj.pk
    return None
