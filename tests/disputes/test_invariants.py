"""Invariants of credit notes (docs/rules/disputes-and-collections.md).

Σ credits ≤ invoice total (also concurrently, in the database),
invoice balance = total − credits − payments at every step, released items billed once again and never twice
(re-runs, and a credit approval racing a billing run)."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Contract, Invoice, TimeEntry
from billing.services.billing_run import bill_period
from billing.services.credit_notes import credit_note_create, credit_note_issued
from billing.services.invoices import invoice_approve, invoice_reject
from billing.services.payments import payment_record
from kernel.errors import ApplicationError
from tests.disputes.factories import END, START, billed_items, issued_invoice, lines_of, work_contract
from tests.factories import TimeEntryFactory

ZERO = Decimal("0")


def live_credits(invoice: Invoice) -> Decimal:
    return (
        Invoice.objects.filter(credit_of=invoice).exclude(status__in=["cancelled", "draft"]).aggregate(s=Sum("total"))[
            "s"] or ZERO
    )


def paid(invoice: Invoice) -> Decimal:
    return invoice.payments.aggregate(s=Sum("amount"))["s"] or ZERO


def assert_invoice_invariants(invoice: Invoice) -> None:
    invoice.refresh_from_db()
    credits = live_credits(invoice)
    assert invoice.credited_amount == credits <= invoice.total
    assert invoice.paid_amount == paid(invoice)
    assert invoice.balance == invoice.total - credits - paid(invoice)
    in_db = Invoice.objects.filter(pk=invoice.pk).annotate(b=F("total") - F("credited_amount") - F("paid_amount"))
    assert in_db.get().b == invoice.balance
    issued = Invoice.objects.filter(credit_of=invoice, number__isnull=False).aggregate(s=Sum("total"))["s"] or ZERO
    if invoice.status == Invoice.Status.CREDITED:
        assert issued == invoice.total and not billed_items(invoice)
    else:
        assert issued < invoice.total


# --- one invoice, any sequence of credits, decisions and payments ---------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("amount"), st.decimals(min_value="0.01", max_value="3000", places=2)),
        st.tuples(st.just("lines"), st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
                  st.sampled_from(["full", "half"])),
        st.tuples(st.just("full")),
        st.tuples(st.just("approve"), st.integers(0, 5)),
        st.tuples(st.just("reject"), st.integers(0, 5)),
        st.tuples(st.just("pay"), st.decimals(min_value="0.01", max_value="2000", places=2)),
    ),
    min_size=1,
    max_size=7,
)


@pytest.mark.django_db
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_credits_never_exceed_the_total_and_the_balance_always_adds_up(ops, analyst, controller, shared_invoice):
    invoice = shared_invoice
    with transaction.atomic():  # each example on the same invoice, rolled back afterwards
        lines = lines_of(invoice, kind="time") + lines_of(invoice, kind="expense")
        for n, op in enumerate(ops):
            pending = list(Invoice.objects.filter(credit_of=invoice, status="pending_approval").order_by("id"))
            try:
                with transaction.atomic():
                    if op[0] == "amount":
                        credit_note_create(invoice=invoice, user=analyst, reason="h", amount=op[1])
                    elif op[0] == "lines":
                        picks = [(lines[i], lines[i].amount if op[2] == "full" else (lines[i].amount / 2).quantize(
                            Decimal("0.01"))) for i in op[1]]
                        credit_note_create(invoice=invoice, user=analyst, reason="h", lines=picks)
                    elif op[0] == "full":
                        credit_note_create(invoice=invoice, user=analyst, reason="h")
                    elif op[0] == "approve" and pending:
                        invoice_approve(invoice=pending[op[1] % len(pending)], user=controller)
                    elif op[0] == "reject" and pending:
                        invoice_reject(invoice=pending[op[1] % len(pending)], user=controller, reason="No")
                    elif op[0] == "pay":
                        invoice.refresh_from_db()
                        payment_record(amount=op[1], currency="EUR", date=datetime.date(2025, 5, 1),
                                       external_reference=f"HYP-{n}-{op[1]}", source="manual", user=analyst,
                                       invoice=invoice)
            except ApplicationError:
                pass  # refused (over-credit, closed invoice): nothing changed
            assert_invoice_invariants(invoice)
        transaction.set_rollback(True)


@pytest.fixture
def shared_invoice(db):
    return issued_invoice()


@pytest.mark.django_db
def test_the_database_refuses_credits_beyond_the_total():
    invoice = issued_invoice()
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(credited_amount=invoice.total + Decimal("0.01"))


# --- concurrency (PostgreSQL: committed data, two connections) --------------------------------------------------


def _in_thread(target, results, key):
    def run():
        try:
            results[key] = target()
        except Exception as exc:  # the test inspects what each thread got
            results[key] = exc
        finally:
            connection.close()

    return threading.Thread(target=run)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_credit_notes_over_the_rest_one_fails(analyst):
    invoice = issued_invoice()
    amount = (invoice.total * Decimal("0.6")).quantize(Decimal("0.01"))
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def create():
        barrier.wait()
        return credit_note_create(invoice=invoice, user=analyst, reason="Concurrent", amount=amount)

    threads = [_in_thread(create, results, key) for key in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    made = [r for r in results.values() if isinstance(r, Invoice)]
    refused = [r for r in results.values() if isinstance(r, ApplicationError)]
    assert len(made) == 1 and len(refused) == 1, results
    invoice.refresh_from_db()
    assert invoice.credited_amount == amount == live_credits(invoice)


# --- released items: billed once again, never twice ----------------------------------------------------------


def net_billed(contract: Contract) -> Decimal:
    """Σ invoice subtotals − Σ credit-note subtotals, over issued and pending documents of the contract."""
    live = Invoice.objects.filter(contract=contract).exclude(status__in=["cancelled", "draft"])
    invoices = live.filter(kind="invoice").aggregate(s=Sum("subtotal"))["s"] or ZERO
    credits = live.filter(kind="credit_note").aggregate(s=Sum("subtotal"))["s"] or ZERO
    return invoices - credits


@pytest.mark.django_db
def test_after_a_full_credit_the_items_are_billed_once_by_reruns(analyst, controller):
    invoice = issued_invoice()
    value = net_billed(invoice.contract)
    items = billed_items(invoice)
    note = credit_note_create(invoice=invoice, user=analyst, reason="Wrong PO")
    bill_period(period_start=START, period_end=END, run_date=END, contracts=[invoice.contract.code])
    assert not Invoice.objects.filter(contract=invoice.contract, status="pending_approval", kind="invoice").exists()
    invoice_approve(invoice=note, user=controller)
    for _ in range(2):
        bill_period(period_start=START, period_end=END, run_date=END, contracts=[invoice.contract.code])
    new = Invoice.objects.get(contract=invoice.contract, kind="invoice", status="pending_approval")
    assert billed_items(new) == items
    assert net_billed(invoice.contract) == value  # − original + credit + new: the work billed once


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_credit_approval_racing_a_billing_run_bills_the_items_once(analyst, controller):
    contract = work_contract()
    invoice = issued_invoice(contract=contract)
    value = net_billed(contract)
    items = billed_items(invoice)
    note = credit_note_create(invoice=invoice, user=analyst, reason="Race")
    # Late-approved time keeps the contract a candidate of the run, so the run locks it (and must wait).
    late = TimeEntryFactory(project=invoice.lines.filter(project__isnull=False).first().project,
                            person=TimeEntry.objects.get(pk=min(items)).person, hours=Decimal("1.00"),
                            date=datetime.date(2025, 3, 20), status="approved")
    approved_not_committed, commit = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def approve():
        with transaction.atomic():
            approved = invoice_approve(invoice=note, user=controller)  # holds the contract lock
            approved_not_committed.set()
            commit.wait(20)
        return approved

    def run():
        approved_not_committed.wait(20)
        return bill_period(period_start=START, period_end=END, run_date=END, contracts=[contract.code])

    approver, runner = _in_thread(approve, results, "approve"), _in_thread(run, results, "run")
    approver.start()
    runner.start()
    approved_not_committed.wait(20)
    runner.join(1.5)
    assert runner.is_alive(), "the run must wait for the contract the credit approval holds"
    commit.set()
    approver.join(30)
    runner.join(30)
    assert isinstance(results["approve"], Invoice), results
    assert results["run"].status == "done", results
    bill_period(period_start=START, period_end=END, run_date=END, contracts=[contract.code])  # and once more
    new = Invoice.objects.filter(contract=contract, kind="invoice").exclude(pk=invoice.pk)
    # The run waited, then read the released items with the late entry: one invoice bills them all, once.
    assert new.count() == 1 and billed_items(new.get()) == items | {late.pk}
    assert results["run"].summary["invoices"] == 1
    late_line = TimeEntry.objects.get(pk=late.pk).invoice_line
    assert net_billed(contract) == value + late.hours * late_line.unit_price


@pytest.mark.postgres  # SQLite has no row locks: Django drops FOR UPDATE there
@pytest.mark.django_db
def test_credit_issued_releases_under_the_contract_lock(analyst, controller):
    """The release path locks the contract row first (as a billing run does): the SQL says FOR UPDATE."""
    from django.test.utils import CaptureQueriesContext

    invoice = issued_invoice()
    note = credit_note_create(invoice=invoice, user=analyst, reason="Lock")
    Invoice.objects.filter(pk=note.pk).update(number="X-CN-1", status="approved")
    note.refresh_from_db()
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        credit_note_issued(credit_note=note, user=controller)
    first_lock = next(q["sql"] for q in ctx.captured_queries if "FOR UPDATE" in q["sql"])
    assert '"billing_contract"' in first_lock
