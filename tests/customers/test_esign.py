"""The e-signature adapter against the provider simulator over real HTTP, webhooks delivered to a live server."""

from __future__ import annotations

import time

import httpx
import pytest
from django.test import override_settings

from billing.models import ChangeOrder
from billing.services.change_orders import change_order_approve
from customers.esign.adapter import HttpESignatureAdapter
from customers.esign.simulator import ESignSimulator
from customers.models import SignatureEnvelope, SignedDocument
from customers.services.signatures import envelope_send
from kernel.errors import ApplicationError
from tests.customers.factories import contact_of, signing_contract, submitted_change_order
from tests.factories import UserFactory

SECRET = "live-secret"


@pytest.fixture
def provider():
    simulator = ESignSimulator(webhook_secret=SECRET, token="api-key").start()
    yield simulator
    simulator.stop()


def test_the_adapter_speaks_to_the_simulator(provider):
    adapter = HttpESignatureAdapter(provider.url, "api-key")
    envelope_id = adapter.send_envelope(
        document=b"%PDF-1.7 x", name="t", recipient_email="a@b.example", recipient_name="A", callback_url=""
    )
    assert adapter.status(envelope_id) == "sent"
    adapter.remind(envelope_id)
    assert provider.state.envelopes[envelope_id].reminders == 1
    with pytest.raises(ApplicationError):
        adapter.download_signed(envelope_id)  # 409 before signature
    with pytest.raises(ApplicationError):
        HttpESignatureAdapter(provider.url, "wrong-key").status(envelope_id)
    provider.configure(fail_next=1)
    with pytest.raises(ApplicationError):
        adapter.status(envelope_id)
    adapter.void(envelope_id)
    assert adapter.status(envelope_id) == "voided"


@pytest.mark.django_db(transaction=True)
def test_the_provider_signs_over_http_and_the_webhook_opens_the_approval(provider, live_server):
    contract = signing_contract(code="C-LIVE")
    co = submitted_change_order(contract, code="CO-LIVE")
    contact = contact_of(contract.client, "signer@live.example", name="Liv Signer")
    pm = UserFactory(username="pm")
    with override_settings(
        ESIGN_BASE_URL=provider.url,
        ESIGN_API_KEY="api-key",
        ESIGN_WEBHOOK_SECRET=SECRET,
        CUSTOMER_PORTAL_BASE_URL=live_server.url,
    ):
        envelope = envelope_send(change_order=co, contact=contact, provider="esign", user=pm)
        with pytest.raises(ApplicationError):
            change_order_approve(change_order=co, user=pm, reason="too early")
        answer = httpx.post(
            f"{provider.url}/envelopes/{envelope.external_id}/sign",
            json={"name": "Liv Signer"},
            headers={"Authorization": "Bearer api-key"},
            timeout=60,
        )
        assert answer.status_code == 200
        for _ in range(100):
            if SignedDocument.objects.filter(change_order=co).exists():
                break
            time.sleep(0.1)
        (_url, _body, _header, delivered_status) = provider.state.delivered[-1]
        assert delivered_status == 200
        signed = SignedDocument.objects.get(change_order=co)
        assert signed.method == "esign" and signed.content.startswith(b"%PDF")
        assert SignatureEnvelope.objects.get(pk=envelope.pk).status == "signed"
        assert change_order_approve(change_order=co, user=pm, reason="signed").status == "approved"
    assert ChangeOrder.objects.get(pk=co.pk).status == "approved"
