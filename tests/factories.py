"""factory_boy factories for every billing model, shared by all test suites.

Defaults describe one plausible German setup: a DE entity invoicing a DE client
in EUR under an active time-and-materials contract with an active project and
its PM. FSM fields are protected, but may be passed on creation, e.g.
`TimeEntryFactory(status="approved")`.

Users get the password "password" (hashed once per test session, so factories
stay fast); `UserFactory(groups=["project_manager"])` puts them in role groups.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from functools import cache

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from factory.django import DjangoModelFactory

from billing.models import (
    BillingRun,
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Client,
    Contract,
    ContractRate,
    Expense,
    FxRate,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceTax,
    LegalEntity,
    Milestone,
    Payment,
    Person,
    Project,
    PurchaseOrder,
    RateCard,
    RateCardLine,
    Role,
    TaxRule,
    TimeEntry,
)
from billing.models.contracts import contract_terms_unlocked

DEFAULT_PASSWORD = "password"
WORK_DATE = datetime.date(2025, 3, 10)
RATES_FROM = datetime.date(2020, 1, 1)


def _password_hash() -> str:
    # Cached per hasher set: a module that swaps in fast hashers must not leave its hash to later tests.
    return _password_hash_for(tuple(settings.PASSWORD_HASHERS))


@cache
def _password_hash_for(hashers: tuple[str, ...]) -> str:
    return make_password(DEFAULT_PASSWORD)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@billable.example")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.LazyFunction(_password_hash)
    is_active = True

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        """`groups=["finance_controller", ...]`: role names; groups are created if missing."""
        if not create or not extracted:
            return
        names = [extracted] if isinstance(extracted, str) else list(extracted)
        self.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in names))


class LegalEntityFactory(DjangoModelFactory):
    class Meta:
        model = LegalEntity
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"DE{n:02d}")
    name = factory.Sequence(lambda n: f"Billable Consulting GmbH {n}")
    country = "DE"
    currency = "EUR"
    vat_id = "DE136695976"
    address_line1 = "Friedrichstraße 100"
    city = "Berlin"
    postal_code = "10117"
    invoice_prefix = factory.LazyAttribute(lambda e: e.code)
    bank_name = "Commerzbank"
    iban = "DE89370400440532013000"
    contact_name = "Accounts receivable"
    contact_phone = "+49 30 1234567"
    contact_email = "billing@billable.example"
    bic = "COBADEFFXXX"


class ClientFactory(DjangoModelFactory):
    class Meta:
        model = Client
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"CL{n:04d}")
    legal_name = factory.Sequence(lambda n: f"Kunde {n} AG")
    address_line1 = "Marienplatz 1"
    city = "München"
    postal_code = "80331"
    country = "DE"
    vat_id = "DE274158609"
    currency = "EUR"
    payment_terms_days = 30
    po_required = False
    billing_emails = factory.LazyAttribute(lambda c: f"ap@{c.code.lower()}.example")
    credit_hold = False


class RoleFactory(DjangoModelFactory):
    class Meta:
        model = Role
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"ROLE{n}")
    name = factory.LazyAttribute(lambda r: r.code.title())


class PersonFactory(DjangoModelFactory):
    """A consultant with a portal login in the `consultant` group (pass `user=None` for none)."""

    class Meta:
        model = Person
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"P{n:04d}")
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda p: f"{p.code.lower()}@billable.example")
    role = factory.SubFactory(RoleFactory, code="CONSULTANT")
    user = factory.SubFactory(UserFactory, groups=["consultant"])
    home_entity = None
    active = True


class RateCardFactory(DjangoModelFactory):
    class Meta:
        model = RateCard
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"RC{n:03d}")
    name = factory.LazyAttribute(lambda r: f"Rate card {r.code}")
    currency = "EUR"


class RateCardLineFactory(DjangoModelFactory):
    class Meta:
        model = RateCardLine

    rate_card = factory.SubFactory(RateCardFactory)
    role = factory.SubFactory(RoleFactory, code="CONSULTANT")
    rate = Decimal("100.0000")
    effective_from = RATES_FROM
    effective_to = None


class TaxRuleFactory(DjangoModelFactory):
    """Default rules are seeded by a migration; this one only matches clients in `client_country`."""

    class Meta:
        model = TaxRule

    entity_country = "DE"
    client_relation = TaxRule.Relation.ANY
    client_country = factory.Sequence(lambda n: f"X{chr(65 + n % 26)}")  # user-assigned codes, no real country
    client_vat_registered = None
    category = TaxRule.Category.STANDARD
    rate = Decimal("19.0000")
    legal_note = ""
    active = True


class FxRateFactory(DjangoModelFactory):
    class Meta:
        model = FxRate
        django_get_or_create = ("from_currency", "to_currency", "date")

    from_currency = "USD"
    to_currency = "EUR"
    date = WORK_DATE
    rate = Decimal("0.92000000")


class PurchaseOrderFactory(DjangoModelFactory):
    """A client's PO of 50,000.00 EUR valid through 2025 (docs/rules/billing.md §13)."""

    class Meta:
        model = PurchaseOrder

    client = factory.SubFactory(ClientFactory)
    number = factory.Sequence(lambda n: f"PO-{n:06d}")
    currency = "EUR"
    amount = Decimal("50000.00")
    valid_from = datetime.date(2025, 1, 1)
    valid_to = datetime.date(2025, 12, 31)


class ContractFactory(DjangoModelFactory):
    """An active time-and-materials contract in EUR with a rate card; traits for the other models."""

    class Meta:
        model = Contract
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"C-{n:04d}")
    name = factory.LazyAttribute(lambda c: f"Contract {c.code}")
    client = factory.SubFactory(ClientFactory)
    entity = factory.SubFactory(LegalEntityFactory)
    billing_model = Contract.BillingModel.TIME_AND_MATERIALS
    currency = "EUR"
    rate_card = factory.SubFactory(RateCardFactory, currency=factory.SelfAttribute("..currency"))
    cap = None
    po_number = factory.Sequence(lambda n: f"PO-{n:05d}")
    status = Contract.Status.ACTIVE

    class Params:
        draft = factory.Trait(status=Contract.Status.DRAFT)
        fixed_fee = factory.Trait(
            billing_model=Contract.BillingModel.FIXED_FEE, billing_frequency=Contract.Frequency.ON_MILESTONE
        )
        retainer = factory.Trait(
            billing_model=Contract.BillingModel.RETAINER,
            retainer_amount=Decimal("10000.00"),
            included_hours=Decimal("80.00"),
        )


class ContractRateFactory(DjangoModelFactory):
    """A role override by default; pass `person=..., role=None` for a person override."""

    class Meta:
        model = ContractRate

    contract = factory.SubFactory(ContractFactory)
    role = factory.SubFactory(RoleFactory, code="CONSULTANT")
    person = None
    rate = Decimal("120.0000")
    effective_from = RATES_FROM
    effective_to = None
    change_order = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        """Test data: the rate as signed with the contract (a live contract refuses new rates otherwise)."""
        with contract_terms_unlocked("test data: rate as signed"):
            return super()._create(model_class, *args, **kwargs)


def set_contract_terms(contract: Contract, **terms) -> Contract:
    """Test data: give a (live) contract other terms as if it had been signed so (no change order)."""
    for name, value in terms.items():
        setattr(contract, name, value)
    with contract_terms_unlocked("test data: terms as signed"):
        contract.save()
    return contract


class ProjectFactory(DjangoModelFactory):
    """An active project whose PM is a user in the `project_manager` group."""

    class Meta:
        model = Project
        django_get_or_create = ("code",)

    contract = factory.SubFactory(ContractFactory)
    code = factory.Sequence(lambda n: f"PRJ-{n:04d}")
    name = factory.LazyAttribute(lambda p: f"Project {p.code}")
    business_unit = "Advisory"
    project_manager = factory.SubFactory(UserFactory, groups=["project_manager"])
    status = Project.Status.ACTIVE


class TimeEntryFactory(DjangoModelFactory):
    class Meta:
        model = TimeEntry

    person = factory.SubFactory(PersonFactory)
    project = factory.SubFactory(ProjectFactory)
    date = WORK_DATE
    hours = Decimal("8.00")
    description = "Workshop preparation"
    billable = True


class ExpenseFactory(DjangoModelFactory):
    class Meta:
        model = Expense

    person = factory.SubFactory(PersonFactory)
    project = factory.SubFactory(ProjectFactory)
    date = WORK_DATE
    category = Expense.Category.TRAVEL
    amount = Decimal("120.00")
    currency = "EUR"
    description = "Train Berlin–München"
    billable = True


class MilestoneFactory(DjangoModelFactory):
    """A planned milestone on a fixed-fee project (the only contracts whose milestones are billed)."""

    class Meta:
        model = Milestone

    project = factory.SubFactory(ProjectFactory, contract__fixed_fee=True)
    name = factory.Sequence(lambda n: f"Milestone {n}")
    amount = Decimal("5000.00")
    due_date = WORK_DATE


class ChangeOrderFactory(DjangoModelFactory):
    class Meta:
        model = ChangeOrder

    contract = factory.SubFactory(ContractFactory)
    code = factory.Sequence(lambda n: f"CO-{n:03d}")
    description = "Scope extension"
    cap_delta = Decimal("0.00")


class ChangeOrderRateFactory(DjangoModelFactory):
    class Meta:
        model = ChangeOrderRate

    change_order = factory.SubFactory(ChangeOrderFactory)
    role = factory.SubFactory(RoleFactory, code="CONSULTANT")
    person = None
    rate = Decimal("130.0000")
    effective_from = datetime.date(2025, 3, 1)
    effective_to = None


class ChangeOrderMilestoneFactory(DjangoModelFactory):
    class Meta:
        model = ChangeOrderMilestone

    change_order = factory.SubFactory(ChangeOrderFactory)
    project = factory.SubFactory(ProjectFactory, contract=factory.SelfAttribute("..change_order.contract"))
    name = factory.Sequence(lambda n: f"Added milestone {n}")
    amount = Decimal("2500.00")
    due_date = datetime.date(2025, 6, 30)


class BillingRunFactory(DjangoModelFactory):
    class Meta:
        model = BillingRun

    period_start = datetime.date(2025, 3, 1)
    period_end = datetime.date(2025, 3, 31)
    run_date = datetime.date(2025, 4, 1)


class InvoiceFactory(DjangoModelFactory):
    """A draft invoice of a contract; entity, client and currency follow the contract."""

    class Meta:
        model = Invoice

    contract = factory.SubFactory(ContractFactory)
    entity = factory.SelfAttribute("contract.entity")
    client = factory.SelfAttribute("contract.client")
    currency = factory.SelfAttribute("contract.currency")
    kind = Invoice.Kind.INVOICE
    period_start = datetime.date(2025, 3, 1)
    period_end = datetime.date(2025, 3, 31)
    issue_date = datetime.date(2025, 4, 1)
    due_date = factory.LazyAttribute(lambda i: i.issue_date + datetime.timedelta(days=30))
    po_number = factory.SelfAttribute("contract.po_number")
    subtotal = Decimal("0.00")
    tax_total = Decimal("0.00")
    total = Decimal("0.00")
    status = Invoice.Status.DRAFT


class InvoiceLineFactory(DjangoModelFactory):
    class Meta:
        model = InvoiceLine

    invoice = factory.SubFactory(InvoiceFactory)
    position = factory.Sequence(lambda n: n + 1)
    kind = InvoiceLine.Kind.TIME
    description = "Consulting"
    quantity = Decimal("8.00")
    unit_price = Decimal("100.0000")
    amount = factory.LazyAttribute(lambda line: (line.quantity * line.unit_price).quantize(Decimal("0.01")))


class InvoiceTaxFactory(DjangoModelFactory):
    class Meta:
        model = InvoiceTax

    invoice = factory.SubFactory(InvoiceFactory)
    category = "S"
    rate = Decimal("19.0000")
    base = Decimal("800.00")
    amount = factory.LazyAttribute(lambda t: (t.base * t.rate / 100).quantize(Decimal("0.01")))


class InvoiceExceptionFactory(DjangoModelFactory):
    class Meta:
        model = InvoiceException

    invoice = factory.SubFactory(InvoiceFactory)
    code = "MISSING_RATE"
    severity = InvoiceException.Severity.BLOCKING
    message = "No rate for role CONSULTANT on 2025-03-10."


class InvoiceNumberSequenceFactory(DjangoModelFactory):
    class Meta:
        model = InvoiceNumberSequence
        django_get_or_create = ("entity", "year", "series")

    entity = factory.SubFactory(LegalEntityFactory)
    year = 2025
    series = Invoice.Kind.INVOICE
    last_number = 0


class PaymentFactory(DjangoModelFactory):
    class Meta:
        model = Payment

    invoice = factory.SubFactory(InvoiceFactory)
    amount = Decimal("100.00")
    currency = factory.LazyAttribute(lambda p: p.invoice.currency if p.invoice else "EUR")
    date = datetime.date(2025, 4, 20)
    external_reference = factory.Sequence(lambda n: f"PAY-{n:06d}")
