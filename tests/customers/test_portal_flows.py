"""The customer portal's actions through the real stack: a dispute lands in finance's queue holding only the
disputed lines; a milestone is approved only after the client's sign-off; click-to-sign writes a certificate."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from pypdf import PdfReader

from approvals.services.defaults import ensure_approval_defaults
from billing.models import Invoice
from billing.services.milestones import milestone_approve, milestone_complete
from customers.models import SignedDocument
from disputes.models import Dispute
from disputes.selectors.disputes import dispute_queue
from disputes.services.disputes import dispute_add_note
from kernel.errors import ApplicationError
from tests.customers.factories import (
    contact_of,
    customer_login,
    sent_for_portal_signature,
    signing_contract,
    submitted_change_order,
)
from tests.disputes.factories import issued_invoice, lines_of
from tests.factories import ContractFactory, MilestoneFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_contact_disputes_two_lines_and_finance_gets_it(client, django_capture_on_commit_callbacks):
    ensure_approval_defaults()
    analyst = UserFactory(username="ana", groups=["finance_analyst"])
    invoice = issued_invoice()
    contact = contact_of(invoice.client, "ap@client.example", name="Ada Payable")
    customer_login(client, contact)
    assert client.get(f"/customer/invoices/{invoice.pk}/pdf/").content.startswith(b"%PDF")
    assert b"Invoice" in client.get(f"/customer/invoices/{invoice.pk}/ubl/").content
    first, second = lines_of(invoice)[:2]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/customer/invoices/{invoice.pk}/dispute/",
            {
                "category": "hours",
                "description": "These hours were billed twice",
                f"line_{first.pk}": "on",
                f"line_{second.pk}": "on",
                "attachments": [SimpleUploadedFile("proof.csv", b"a,b\n")],
            },
        )
    assert response.status_code == 302, response.content[:400]
    dispute = Dispute.objects.get(invoice=invoice)
    assert dispute.source == "customer" and dispute.opened_by == contact.user and dispute.owner == analyst
    assert dispute.lines.count() == 2 and dispute.notes.get().attachment
    invoice.refresh_from_db()
    net = first.amount + second.amount
    assert invoice.status == Invoice.Status.DISPUTED
    assert dispute.disputed_amount < invoice.total and dispute.disputed_amount >= net
    assert dispute.pk in [row.dispute.pk for row in dispute_queue(user=analyst).rows]
    assert [m.to for m in mail.outbox] == [[analyst.email]]
    dispute_add_note(dispute=dispute, user=analyst, text="Internal: ask the PM before answering")
    page = client.get(response["Location"]).content.decode()
    assert "These hours were billed twice" in page and "Ada Payable" in page
    assert "Internal: ask the PM" not in page  # finance's notes stay internal
    internal = dispute.notes.get(author=analyst)
    assert client.get(f"/customer/attachments/{internal.pk}/").status_code == 404


def test_a_milestone_needs_the_clients_signoff_before_approval(client):
    pm = UserFactory(username="pm", groups=["project_manager"])
    contract = ContractFactory(fixed_fee=True, requires_customer_signoff=True)
    project = ProjectFactory(contract=contract, project_manager=pm)
    milestone = milestone_complete(
        milestone=MilestoneFactory(project=project, name="Go-live"), user=pm, evidence="Live since Monday"
    )
    controller = UserFactory(groups=["finance_controller"])
    with pytest.raises(ApplicationError) as refused:
        milestone_approve(milestone=milestone, user=controller)
    assert refused.value.code == "milestone_not_signed_off"
    contact = contact_of(contract.client, "cto@client.example")
    customer_login(client, contact)
    assert "Go-live" in client.get("/customer/milestones/").content.decode()
    assert client.post(f"/customer/milestones/{milestone.pk}/sign-off/", {"comment": "Accepted"}).status_code == 302
    assert milestone_approve(milestone=milestone, user=controller).status == "approved"


def test_click_to_sign_appends_a_certificate_with_the_documents_hash(client):
    contract = signing_contract()
    co = submitted_change_order(contract, code="CO-7", cap_delta=Decimal("2500.00"))
    contact = contact_of(contract.client, "legal@client.example", name="Lea Legal")
    sent_for_portal_signature(co, contact)
    customer_login(client, contact)
    page = client.get(f"/customer/change-orders/{co.pk}/").content.decode()
    assert "Sign change order" in page
    refused = client.post(f"/customer/change-orders/{co.pk}/sign/", {"signer_name": "Lea Legal"}, follow=True)
    assert "Tick the box" in refused.content.decode() and not SignedDocument.objects.exists()
    client.post(
        f"/customer/change-orders/{co.pk}/sign/", {"signer_name": "Lea Legal", "agree": "on"}, REMOTE_ADDR="203.0.113.7"
    )
    signed = SignedDocument.objects.get(change_order=co)
    pdf = PdfReader(io.BytesIO(bytes(signed.content)))
    certificate = pdf.pages[-1].extract_text()
    assert "Lea Legal" in certificate and "203.0.113.7" in certificate
    assert signed.original_sha256 in certificate.replace("\n", "")
    download = client.get(f"/customer/change-orders/{co.pk}/pdf/")
    assert download.content == bytes(signed.content)
    assert co.history.filter(history_user=contact.user).exists()  # the customer's action in the record's history
