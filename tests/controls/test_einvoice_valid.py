"""Control `einvoice-valid`: no e-invoice is issued that a Peppol access point would reject.

Attempts: slip an e-mail endpoint (`EM`) past the issuing service, and issue the
e-invoice of a client that has no Peppol electronic address at all.
"""

from __future__ import annotations

import pytest

from billing.documents import ubl
from billing.services import documents as service
from billing.services.documents import invoice_document
from kernel.errors import ApplicationError
from tests.billing.test_documents import bill_and_approve, book, time_contract
from tests.factories import ClientFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("einvoice-valid")]


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def test_an_e_invoice_with_an_e_mail_endpoint_is_never_issued(analyst, monkeypatch):
    """A renderer that falls back to `EM` (as the old one did) passes XSD and CEN; the Peppol layer stops it."""
    contract, consultant, _ = time_contract()
    book(ProjectFactory(contract=contract), consultant, "4.00")
    invoice = bill_and_approve(contract, analyst)

    def render_with_email_endpoint(content):
        xml = ubl.render_ubl(content)
        return xml.replace(b'schemeID="9930"', b'schemeID="EM"')

    monkeypatch.setattr(service, "render_ubl", render_with_email_endpoint)
    with pytest.raises(ApplicationError, match="PEPPOL-EN16931-CL008") as caught:
        invoice_document(invoice=invoice, kind="ubl")
    assert caught.value.code == "einvoice_invalid"
    assert not invoice.documents.filter(kind="ubl").exists()


def test_a_client_without_a_peppol_address_cannot_get_an_e_invoice(analyst):
    client = ClientFactory(country="AT", vat_id="", peppol_id="", city="Wien", postal_code="1070",
                           not_vat_registered=True)
    contract, consultant, _ = time_contract(client=client)
    book(ProjectFactory(contract=contract), consultant, "3.00")
    invoice = bill_and_approve(contract, analyst)
    with pytest.raises(ApplicationError) as caught:
        invoice_document(invoice=invoice, kind="ubl")
    assert caught.value.code == "einvoice_impossible"
    assert not invoice.documents.filter(kind="ubl").exists()
    client.einvoice_by_email = True
    assert any("Peppol" in problem for problem in client.master_data_problems())
