"""Control `signed-change-orders`: on a contract that requires signed change orders, no way approves an unsigned one.

Tried: the service, the PM's screen, the approvals engine, Django admin; the e-signature webhook forged,
replayed, declined and expired (through the provider simulator over HTTP); a signed document cannot be
changed or deleted afterwards.
"""

from __future__ import annotations

import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.urls import reverse

from billing.models import ChangeOrder
from billing.services.change_orders import change_order_approve
from customers.esign.adapter import SIGNATURE_HEADER, sign_payload
from customers.esign.simulator import ESignSimulator
from customers.models import SignatureEnvelope, SignedDocument
from customers.services.signatures import change_order_sign, envelope_send
from kernel.errors import ApplicationError
from tests.customers.factories import (
    contact_of,
    sent_for_portal_signature,
    signing_contract,
    submitted_change_order,
)
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("signed-change-orders")]

SECRET = "esign-test-secret"


@pytest.fixture
def setup():
    contract = signing_contract(code="C-SIGN")
    co = submitted_change_order(contract, code="CO-1")
    contact = contact_of(contract.client, "signer@client.example", name="Sam Signer")
    pm = UserFactory(username="pm")
    return co, contact, pm


def _status(co) -> str:
    return ChangeOrder.objects.get(pk=co.pk).status


def test_the_service_refuses_an_unsigned_change_order(setup):
    co, _contact, pm = setup
    with pytest.raises(ApplicationError) as refused:
        change_order_approve(change_order=co, user=pm, reason="ok")
    assert refused.value.code == "change_order_unsigned" and _status(co) == "submitted"


def test_the_pm_screen_refuses_it(setup, client):
    co, _contact, pm = setup
    client.force_login(pm)
    response = client.post(
        reverse("approvals:pm_change_order_action", args=[co.pk, "approve"]), {"reason": "ok"}, follow=True
    )
    assert "not signed by the client" in response.content.decode() and _status(co) == "submitted"


def test_the_approvals_engine_refuses_it():
    from django.contrib.contenttypes.models import ContentType

    from approvals.models import ApprovalRequest
    from approvals.services.defaults import ensure_approval_defaults
    from approvals.services.requests import approval_decide

    ensure_approval_defaults()
    contract = signing_contract(code="C-ENGINE")
    co = submitted_change_order(contract, code="CO-ENGINE")
    request = ApprovalRequest.objects.get(
        content_type=ContentType.objects.get_for_model(ChangeOrder), object_id=co.pk, status="pending"
    )
    with pytest.raises(ApplicationError) as refused:
        approval_decide(request=request, user=UserFactory(username="pm"), decision="approve", comment="ok")
    assert "not signed by the client" in refused.value.message
    assert _status(co) == "submitted"


def test_django_admin_refuses_it(setup, client):
    co, _contact, _pm = setup
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    client.post(
        reverse("admin:billing_changeorder_changelist"), {"action": "change_order_approve", "_selected_action": [co.pk]}
    )
    assert _status(co) == "submitted"


def test_a_portal_signature_opens_the_approval(setup):
    co, contact, pm = setup
    sent_for_portal_signature(co, contact, by=pm)
    signed = change_order_sign(contact=contact, change_order=co, signer_name="Sam Signer", agree=True, ip="10.0.0.1")
    assert signed.content.startswith(b"%PDF") and len(signed.sha256) == 64
    assert change_order_approve(change_order=co, user=pm, reason="signed").status == "approved"


def test_the_signed_document_never_changes(setup):
    co, contact, pm = setup
    sent_for_portal_signature(co, contact, by=pm)
    signed = change_order_sign(contact=contact, change_order=co, signer_name="Sam Signer", agree=True, ip=None)
    signed.sha256 = "0" * 64
    with pytest.raises(ApplicationError):
        signed.save()
    with pytest.raises(ApplicationError):
        signed.delete()
    if connection.vendor == "postgresql":
        with pytest.raises(IntegrityError), transaction.atomic():
            SignedDocument.objects.filter(pk=signed.pk).update(content=b"%PDF forged")
        with pytest.raises(IntegrityError), transaction.atomic():
            SignedDocument.objects.filter(pk=signed.pk).delete()


def test_a_tampered_signed_document_counts_as_unsigned(setup):
    """Bytes changed behind every guard (SQLite: no trigger; PostgreSQL: triggers switched off, as a DBA could)
    no longer hash to the stored SHA-256, and give no signature."""
    co, contact, pm = setup
    sent_for_portal_signature(co, contact, by=pm)
    change_order_sign(contact=contact, change_order=co, signer_name="Sam Signer", agree=True, ip=None)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        SignedDocument.objects.filter(change_order=co).update(content=b"%PDF forged")
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")
    with pytest.raises(ApplicationError):
        change_order_approve(change_order=co, user=pm, reason="ok")
    assert _status(co) == "submitted"


# --- the e-signature provider ----------------------------------------------------------------------------


@pytest.fixture
def provider():
    simulator = ESignSimulator(webhook_secret=SECRET).start()
    with override_settings(
        ESIGN_BASE_URL=simulator.url, ESIGN_WEBHOOK_SECRET=SECRET, CUSTOMER_PORTAL_BASE_URL="http://127.0.0.1:9"
    ):
        yield simulator
    simulator.stop()


def _sent(setup, provider) -> SignatureEnvelope:
    co, contact, pm = setup
    return envelope_send(change_order=co, contact=contact, provider="esign", user=pm)


def _recipient(provider, envelope, action: str, **body):
    import httpx

    return httpx.post(f"{provider.url}/envelopes/{envelope.external_id}/{action}", json=body, timeout=30)


def _deliver(client, body: bytes, header: str):
    return client.post(
        reverse("customers:esign_webhook"),
        body,
        content_type="application/json",
        **{f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": header},
    )


def test_a_forged_webhook_signs_nothing(setup, provider, client):
    co, _contact, pm = setup
    envelope = _sent(setup, provider)
    body = (
        b'{"event_id": "evt_forged", "envelope_id": "%s", "event": "envelope.signed"}' % envelope.external_id.encode()
    )
    assert _deliver(client, body, sign_payload("not-the-secret", body)).status_code == 403
    assert _deliver(client, body, "").status_code == 403
    assert _deliver(client, body, sign_payload(SECRET, body, timestamp=1)).status_code == 403  # stale
    # Even correctly signed, "signed" is checked with the provider, which says the envelope is still out.
    assert _deliver(client, body, sign_payload(SECRET, body)).status_code == 403
    assert not SignedDocument.objects.exists()
    with pytest.raises(ApplicationError):
        change_order_approve(change_order=co, user=pm, reason="ok")


def test_a_replayed_webhook_is_refused(setup, provider, client):
    co, _contact, pm = setup
    envelope = _sent(setup, provider)
    assert _recipient(provider, envelope, "sign", name="Sam Signer").status_code == 200
    (_url, body, header, _status_code) = provider.state.delivered[-1]
    assert _deliver(client, body, header).status_code == 200
    assert _deliver(client, body, header).status_code == 403
    assert SignedDocument.objects.filter(change_order=co).count() == 1
    assert change_order_approve(change_order=co, user=pm, reason="signed").status == "approved"


def test_a_declined_envelope_gives_no_approval(setup, provider, client):
    co, _contact, pm = setup
    envelope = _sent(setup, provider)
    assert _recipient(provider, envelope, "decline", reason="Wrong cap").status_code == 200
    (_url, body, header, _s) = provider.state.delivered[-1]
    assert _deliver(client, body, header).status_code == 200
    assert SignatureEnvelope.objects.get(pk=envelope.pk).status == "declined"
    with pytest.raises(ApplicationError):
        change_order_approve(change_order=co, user=pm, reason="ok")
    # Signing at the provider afterwards is refused there, and a forged "signed" for it changes nothing.
    assert _recipient(provider, envelope, "sign").status_code == 409


def test_an_expired_envelope_gives_no_approval(setup, provider, client):
    import httpx

    co, _contact, pm = setup
    envelope = _sent(setup, provider)
    httpx.post(f"{provider.url}/__admin/envelopes/{envelope.external_id}/expire", timeout=30)
    for _ in range(100):  # the provider delivers the expiry after answering
        if provider.state.delivered and b"envelope.expired" in provider.state.delivered[-1][1]:
            break
        time.sleep(0.05)
    (_url, body, header, _s) = provider.state.delivered[-1]
    assert _deliver(client, body, header).status_code == 200
    assert SignatureEnvelope.objects.get(pk=envelope.pk).status == "expired"
    assert _recipient(provider, envelope, "sign").status_code == 409
    with pytest.raises(ApplicationError):
        change_order_approve(change_order=co, user=pm, reason="ok")
