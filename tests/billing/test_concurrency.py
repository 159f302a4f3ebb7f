"""Races the database must win: parallel billing runs and parallel approvals (PostgreSQL)."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Invoice, InvoiceLine, TimeEntry
from billing.services.billing_run import run_billing
from billing.services.invoices import invoice_approve
from kernel.errors import ConflictError
from tests.factories import (
    ContractFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)


def _in_parallel(count: int, work) -> list:
    """Start `count` threads at the same instant; collect results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_two_runs_at_the_same_moment_bill_every_item_exactly_once():
    role = RoleFactory(code="CONSULTANT")
    card = RateCardFactory()
    RateCardLineFactory(rate_card=card, role=role, rate=Decimal("100.00"))
    person = PersonFactory(role=role)
    entity = LegalEntityFactory()
    for _ in range(12):
        project = ProjectFactory(contract=ContractFactory(rate_card=card, entity=entity))
        for day in (3, 4, 5):
            TimeEntryFactory(project=project, person=person, date=datetime.date(2025, 3, day), status="approved")

    results = _in_parallel(
        2,
        lambda _i: run_billing(period_start=START, period_end=END, run_date=RUN_DATE, chunk_size=5).summary,
    )
    for result in results:
        assert not isinstance(result, Exception) or isinstance(result, ConflictError), result
    assert TimeEntry.objects.filter(status="invoiced").count() == 36
    assert TimeEntry.objects.filter(invoice_line__isnull=True).count() == 0
    assert Invoice.objects.count() == 12  # one per contract, none duplicated
    billed_hours = sum(line.quantity for line in InvoiceLine.objects.all())
    assert billed_hours == Decimal("288.00")
    assert sum(r["invoices"] for r in results if isinstance(r, dict)) == 12


def test_twenty_concurrent_approvals_number_one_to_twenty_without_gap_or_duplicate():
    entity = LegalEntityFactory(code="DEX")
    contract = ContractFactory(entity=entity)
    invoices = [
        Invoice.objects.create(
            kind="invoice",
            entity=entity,
            client=contract.client,
            contract=contract,
            currency="EUR",
            issue_date=RUN_DATE,
            due_date=RUN_DATE,
            subtotal=Decimal("100.00"),
            total=Decimal("119.00"),
            status="pending_approval",
        )
        for _ in range(20)
    ]
    approvers = [UserFactory(groups=["finance_analyst"]) for _ in range(20)]

    results = _in_parallel(20, lambda i: invoice_approve(invoice=invoices[i], user=approvers[i]).number)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"DEX-2025-{n:06d}" for n in range(1, 21)]
