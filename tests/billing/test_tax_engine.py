"""The tax-engine interface and its HTTP adapter against the simulator over real HTTP (docs/rules/tax-engine.md)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from billing.models import Invoice, InvoiceException
from billing.services.billing_engine import Code
from billing.services.billing_run import bill_period
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_approve, invoice_revalidate
from billing.tax_engine import get_tax_engine
from billing.tax_engine.http import HttpTaxEngine
from billing.tax_engine.rule_table import RuleTableEngine
from billing.tax_engine.simulator import TaxEngineSimulator
from tests.billing.test_documents import END, RUN_DATE, START, book, time_contract
from tests.factories import ClientFactory, LegalEntityFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulator(settings):
    sim = TaxEngineSimulator(token="t0k3n").start()
    settings.BILLING_TAX_ENGINE = "billing.tax_engine.http.HttpTaxEngine"
    settings.BILLING_TAX_ENGINE_URL = sim.url
    settings.BILLING_TAX_ENGINE_TOKEN = "t0k3n"
    settings.BILLING_TAX_ENGINE_COUNTRIES = ["US"]
    yield sim
    sim.stop()


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


def us_contract(region="NY", hours="10.00"):
    entity = LegalEntityFactory(
        code="US01", name="Billable Consulting Inc.", country="US", currency="USD", vat_id="",
        address_line1="350 Fifth Avenue", city="New York", postal_code="10118", iban="", bic="", bank_name="",
    )  # fmt: skip
    client = ClientFactory(country="US", region=region, vat_id="", currency="USD", city="Albany",
                           postal_code="12207")
    contract, consultant, _ = time_contract(currency="USD", entity=entity, client=client)
    book(ProjectFactory(contract=contract), consultant, hours)
    return contract


def bill(contract) -> Invoice:
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    return Invoice.objects.get(contract=contract, kind=Invoice.Kind.INVOICE)


def approve(invoice: Invoice) -> Invoice:
    """Every step of the route, each by a fresh user of the group the step asks for."""
    for _step in range(4):
        if invoice.status != Invoice.Status.PENDING_APPROVAL:
            break
        group = "finance_analyst" if invoice.kind == Invoice.Kind.INVOICE and _step == 0 else "finance_controller"
        invoice = invoice_approve(invoice=invoice, user=UserFactory(groups=[group]))
    return invoice


def test_the_default_engine_is_the_rule_table(settings):
    settings.BILLING_TAX_ENGINE = ""
    assert isinstance(get_tax_engine(), RuleTableEngine)


def test_quote_charges_state_sales_tax_by_ship_to_state(simulator):
    invoice = bill(us_contract(region="NY"))  # 10 h at 100.00
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    tax = invoice.taxes.get()
    assert (tax.category, tax.rate, tax.base, tax.amount) == ("S", Decimal("4.0000"), Decimal("1000.00"),
                                                              Decimal("40.00"))
    assert invoice.tax_total == Decimal("40.00") and invoice.total == Decimal("1040.00")
    assert "NY state sales tax" in tax.legal_note
    assert simulator.transactions() == {}  # a quote records nothing


def test_another_state_another_rate(simulator):
    invoice = bill(us_contract(region="CA"))
    assert invoice.tax_total == Decimal("72.50")


def test_non_us_entities_keep_the_rule_table(simulator):
    contract, consultant, _ = time_contract()  # a German entity and client: 19 % from the rule table
    book(ProjectFactory(contract=contract), consultant, "1.00")
    invoice = bill(contract)
    assert invoice.tax_total == Decimal("19.00")
    assert simulator.state.quotes == 0


def test_approval_commits_and_a_full_credit_note_voids(simulator, analyst, django_capture_on_commit_callbacks):
    invoice = bill(us_contract(region="NY"))
    with django_capture_on_commit_callbacks(execute=True):
        invoice = approve(invoice)
    assert invoice.number
    committed = simulator.transactions()[invoice.number]
    assert (committed["status"], committed["total_tax"]) == ("committed", "40.00")
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(invoice=invoice, user=analyst, reason="Billed the wrong client")
        approve(note)
    assert simulator.transactions()[invoice.number]["status"] == "voided"
    note.refresh_from_db()
    assert simulator.transactions()[invoice.number]["void_reason"] == f"Credit note {note.number}"
    # Committing again is idempotent: one transaction per invoice number.
    HttpTaxEngine().commit(invoice)
    assert list(simulator.transactions()) == [invoice.number]


def test_outage_blocks_with_tax_engine_unavailable_then_revalidation_clears_it(simulator, analyst):
    simulator.configure(outage=True)
    invoice = bill(us_contract(region="NY"))
    assert invoice.status == Invoice.Status.EXCEPTION
    finding = invoice.exceptions.get(code=Code.TAX_ENGINE_UNAVAILABLE)
    assert finding.severity == InvoiceException.Severity.BLOCKING and "503" in finding.message
    assert not invoice.taxes.exists()  # never a silent zero: blocked, not invoiced untaxed
    invoice = invoice_revalidate(invoice=invoice, user=analyst)
    assert invoice.status == Invoice.Status.EXCEPTION  # still down
    simulator.configure(outage=False)
    invoice = invoice_revalidate(invoice=invoice, user=analyst)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL
    assert invoice.tax_total == Decimal("40.00")
    assert not invoice.exceptions.filter(code=Code.TAX_ENGINE_UNAVAILABLE, state=InvoiceException.State.OPEN).exists()


def test_unknown_ship_to_state_blocks_with_the_engines_answer(simulator):
    invoice = bill(us_contract(region=""))  # no ship-to state: the engine refuses the address
    finding = invoice.exceptions.get(code=Code.TAX_ENGINE_UNAVAILABLE)
    assert "not a known US state" in finding.message


def test_unreachable_engine_blocks(settings, simulator):
    simulator.stop()
    invoice = bill(us_contract(region="NY"))
    finding = invoice.exceptions.get(code=Code.TAX_ENGINE_UNAVAILABLE)
    assert "could not be reached" in finding.message
    assert invoice.status == Invoice.Status.EXCEPTION


def test_simulator_refuses_without_the_token(simulator):
    response = httpx.post(f"{simulator.url}/v1/transactions/quote", json={}, timeout=5)
    assert response.status_code == 401


def test_an_approval_while_the_engine_is_down_is_reported_later_and_nothing_is_lost(
    simulator, django_capture_on_commit_callbacks
):
    """Approval never waits for the engine, and the sale reaches it once it is back (the scheduled retry)."""
    import datetime

    from django.utils import timezone

    from billing.models import TaxEngineRecording
    from billing.services.tax_recordings import tax_engine_retry_pending
    from billing.tasks import retry_tax_engine_recordings

    invoice = bill(us_contract(region="NY"))
    simulator.configure(outage=True)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = approve(invoice)
    assert invoice.number and simulator.transactions() == {}
    recording = TaxEngineRecording.objects.get(invoice=invoice)
    assert (recording.status, recording.attempts) == ("pending", 1) and "503" in recording.last_error
    assert recording.next_attempt_at > timezone.now()

    # Not yet due: the retry leaves it alone; still down when due: a longer wait.
    assert retry_tax_engine_recordings() == {"due": 0, "recorded": 0, "pending": 0}
    later = recording.next_attempt_at + datetime.timedelta(seconds=1)
    assert tax_engine_retry_pending(now=later) == {"due": 1, "recorded": 0, "pending": 1}
    recording.refresh_from_db()
    assert recording.attempts == 2 and recording.next_attempt_at - later >= datetime.timedelta(minutes=1)

    simulator.configure(outage=False)
    assert tax_engine_retry_pending(now=recording.next_attempt_at) == {"due": 1, "recorded": 1, "pending": 0}
    recording.refresh_from_db()
    assert (recording.status, recording.attempts, recording.last_error) == ("done", 3, "")
    assert simulator.transactions()[invoice.number]["status"] == "committed"
    assert tax_engine_retry_pending(now=recording.next_attempt_at + datetime.timedelta(days=1))["due"] == 0


def test_the_rule_table_keeps_no_record_so_approval_writes_no_recording(analyst, django_capture_on_commit_callbacks):
    from billing.models import TaxEngineRecording

    contract, consultant, _ = time_contract()
    book(ProjectFactory(contract=contract), consultant, "1.00")
    with django_capture_on_commit_callbacks(execute=True):
        invoice = approve(bill(contract))
    assert invoice.number and not TaxEngineRecording.objects.exists()
