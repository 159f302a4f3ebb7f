"""Objects of the customer-side rows of the permissions matrix (portal/matrix/customers.py)."""

from __future__ import annotations

import uuid
from typing import Any

from billing.services.change_orders import change_order_submit
from customers.models import ClientContact
from tests.factories import ChangeOrderFactory, ContractFactory, ProjectFactory


def build_targets(world) -> dict[str, Any]:
    contract = ContractFactory(code="MX-CUST-SIGN")
    ProjectFactory(contract=contract, code="MX-CUST-PRJ", project_manager=world.users["project_manager"])
    change_order = change_order_submit(
        change_order=ChangeOrderFactory(contract=contract, code="CO-MX-CUST"), user=world.users["billing_admin"]
    )
    contact_user = type(world.users["billing_admin"]).objects.create_user(
        username="contact:mx@client.example", email="mx@client.example"
    )
    ClientContact.objects.create(user=contact_user, client=contract.client, email="mx@client.example", name="Max")
    return {"cust-obj": change_order, "cs-co": change_order}


BODIES = {
    "customers:logout": lambda w, o: {},
    "customers:esign_webhook": lambda w, o: {},
    "customers:dispute_new": lambda w, o: {"category": "rate", "description": "x"},
    "customers:dispute_note": lambda w, o: {"text": "x"},
    "customers:change_order_sign": lambda w, o: {"signer_name": "x", "agree": "on"},
    "customers:change_order_decline": lambda w, o: {"reason": "x"},
    "customers:milestone_signoff": lambda w, o: {},
    "customers_staff:contacts": lambda w, o: {
        "client": o.contract.client_id if o is not None else w.targets["cs-co"].contract.client_id,
        "name": "Nia New",
        "email": f"{uuid.uuid4().hex[:10]}@client.example",
    },
    "customers_staff:change_order_send": lambda w, o: {
        "contact": ClientContact.objects.get(email="mx@client.example").pk,
        "provider": "portal",
    },
}
