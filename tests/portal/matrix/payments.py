"""Objects of the payments rows of the permissions matrix (portal/matrix/payments.py)."""

from __future__ import annotations

import datetime
from typing import Any

from billing.models import Payment
from billing.services.payments import payment_record
from tests.disputes.payments.factories import finance_user, issued_invoice


def build_targets(world) -> dict[str, Any]:
    invoice = issued_invoice(total="1000.00", number="MX-PAY-000001")
    cash = payment_record(
        amount="250.00", currency="EUR", date=datetime.date(2025, 4, 20), external_reference="MX-BANK-1",
        source=Payment.Source.MANUAL, user=finance_user("matrix-pay-analyst"), invoice_reference="UNKNOWN-9",
    )
    exception = cash.exceptions.get()
    return {"pay-cash": cash, "pay-exc": exception, "pay-invoice": invoice}


BODIES = {
    "disputes:payment_new": lambda w, o: {
        "invoice_number": w.targets["pay-invoice"].number, "amount": "100.00", "currency": "EUR",
        "date": "2025-04-21", "external_reference": "MX-BANK-2", "note": "Matrix check",
    },
    "disputes:payment_apply": lambda w, o: {
        "invoice_number": w.targets["pay-invoice"].number, "reason": "Matrix check: remittance advice",
    },
    "disputes:payment_exception_resolve": lambda w, o: {"reason": "Matrix check: refunded"},
}
