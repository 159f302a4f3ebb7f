"""Objects of the collections rows of the permissions matrix (portal/matrix/collections.py)."""

from __future__ import annotations

from typing import Any

from billing.models import Client
from disputes.models import CollectionsHandoff
from disputes.services.collections import handoff_create
from tests.disputes.collections.factories import issued_invoice
from tests.factories import UserFactory


def build_targets(world) -> dict[str, Any]:
    invoice = issued_invoice(days_late=40, total="1200.00")
    other = issued_invoice(client=invoice.client, entity=invoice.entity, days_late=95, total="300.00")
    handoff = handoff_create(
        invoice=other, user=UserFactory(username="matrix-collector", groups=["collections"]),
        reason="Matrix: no reply to three reminders", assignee="Inkasso Nord GmbH",
    )
    assert handoff.status == CollectionsHandoff.Status.OPEN
    return {"coll-inv": invoice, "coll-handoff": handoff, "coll-client": invoice.client}


BODIES = {
    "disputes:dunning_send": lambda w, o: {},
    "disputes:handoff_new": lambda w, o: {"reason": "Matrix check: 60 days late", "assignee": "Legal"},
    "disputes:handoff_close": lambda w, o: {"note": "Matrix check: paid in full"},
    "disputes:collections_profile": lambda w, o: {
        "in_payment_plan": "", "payment_plan_note": "", "dunning_offsets": "10, 30", "reason": "Matrix check"
    },
}


def url_kwarg(param: str, obj: Any, rule) -> Any:
    if param == "client_id" and isinstance(obj, Client):
        return obj.pk
    return None
