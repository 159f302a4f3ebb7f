"""Every database constraint of the billing models rejects bad data.

Constraints are the last line of defence when a service, an import or a
concurrent worker gets it wrong, so each one is exercised against the real
database (bypassing model validation), inside its own savepoint.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing.models import (
    ChangeOrder,
    Client,
    Contract,
    ContractRate,
    Expense,
    FxRate,
    Invoice,
    InvoiceNumberSequence,
    LegalEntity,
    Milestone,
    Payment,
    Person,
    Project,
    RateCard,
    Role,
    TimeEntry,
)
from tests.factories import (
    BillingRunFactory,
    ChangeOrderFactory,
    ChangeOrderMilestoneFactory,
    ChangeOrderRateFactory,
    ClientFactory,
    ContractFactory,
    ContractRateFactory,
    ExpenseFactory,
    FxRateFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    InvoiceNumberSequenceFactory,
    InvoiceTaxFactory,
    LegalEntityFactory,
    MilestoneFactory,
    PaymentFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
    TaxRuleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

D = datetime.date


def rejects(factory_or_callable, **kwargs):
    """Assert the database refuses the row; the savepoint keeps the test transaction usable."""
    with pytest.raises(IntegrityError), transaction.atomic():
        factory_or_callable(**kwargs)


# --- the factories themselves produce valid rows ------------------------------------------------


def test_factories_build_a_valid_default_world():
    entry = TimeEntryFactory()
    assert entry.project.status == Project.Status.ACTIVE
    assert entry.project.contract.status == Contract.Status.ACTIVE
    assert entry.project.project_manager.groups.filter(name="project_manager").exists()
    assert entry.person.user.groups.filter(name="consultant").exists()
    assert entry.project.contract.client.master_data_problems() == []
    assert entry.project.contract.client.has_valid_vat_id
    for factory in (
        ExpenseFactory,
        MilestoneFactory,
        ChangeOrderRateFactory,
        ChangeOrderMilestoneFactory,
        ContractRateFactory,
        RateCardLineFactory,
        InvoiceLineFactory,
        InvoiceTaxFactory,
        PaymentFactory,
        BillingRunFactory,
        InvoiceNumberSequenceFactory,
        TaxRuleFactory,
        FxRateFactory,
    ):
        assert factory().pk


# --- master data ------------------------------------------------------------------------------


def test_unique_codes():
    rejects(LegalEntity.objects.create, **_entity_kwargs(LegalEntityFactory().code))
    existing = ClientFactory()
    rejects(lambda: Client.objects.create(code=existing.code, legal_name="x", country="DE", currency="EUR"))
    RoleFactory(code="SENIOR")
    rejects(lambda: Role.objects.create(code="SENIOR"))
    person = PersonFactory()
    rejects(lambda: Person.objects.create(code=person.code, name="x", role=person.role))
    card = RateCardFactory()
    rejects(lambda: RateCard.objects.create(code=card.code, currency="EUR"))
    contract = ContractFactory()
    rejects(
        lambda: Contract.objects.create(
            code=contract.code,
            client=contract.client,
            entity=contract.entity,
            billing_model="time_and_materials",
            currency="EUR",
        )
    )
    project = ProjectFactory()
    rejects(lambda: Project.objects.create(code=project.code, contract=project.contract))


def _entity_kwargs(code):
    return {"code": code, "name": "x", "country": "DE", "currency": "EUR"}


def test_external_ids_are_unique_per_source_but_blank_ones_may_repeat():
    ClientFactory(source="crm", external_id="A-1")
    ClientFactory(source="erp", external_id="A-1")  # another system may use the same id
    ClientFactory(source="crm", external_id="")
    ClientFactory(source="crm", external_id="")
    rejects(ClientFactory, source="crm", external_id="A-1")
    PersonFactory(source="psa", external_id="E-7")
    rejects(PersonFactory, source="psa", external_id="E-7")
    ProjectFactory(source="psa", external_id="P-1")
    rejects(ProjectFactory, source="psa", external_id="P-1")
    ContractFactory(source="crm", external_id="K-1")
    rejects(ContractFactory, source="crm", external_id="K-1")
    TimeEntryFactory(source="psa", external_id="T-1")
    rejects(TimeEntryFactory, source="psa", external_id="T-1")
    ExpenseFactory(source="psa", external_id="X-1")
    rejects(ExpenseFactory, source="psa", external_id="X-1")
    MilestoneFactory(source="psa", external_id="M-1")
    rejects(MilestoneFactory, source="psa", external_id="M-1")


def test_client_erp_id_unique_when_set():
    ClientFactory(erp_id="ERP-1")
    ClientFactory(erp_id="")
    ClientFactory(erp_id="")
    rejects(ClientFactory, erp_id="ERP-1")


def test_a_user_is_at_most_one_person():
    person = PersonFactory()
    rejects(PersonFactory, user=person.user)


def test_rate_card_line_constraints():
    line = RateCardLineFactory(effective_from=D(2025, 1, 1))
    rejects(RateCardLineFactory, rate_card=line.rate_card, role=line.role, effective_from=D(2025, 1, 1))
    rejects(RateCardLineFactory, rate=Decimal("-1"))
    rejects(RateCardLineFactory, effective_from=D(2025, 2, 1), effective_to=D(2025, 1, 31))
    RateCardLineFactory(effective_from=D(2025, 2, 1), effective_to=D(2025, 2, 1))  # one-day period is fine


def test_tax_rule_constraints():
    rejects(TaxRuleFactory, rate=Decimal("-0.01"))
    rejects(TaxRuleFactory, rate=Decimal("100.01"))
    TaxRuleFactory(rate=Decimal("100"))
    # Two active rules for the same situation would make tax ambiguous (NULL counts as equal).
    TaxRuleFactory(
        entity_country="FR", client_relation="export", client_country="", client_vat_registered=None, active=False
    )
    rejects(
        TaxRuleFactory, entity_country="EU", client_relation="export", client_country="", client_vat_registered=None
    )


def test_fx_rate_constraints():
    FxRateFactory(from_currency="USD", to_currency="EUR", date=D(2025, 1, 2))
    rejects(FxRate.objects.create, from_currency="USD", to_currency="EUR", date=D(2025, 1, 2), rate=Decimal("1"))
    rejects(FxRate.objects.create, from_currency="GBP", to_currency="EUR", date=D(2025, 1, 2), rate=Decimal("0"))
    rejects(FxRate.objects.create, from_currency="EUR", to_currency="EUR", date=D(2025, 1, 2), rate=Decimal("1"))


# --- contracts, change orders, projects -----------------------------------------------------


def test_contract_constraints():
    rejects(ContractFactory, cap=Decimal("-1"))
    rejects(ContractFactory, expense_markup_pct=Decimal("-0.5"))
    rejects(ContractFactory, discount_pct=Decimal("-1"))
    rejects(ContractFactory, discount_pct=Decimal("100.01"))
    ContractFactory(cap=Decimal("0"), discount_pct=Decimal("100"))
    rejects(ContractFactory, billing_model="retainer", retainer_amount=None, included_hours=Decimal("10"))
    rejects(ContractFactory, billing_model="retainer", retainer_amount=Decimal("-1"), included_hours=Decimal("10"))
    rejects(ContractFactory, billing_model="retainer", retainer_amount=Decimal("100"), included_hours=Decimal("-1"))
    assert ContractFactory(retainer=True).billing_model == "retainer"


def test_retainer_without_included_hours_is_allowed():
    """NULL included hours means a pure fee: nothing is covered, all time is overage (ADR 0010)."""
    contract = ContractFactory(billing_model="retainer", retainer_amount=Decimal("100"), included_hours=None)
    assert contract.included_hours is None


def test_contract_rate_constraints():
    contract = ContractFactory()
    person = PersonFactory()
    rejects(ContractRateFactory, contract=contract, role=RoleFactory(), person=person)  # both
    rejects(ContractRateFactory, contract=contract, role=None, person=None)  # neither
    rejects(ContractRateFactory, contract=contract, rate=Decimal("-1"))
    rejects(ContractRateFactory, contract=contract, effective_from=D(2025, 2, 1), effective_to=D(2025, 1, 1))
    rate = ContractRateFactory(contract=contract, effective_from=D(2025, 1, 1))
    # Same start without a change order: NULL change_order must count as equal.
    rejects(ContractRateFactory, contract=contract, role=rate.role, effective_from=D(2025, 1, 1))
    ContractRateFactory(contract=contract, role=None, person=person, effective_from=D(2025, 1, 1))
    rejects(ContractRateFactory, contract=contract, role=None, person=person, effective_from=D(2025, 1, 1))
    # A change order may introduce a rate with the same start (it wins the tie in billing).
    ContractRateFactory(
        contract=contract,
        role=rate.role,
        effective_from=D(2025, 1, 1),
        change_order=ChangeOrderFactory(contract=contract),
    )


def test_change_order_constraints():
    co = ChangeOrderFactory()
    rejects(ChangeOrder.objects.create, contract=co.contract, code=co.code)
    ChangeOrderFactory(code=co.code)  # same code on another contract is fine
    rejects(ChangeOrderRateFactory, change_order=co, role=RoleFactory(), person=PersonFactory())
    rejects(ChangeOrderRateFactory, change_order=co, role=None, person=None)
    rejects(ChangeOrderRateFactory, change_order=co, rate=Decimal("-1"))
    rejects(ChangeOrderRateFactory, change_order=co, effective_from=D(2025, 3, 1), effective_to=D(2025, 2, 1))
    rejects(ChangeOrderMilestoneFactory, change_order=co, amount=Decimal("-1"))


# --- work -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hours", ["0", "-1", "24.01", "25"])
def test_time_entry_hours_range(hours):
    rejects(TimeEntryFactory, hours=Decimal(hours))


def test_time_entry_hours_bounds_accepted():
    assert TimeEntryFactory(hours=Decimal("0.01")).pk
    assert TimeEntryFactory(hours=Decimal("24")).pk


@pytest.mark.parametrize("amount", ["0", "-10"])
def test_expense_amount_positive(amount):
    rejects(ExpenseFactory, amount=Decimal(amount))


def test_milestone_amount_non_negative():
    rejects(MilestoneFactory, amount=Decimal("-0.01"))
    assert MilestoneFactory(amount=Decimal("0")).pk


@pytest.mark.parametrize("factory", [TimeEntryFactory, ExpenseFactory, MilestoneFactory])
def test_invoiced_iff_linked_to_an_invoice_line(factory):
    line = InvoiceLineFactory()
    rejects(factory, status="invoiced", invoice_line=None)
    rejects(factory, status="approved", invoice_line=line)
    assert factory(status="invoiced", invoice_line=line).pk
    # The same line may bill several items (a grouped time line), each item only one line.
    assert factory(status="invoiced", invoice_line=line).pk


def test_model_level_status_cannot_skip_the_fsm():
    """Protected FSM fields: once loaded, status is changed only by transitions."""
    entry = TimeEntryFactory()
    entry = TimeEntry.objects.get(pk=entry.pk)
    with pytest.raises(AttributeError):
        entry.status = "approved"


# --- invoices -------------------------------------------------------------------------------


def test_billing_run_period_ordered():
    rejects(BillingRunFactory, period_start=D(2025, 3, 31), period_end=D(2025, 3, 1))


def test_invoice_constraints():
    invoice = InvoiceFactory()
    rejects(InvoiceFactory, kind=Invoice.Kind.CREDIT_NOTE, credit_of=None)
    rejects(InvoiceFactory, kind=Invoice.Kind.INVOICE, credit_of=invoice)
    assert InvoiceFactory(kind=Invoice.Kind.CREDIT_NOTE, credit_of=invoice).pk
    rejects(InvoiceFactory, issue_date=D(2025, 4, 1), due_date=D(2025, 3, 31))
    rejects(InvoiceFactory, status=Invoice.Status.DRAFT, number="DE-2025-0001")
    rejects(InvoiceFactory, status=Invoice.Status.PENDING_APPROVAL, number="DE-2025-0001")
    InvoiceFactory(status=Invoice.Status.APPROVED, number="DE-2025-0001")
    rejects(InvoiceFactory, status=Invoice.Status.APPROVED, number="DE-2025-0001")


def test_one_retainer_fee_per_contract_and_period():
    contract = ContractFactory(retainer=True)
    InvoiceFactory(contract=contract, retainer_period=D(2025, 3, 1))
    rejects(InvoiceFactory, contract=contract, retainer_period=D(2025, 3, 1))
    # Cancelled or credited invoices free the period for a corrected invoice.
    InvoiceFactory(contract=contract, retainer_period=D(2025, 4, 1), status=Invoice.Status.CANCELLED)
    assert InvoiceFactory(contract=contract, retainer_period=D(2025, 4, 1)).pk


def test_invoice_tax_unique_per_category_and_rate():
    tax = InvoiceTaxFactory()
    rejects(InvoiceTaxFactory, invoice=tax.invoice, category=tax.category, rate=tax.rate)
    InvoiceTaxFactory(invoice=tax.invoice, category="AE", rate=Decimal("0"))


def test_number_sequence_unique():
    seq = InvoiceNumberSequenceFactory()
    rejects(InvoiceNumberSequence.objects.create, entity=seq.entity, year=seq.year, series=seq.series)


def test_payment_constraints():
    payment = PaymentFactory()
    rejects(PaymentFactory, external_reference=payment.external_reference)
    rejects(PaymentFactory, amount=Decimal("0"))
    rejects(PaymentFactory, amount=Decimal("-5"))
    assert Payment.objects.count() == 1


def test_protect_keeps_referenced_rows():
    """Financial rows are never deleted from under the records that reference them."""
    from django.db.models import ProtectedError

    entry = TimeEntryFactory()
    with pytest.raises(ProtectedError), transaction.atomic():
        entry.project.delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        entry.person.delete()
    user = UserFactory()
    ProjectFactory(project_manager=user)
    with pytest.raises(ProtectedError), transaction.atomic():
        user.delete()
    assert Expense.objects.count() == 0 and Milestone.objects.count() == 0 and ContractRate.objects.count() == 0
