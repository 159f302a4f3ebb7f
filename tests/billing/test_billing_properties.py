"""Invariants of the billing run, checked on generated work (hypothesis)."""

from __future__ import annotations

import datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Invoice, InvoiceLine, TimeEntry
from billing.services.billing_run import bill_period
from tests.factories import (
    ContractFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 2)

entry_strategy = st.fixed_dictionaries(
    {
        "project": st.integers(0, 2),
        "person": st.integers(0, 2),
        "day": st.integers(-20, 40),  # before, inside and after the period
        "quarter_hours": st.integers(1, 40),
        "billable": st.booleans(),
        "status": st.sampled_from(["approved", "approved", "approved", "submitted", "draft"]),
    }
)


@pytest.fixture
def firm(db):
    roles = [RoleFactory(code=code) for code in ("SENIOR", "CONSULTANT", "ANALYST")]
    card = RateCardFactory()
    # A rate change inside the period: the same role bills at two rates.
    for role, rate in zip(roles, ("187.35", "123.45", "99.99"), strict=True):
        RateCardLineFactory(rate_card=card, role=role, rate=Decimal(rate), effective_to=datetime.date(2025, 3, 15))
        RateCardLineFactory(
            rate_card=card, role=role, rate=Decimal(rate) + Decimal("10.01"), effective_from=datetime.date(2025, 3, 16)
        )
    entity = LegalEntityFactory()
    projects = [ProjectFactory(contract=ContractFactory(rate_card=card, entity=entity)) for _ in range(3)]
    people = [PersonFactory(role=role) for role in roles]
    return projects, people


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(entry_strategy, max_size=25))
def test_billing_invariants(firm, entries):
    projects, people = firm
    with transaction.atomic():
        for spec in entries:
            TimeEntry.objects.create(
                project=projects[spec["project"]],
                person=people[spec["person"]],
                date=START + datetime.timedelta(days=spec["day"]),
                hours=Decimal(spec["quarter_hours"]) / 4,
                billable=spec["billable"],
                status=spec["status"],
            )
        due = TimeEntry.objects.filter(status="approved", billable=True, date__lte=END)
        due_hours = sum((e.hours for e in due), Decimal(0))
        due_ids = set(due.values_list("id", flat=True))

        bill_period(period_start=START, period_end=END, run_date=RUN_DATE)

        lines = list(InvoiceLine.objects.filter(kind="time"))
        # Σ billed hours = Σ approved billable hours up to the period end.
        assert sum((line.quantity for line in lines), Decimal(0)) == due_hours
        # Each due item is billed, exactly once; nothing else is.
        billed = TimeEntry.objects.filter(invoice_line__isnull=False)
        assert set(billed.values_list("id", flat=True)) == due_ids
        for line in lines:
            # Lines round as specified, and group exactly their entries' hours.
            assert line.amount == _round(line.quantity * line.unit_price)
            assert sum(e.hours for e in line.time_entries.all()) == line.quantity
        for invoice in Invoice.objects.prefetch_related("lines", "taxes"):
            assert invoice.subtotal == sum(line.amount for line in invoice.lines.all())
            assert invoice.total == invoice.subtotal + sum(tax.amount for tax in invoice.taxes.all())
            assert invoice.tax_total == sum(tax.amount for tax in invoice.taxes.all())

        # A repeated run changes nothing.
        snapshot = (Invoice.objects.count(), InvoiceLine.objects.count(), billed.count())
        bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
        assert (Invoice.objects.count(), InvoiceLine.objects.count(), billed.count()) == snapshot
        transaction.set_rollback(True)


# --- purchase orders: Σ committed drawdown ≤ PO amount at every step (docs/rules/billing.md §13) -----------

po_step_strategy = st.one_of(
    st.tuples(st.just("work"), st.integers(0, 2), st.integers(1, 24)),  # contract, half hours at 100.00
    st.tuples(st.just("run"), st.just(0), st.just(0)),
    st.tuples(st.just("approve"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("credit"), st.integers(0, 20), st.integers(1, 100)),  # percent of the invoice credited
    st.tuples(st.just("raise"), st.just(0), st.integers(0, 800)),
    st.tuples(st.just("revalidate"), st.integers(0, 20), st.just(0)),
)


def _committed(po) -> Decimal:
    """Independently of the service: Σ invoices from approval onwards − Σ issued credit notes."""
    committed = ("pending_approval", "approved", "posted", "sent", "partially_paid", "paid", "disputed", "credited")
    invoices = Invoice.objects.filter(purchase_order=po, currency=po.currency)
    drawn = sum((i.subtotal for i in invoices.filter(kind="invoice", status__in=committed)), Decimal(0))
    given_back = sum(
        (i.subtotal for i in invoices.filter(kind="credit_note", status__in=committed[1:])), Decimal(0)
    )
    return drawn - given_back


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(0, 3000), steps=st.lists(po_step_strategy, min_size=1, max_size=14))
def test_po_drawdown_never_exceeds_the_po_amount(db, amount, steps):
    from billing.services.credit_notes import credit_note_create
    from billing.services.invoices import invoice_cancel, invoice_reject, invoice_revalidate
    from billing.services.purchase_orders import committed_drawdown, purchase_order_save
    from kernel.errors import ApplicationError
    from tests.billing.po_helpers import bill_hours, client, po_contract, purchase_order
    from tests.disputes.factories import approve_fully
    from tests.factories import UserFactory

    with transaction.atomic():
        po = purchase_order(client(), amount=f"{amount}.00")
        contracts = [po_contract(f"C-HYP-{i}", po) for i in range(3)]
        analyst = UserFactory(groups=["finance_analyst"])
        month = 0
        for action, index, value in steps:
            start = datetime.date(2025, 1 + month, 1)
            end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - datetime.timedelta(days=1)
            invoices = list(Invoice.objects.filter(purchase_order=po, kind="invoice").order_by("id"))
            pick = invoices[index % len(invoices)] if invoices else None
            try:
                if action == "work":
                    bill_hours(contracts[index], str(Decimal(value) / 2), day=start + datetime.timedelta(days=9))
                elif action == "run" and month < 10:
                    bill_period(period_start=start, period_end=end, run_date=end + datetime.timedelta(days=1))
                    month += 1
                elif action == "approve" and pick and pick.status == "pending_approval":
                    approve_fully(pick, UserFactory(groups=["finance_analyst"]))
                elif action == "cancel" and pick and pick.status in ("exception", "pending_approval"):
                    if pick.status == "pending_approval":
                        pick = invoice_reject(invoice=pick, user=analyst, reason="Not now")
                    invoice_cancel(invoice=pick, user=analyst, reason="Not now")
                elif action == "credit" and pick and pick.number and pick.status in ("posted", "sent"):
                    gross = (pick.total * value / 100).quantize(Decimal("0.01"))
                    if gross > 0:
                        note = credit_note_create(invoice=pick, user=analyst, reason="Correction", amount=gross)
                        approve_fully(note, UserFactory(groups=["finance_controller"]))
                elif action == "raise":
                    po.refresh_from_db()
                    po.amount += Decimal(value)
                    purchase_order_save(po=po, user=analyst, reason="Raised")
                elif action == "revalidate" and pick and pick.status == "exception":
                    invoice_revalidate(invoice=pick, user=analyst)
            except ApplicationError:
                pass  # a refusal is an outcome too; the invariant must hold after it
            po.refresh_from_db()
            assert _committed(po) == committed_drawdown([po.pk])[po.pk]
            assert _committed(po) <= po.amount, (action, _committed(po), po.amount)
        transaction.set_rollback(True)
