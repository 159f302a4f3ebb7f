"""Purchase orders with a value in tests: a client, a PO, contracts drawing on it, approved time to bill."""

from __future__ import annotations

import datetime
from decimal import Decimal

from billing.models import Contract, PurchaseOrder
from billing.models.contracts import contract_terms_unlocked
from tests.factories import (
    ClientFactory,
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 2)
RATE = Decimal("100.00")


def purchase_order(client, *, amount: str = "1000.00", number: str = "PO-4711", currency: str = "EUR",
                   valid_from=datetime.date(2025, 1, 1), valid_to=datetime.date(2025, 12, 31),
                   raised_by: str = "") -> PurchaseOrder:
    return PurchaseOrder.objects.create(
        client=client, number=number, currency=currency, amount=Decimal(amount), valid_from=valid_from,
        valid_to=valid_to, raised_by=raised_by,
    )


def po_contract(code: str, po: PurchaseOrder | None, *, client=None, currency: str = "EUR", **terms) -> Contract:
    """An active T&M contract of the PO's client at 100.00/h, drawing on `po`, with one project."""
    client = client or po.client
    with contract_terms_unlocked("test data: contract as signed"):
        contract = ContractFactory(code=code, client=client, currency=currency, purchase_order=po,
                                   **{"po_number": "", **terms})
    role = RoleFactory(code="CONSULTANT")
    RateCardLineFactory(rate_card=contract.rate_card, role=role, rate=RATE)
    ProjectFactory(contract=contract, code=f"P-{code}")
    return contract


def bill_hours(contract: Contract, hours: str, *, day: datetime.date = datetime.date(2025, 3, 10)) -> None:
    """Approved billable time worth hours × 100.00 on the contract's first project."""
    project = contract.projects.order_by("id").first()
    TimeEntryFactory(project=project, person=PersonFactory(role=RoleFactory(code="CONSULTANT")), date=day,
                     hours=Decimal(hours), status="approved")


def client(**fields):
    return ClientFactory(**fields)
