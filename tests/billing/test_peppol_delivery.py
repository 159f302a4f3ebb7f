"""Delivery channels per client (ADR 0070): Peppol through the access-point simulator, and the customer portal.

The access point is the repository's simulator (`billing.access_point.simulator`), a real HTTP server
on a free port speaking the provider API the shipped adapter calls; its signed receipts are POSTed to
the real webhook route. Invoices are real (factory work → billing run → approval).
"""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client as HttpClient

from billing.access_point.simulator import NOT_SERVICED, PeppolSimulator
from billing.models import Client, DeliveryAttempt, Invoice, InvoiceDocument, InvoiceException
from billing.services.delivery import DELIVERY_FAILED, invoice_deliver, peppol_status_refresh
from tests.billing.test_documents import bill_and_approve, book, time_contract
from tests.factories import ClientFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "peppol-receipts-secret"
BE_VAT, BE_PEPPOL = "BE0403019261", "0208:0403019261"
RECEIPTS = "/api/v1/webhooks/peppol/"


@pytest.fixture
def simulator(settings):
    sim = PeppolSimulator(webhook_secret=SECRET).start()
    settings.PEPPOL_AP_BASE_URL = sim.url
    settings.PEPPOL_AP_WEBHOOK_SECRET = SECRET
    yield sim
    sim.stop()


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def belgian_client(**kwargs) -> Client:
    defaults = dict(country="BE", vat_id=BE_VAT, peppol_id=BE_PEPPOL, city="Bruxelles", postal_code="1000",
                    address_line1="Rue Neuve 123", delivery_channel="peppol")
    return ClientFactory(**{**defaults, **kwargs})


def posted_invoice(analyst, client) -> Invoice:
    contract, consultant, _senior = time_contract(client=client)
    book(ProjectFactory(contract=contract), consultant, "8.00")
    invoice = bill_and_approve(contract, analyst)
    assert invoice.status == Invoice.Status.POSTED
    return invoice


def post_receipts(simulator) -> list:
    answers = []
    for body, signature in simulator.pending_receipts():
        answers.append(HttpClient().post(RECEIPTS, data=body, content_type="application/json",
                                         HTTP_X_BILLABLE_SIGNATURE=signature))
    return answers


def test_a_client_without_a_peppol_id_cannot_have_the_peppol_channel():
    client = ClientFactory.build(country="AT", vat_id="ATU13585627", peppol_id="", delivery_channel="peppol")
    with pytest.raises(ValidationError) as error:
        client.full_clean()
    assert "delivery_channel" in error.value.message_dict
    assert any("Peppol delivery channel" in p for p in client.master_data_problems())
    with pytest.raises(IntegrityError), transaction.atomic():
        client.save()


def test_the_database_refuses_the_peppol_channel_without_a_peppol_id():
    client = belgian_client()
    with pytest.raises(IntegrityError), transaction.atomic():
        Client.objects.filter(pk=client.pk).update(peppol_id="")
    client.refresh_from_db()
    assert client.peppol_id == BE_PEPPOL


def test_peppol_delivery_sends_the_stored_ubl_and_records_the_receipt(simulator, analyst):
    invoice = posted_invoice(analyst, belgian_client())
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    assert attempt.channel == "peppol" and attempt.result == "sent" and attempt.message_id.startswith("TX-")
    assert attempt.to == f"Peppol {BE_PEPPOL}"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT
    [transmission] = simulator.transmissions()
    stored = InvoiceDocument.objects.get(invoice=invoice, kind="ubl")
    assert transmission["receiver"] == BE_PEPPOL and transmission["sender"] == "9930:DE136695976"
    import hashlib

    assert transmission["sha256"] == hashlib.sha256(bytes(stored.content)).hexdigest()

    [answer] = post_receipts(simulator)
    assert answer.status_code == 200, answer.content
    attempt.refresh_from_db()
    assert attempt.receipt == "delivered" and attempt.receipt_at is not None and attempt.result == "sent"
    assert not InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED).exists()


def test_a_rejection_with_peppol_error_codes_lands_in_the_exception_queue(simulator, analyst):
    simulator.configure(reject_receivers=[BE_PEPPOL], reject_code="PEPPOL-EN16931-R053")
    invoice = posted_invoice(analyst, belgian_client())
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    assert attempt.result == "sent"
    [answer] = post_receipts(simulator)
    assert answer.status_code == 200
    attempt.refresh_from_db()
    assert attempt.receipt == "rejected" and attempt.result == "failed"
    assert "PEPPOL-EN16931-R053" in attempt.error and "PEPPOL-EN16931-R053" in attempt.receipt_detail
    finding = InvoiceException.objects.get(invoice=invoice, code=DELIVERY_FAILED, state="open")
    assert "PEPPOL-EN16931-R053" in finding.message
    # The same receipt again changes nothing (no second finding, no change of the attempt).
    body = (b'{"id": "evt-x", "type": "transmission.rejected", "transmission_id": "%s", "errors": []}'
            % attempt.message_id.encode())
    from integrations.services.webhooks import signature_header

    again = HttpClient().post(RECEIPTS, data=body, content_type="application/json",
                              HTTP_X_BILLABLE_SIGNATURE=signature_header(secret=SECRET, body=body))
    assert again.status_code == 200
    assert InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED).count() == 1


def test_an_unregistered_receiver_is_refused_at_once_with_not_serviced(simulator, analyst):
    simulator.configure(unregistered=[BE_PEPPOL])
    invoice = posted_invoice(analyst, belgian_client())
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    assert attempt.result == "failed" and NOT_SERVICED in attempt.error
    assert simulator.transmissions() == []
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.POSTED
    finding = InvoiceException.objects.get(invoice=invoice, code=DELIVERY_FAILED, state="open")
    assert NOT_SERVICED in finding.message and "Peppol" in finding.fix_hint

    # Registered now: the resend goes through and resolves the finding.
    simulator.configure(unregistered=[])
    assert invoice_deliver(invoice=invoice, user=analyst, reason="Resend").result == "sent"
    finding.refresh_from_db()
    assert finding.state == "resolved"
    assert DeliveryAttempt.objects.filter(invoice=invoice).count() == 2


def test_an_unreachable_access_point_is_a_failed_attempt(settings, analyst):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.PEPPOL_AP_BASE_URL, settings.PEPPOL_AP_TIMEOUT_S = f"http://127.0.0.1:{port}", 2
    invoice = posted_invoice(analyst, belgian_client())
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    assert attempt.result == "failed" and "could not be reached" in attempt.error
    assert InvoiceException.objects.filter(invoice=invoice, code=DELIVERY_FAILED, state="open").exists()


def test_a_lost_receipt_is_fetched_by_the_status_poll(simulator, analyst):
    invoice = posted_invoice(analyst, belgian_client())
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    simulator.pending_receipts()  # the webhook is lost
    peppol_status_refresh(attempt=attempt)
    attempt.refresh_from_db()
    assert attempt.receipt == "delivered"


def test_the_access_point_refuses_a_document_its_rules_refuse(simulator):
    """The simulator's outbound check is the access point's: an e-mail endpoint never passes (CL008)."""
    import httpx

    ubl = (b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
           b'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2" '
           b'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2">'
           b'<cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0'
           b'</cbc:CustomizationID><cac:AccountingCustomerParty><cac:Party>'
           b'<cbc:EndpointID schemeID="EM">ap@client.example</cbc:EndpointID></cac:Party>'
           b'</cac:AccountingCustomerParty></Invoice>')
    answer = httpx.post(f"{simulator.url}/transmissions", headers={"Idempotency-Key": "k1"},
                        json={"sender": "9930:DE136695976", "receiver": "EM:ap@client.example",
                              "document_type": "invoice", "document": base64.b64encode(ubl).decode()})
    assert answer.status_code == 422
    assert {e["code"] for e in answer.json()["errors"]} >= {"PEPPOL-EN16931-CL008"}


def test_portal_delivery_issues_the_documents_and_logs_the_publication(analyst):
    invoice = posted_invoice(analyst, ClientFactory(delivery_channel="portal"))
    attempt = invoice_deliver(invoice=invoice, user=analyst)
    assert attempt.channel == "portal" and attempt.result == "sent"
    assert sorted(attempt.attachments) == sorted([f"{invoice.number}.pdf", f"{invoice.number}.xml"])
    assert InvoiceDocument.objects.filter(invoice=invoice).count() == 2
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT


def test_the_invoice_page_resends_over_peppol_and_shows_the_receipt(simulator, analyst, client):
    from django.urls import reverse

    invoice = posted_invoice(analyst, belgian_client())
    client.force_login(analyst)
    url = reverse("billing:invoice_detail", args=[invoice.pk])
    assert f"Send now to Peppol {BE_PEPPOL}" in client.get(url).content.decode()
    response = client.post(reverse("billing:invoice_resend", args=[invoice.pk]), {"reason": ""}, follow=True)
    assert f"{invoice.number} handed to the Peppol access point for {BE_PEPPOL}." in response.content.decode()
    post_receipts(simulator)
    page = client.get(url).content.decode()
    assert "Receipt: Delivered to the buyer&#x27;s access point" in page
    assert "Transmission <code>TX-" in page
