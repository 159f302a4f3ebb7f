"""Test data for revenue recognition: a DE entity, one consultant at 100/h, invoices issued on given dates."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.utils import timezone

from billing.models import Invoice
from revenue.models import Estimate, RecognitionPolicy
from tests.factories import (
    ContractFactory,
    InvoiceFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
    set_contract_terms,
)

D = datetime.date
_numbers = iter(range(1, 10**6))


def controller():
    return UserFactory(groups=["finance_controller"])


def contract(**kwargs):
    """A contract whose consultant time is priced at 100.00/h (rate card), with one project."""
    c = ContractFactory(**kwargs)
    role = RoleFactory(code="CONSULTANT")
    RateCardLineFactory(rate_card=c.rate_card, role=role, rate=Decimal("100.0000"))
    project = ProjectFactory(contract=c)
    return c, project


def person():
    return PersonFactory(role=RoleFactory(code="CONSULTANT"))


def work(project, day: datetime.date, hours: str, *, who=None, status: str = "approved", billable: bool = True):
    """Approved time: `hours` booked as 8-hour days from `day` on (the last entry is returned)."""
    who = who or person()
    left, entry = Decimal(hours), None
    while left > 0:
        chunk = min(left, Decimal(8))
        entry = TimeEntryFactory(project=project, person=who, date=day, hours=chunk, status=status, billable=billable)
        left -= chunk
        day += datetime.timedelta(days=1)
    return entry


def issue(contract, day: datetime.date, subtotal: str, *, kind: str = Invoice.Kind.INVOICE, credit_of=None):
    """A numbered invoice (or credit note) issued on `day` for `subtotal` before tax (lines do not matter here)."""
    amount = Decimal(subtotal)
    invoice = InvoiceFactory(
        contract=contract,
        kind=kind,
        credit_of=credit_of,
        issue_date=day,
        period_start=day.replace(day=1),
        period_end=day,
        subtotal=amount,
        total=amount,
        number=f"T-{next(_numbers):06d}",
        status=Invoice.Status.POSTED,
    )
    return invoice


def estimate(contract, hours: str, as_of: datetime.date):
    return Estimate.objects.create(contract=contract, hours=Decimal(hours), as_of=as_of, status="approved")


def milestone(project, amount: str, *, approved_on: datetime.date | None = None):
    if approved_on is None:
        return MilestoneFactory(project=project, amount=Decimal(amount))
    at = timezone.make_aware(datetime.datetime.combine(approved_on, datetime.time(12)), datetime.UTC)
    return MilestoneFactory(project=project, amount=Decimal(amount), status="approved", approved_at=at)


def policy(contract, method: str, **kwargs):
    return RecognitionPolicy.objects.create(contract=contract, method=method, **kwargs)


__all__ = ["D", "set_contract_terms"]
