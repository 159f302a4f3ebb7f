"""Races the database must win: parallel billing runs and parallel approvals (PostgreSQL)."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Invoice, InvoiceLine, TimeEntry
from billing.services.billing_run import bill_period
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
        lambda _i: bill_period(period_start=START, period_end=END, run_date=RUN_DATE, chunk_size=5).summary,
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


def test_a_run_bills_its_chunks_side_by_side_each_item_once(settings, monkeypatch):
    """Outside a transaction, chunks go on two connections (threads); each item is billed once, progress counts all."""
    settings.BILLING_RUN_PARALLEL_CHUNKS = 2
    role = RoleFactory(code="CONSULTANT")
    person = PersonFactory(role=role)
    entries = []
    for _ in range(5):
        contract = ContractFactory()
        RateCardLineFactory(rate_card=contract.rate_card, role=role, rate=Decimal("100.00"))
        project = ProjectFactory(contract=contract)
        entries.append(
            TimeEntryFactory(
                project=project, person=person, hours=Decimal("2"), date=datetime.date(2025, 3, 10), status="approved"
            )
        )
    seen_threads = set()
    original = threading.Thread.start

    def start(thread):
        seen_threads.add(thread.name)
        return original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    run = bill_period(
        period_start=datetime.date(2025, 3, 1),
        period_end=datetime.date(2025, 3, 31),
        run_date=datetime.date(2025, 4, 1),
        chunk_size=2,
    )
    assert {name for name in seen_threads if name.startswith(f"billing-run-{run.pk}-")} == {
        f"billing-run-{run.pk}-0",
        f"billing-run-{run.pk}-1",
    }
    assert run.status == "done" and (run.contracts_done, run.contracts_total) == (5, 5)
    assert run.summary["invoices"] == 5 and run.summary["items_billed"]["time_entries"] == 5
    for entry in entries:
        entry.refresh_from_db()
        assert entry.status == "invoiced" and entry.invoice_line.invoice.billing_run_id == run.pk
    assert Invoice.objects.filter(billing_run=run).count() == 5
