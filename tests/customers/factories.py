"""Client contacts, submitted change orders and envelopes for the customer-side tests (through the services)."""

from __future__ import annotations

from django.core import mail

from billing.models import ChangeOrder, Contract
from billing.services.change_orders import change_order_submit
from customers.models import ClientContact, SignatureEnvelope
from customers.services.contacts import contact_invite
from customers.services.signatures import envelope_send
from tests.factories import ChangeOrderFactory, ContractFactory, ProjectFactory, UserFactory

PASSWORD = "Correct-Horse-9-Battery"


def contact_of(client, email: str, *, name: str = "Carla Contact", password: str = PASSWORD) -> ClientContact:
    """A contact invited by finance, with a password set (as after following the invitation)."""
    inviter = UserFactory(username="inviter", groups=["finance_analyst"])
    contact = contact_invite(client=client, email=email, name=name, user=inviter)
    contact.user.set_password(password)
    contact.user.save(update_fields=["password"])
    mail.outbox.clear()
    return contact


def signing_contract(**kwargs) -> Contract:
    """An active contract requiring signed change orders, with a project managed by `pm`."""
    contract = ContractFactory(requires_signed_change_orders=True, **kwargs)
    ProjectFactory(contract=contract, project_manager=UserFactory(username="pm", groups=["project_manager"]))
    return contract


def submitted_change_order(contract: Contract, **kwargs) -> ChangeOrder:
    submitter = UserFactory(username="badm", groups=["billing_admin"])
    return change_order_submit(change_order=ChangeOrderFactory(contract=contract, **kwargs), user=submitter)


def sent_for_portal_signature(change_order: ChangeOrder, contact: ClientContact, by=None) -> SignatureEnvelope:
    by = by or UserFactory(username="pm", groups=["project_manager"])
    return envelope_send(change_order=change_order, contact=contact, provider="portal", user=by)


def customer_login(client, contact: ClientContact, password: str = PASSWORD):
    response = client.post("/customer/login/", {"email": contact.email, "password": password})
    assert response.status_code == 302, response.content[:500]
    return response
