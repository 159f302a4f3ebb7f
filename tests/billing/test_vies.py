"""VIES VAT-number checks through the REST adapter against the simulator over real HTTP (ADR 0077)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Client, Invoice, InvoiceException, VatCheck
from billing.services.billing_engine import Code
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_revalidate
from billing.services.vat_checks import vat_check_run
from billing.vies.simulator import ViesSimulator
from tests.billing.test_documents import END, RUN_DATE, START, book, time_contract
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

CLIENT_VAT = "DE274158609"  # the factories' client: valid check digits


@pytest.fixture
def vies(settings):
    sim = ViesSimulator().start()
    settings.VIES_ADAPTER = "billing.vies.rest.RestViesAdapter"
    settings.VIES_BASE_URL = sim.url
    settings.VIES_MAX_AGE_DAYS = 30
    yield sim
    sim.stop()


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def german_contract():
    contract, consultant, _ = time_contract()
    book(ProjectFactory(contract=contract), consultant, "1.00")
    return contract


def bill(contract) -> Invoice:
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    return Invoice.objects.get(contract=contract, kind=Invoice.Kind.INVOICE)


def test_valid_vat_id_is_checked_once_with_a_consultation_number_and_shown_in_history(vies):
    contract = german_contract()
    invoice = bill(contract)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    check = VatCheck.objects.get(client=contract.client)
    assert check.result == VatCheck.Result.VALID and check.vat_id == CLIENT_VAT
    assert check.consultation_number.startswith("WAPIAAAA") and check.request_date is not None
    assert vies.requests == [{"countryCode": "DE", "vatNumber": CLIENT_VAT[2:]}]
    client = Client.objects.get(pk=contract.client_id)
    assert (client.vies_result, client.vies_consultation_number) == ("valid", check.consultation_number)
    assert client.history.filter(history_change_reason__startswith="VIES check: VIES answered valid").exists()


def test_a_fresh_check_is_reused_and_a_stale_one_is_redone(vies, analyst):
    contract = german_contract()
    invoice = bill(contract)
    invoice.refresh_from_db()
    # Revalidation with a fresh check: no new question to VIES.
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.EXCEPTION)
    invoice_revalidate(invoice=Invoice.objects.get(pk=invoice.pk), user=analyst)
    assert len(vies.requests) == 1
    # Older than VIES_MAX_AGE_DAYS: asked again before invoicing.
    VatCheck.objects.update(checked_at=timezone.now() - timedelta(days=31))
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.EXCEPTION)
    invoice_revalidate(invoice=Invoice.objects.get(pk=invoice.pk), user=analyst)
    assert len(vies.requests) == 2
    assert VatCheck.objects.filter(client=contract.client).count() == 2


def test_invalid_vat_id_blocks_with_the_vies_answer(vies):
    vies.configure(invalid=[CLIENT_VAT])
    invoice = bill(german_contract())
    assert invoice.status == Invoice.Status.EXCEPTION
    finding = invoice.exceptions.get(code=Code.CLIENT_MASTER_DATA_INVALID)
    assert finding.severity == InvoiceException.Severity.BLOCKING
    assert f"VIES answered invalid for {CLIENT_VAT}" in finding.message and "consultation WAPIAAAA" in finding.message


def test_vies_unavailable_is_a_warning_never_a_block(vies):
    vies.configure(unavailable=["DE"])
    contract = german_contract()
    invoice = bill(contract)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    finding = invoice.exceptions.get(code=Code.VAT_CHECK_UNAVAILABLE)
    assert finding.severity == InvoiceException.Severity.WARNING and "MS_UNAVAILABLE" in finding.message
    assert VatCheck.objects.get(client=contract.client).result == VatCheck.Result.UNAVAILABLE
    # An outage is not cached: the next check asks again, and a whole-service outage is a warning too.
    vies.configure(unavailable=[], outage=True)
    assert vat_check_run(client=contract.client).result == VatCheck.Result.UNAVAILABLE
    vies.configure(outage=False)
    assert vat_check_run(client=contract.client).result == VatCheck.Result.VALID
    assert len(vies.requests) == 3


def test_no_vies_adapter_no_checks(settings, vies):
    settings.VIES_ADAPTER = ""
    invoice = bill(german_contract())
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    assert not VatCheck.objects.exists() and vies.requests == []


def test_the_client_page_shows_the_checks_and_the_admin_action_asks_vies(vies, client):
    from django.urls import reverse

    from tests.controls.conftest import log_in

    contract = german_contract()
    vies.configure(invalid=[CLIENT_VAT])
    admin = UserFactory(groups=["billing_admin"], is_staff=True)
    log_in(client, admin)
    response = client.post(reverse("admin:billing_client_changelist"),
                           {"action": "vat_check_run", "_selected_action": [contract.client_id]})
    assert response.status_code == 302
    check = VatCheck.objects.get(client=contract.client)
    assert check.result == VatCheck.Result.INVALID and check.checked_by == admin
    page = client.get(reverse("admin:billing_client_change", args=[contract.client_id])).content.decode()
    assert "VIES checks (history)" in page and check.consultation_number in page
    assert f"VIES answered invalid for {CLIENT_VAT}" in page
    history = client.get(reverse("admin:billing_client_history", args=[contract.client_id])).content.decode()
    assert "VIES check: VIES answered invalid" in history
