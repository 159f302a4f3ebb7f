"""Real issued invoices for the disputes tests: approved work → billing run → approval → posted (→ sent)."""

from __future__ import annotations

import datetime
from decimal import Decimal

from billing.models import Invoice, InvoiceLine, TimeEntry
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_approve
from kernel.audit import save_audited
from kernel.workflow import apply_transition
from tests.factories import (
    ContractFactory,
    ExpenseFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)


def approve_fully(invoice: Invoice, first_user) -> Invoice:
    """Approve through every step of its policy (extra steps by fresh controllers)."""
    invoice = invoice_approve(invoice=invoice, user=first_user)
    for _ in range(3):
        if invoice.status != Invoice.Status.PENDING_APPROVAL:
            break
        invoice = invoice_approve(invoice=invoice, user=UserFactory(groups=["finance_controller"]))
    return invoice


def work_contract(*, code: str | None = None, rate: str = "100.00"):
    """A T&M contract with consultant and senior rates, one project, approved time of both roles and an expense."""
    consultant = RoleFactory(code="CONSULTANT")
    senior = RoleFactory(code="SENIOR")
    contract = ContractFactory(**({"code": code} if code else {}))
    RateCardLineFactory(rate_card=contract.rate_card, role=consultant, rate=Decimal(rate))
    RateCardLineFactory(rate_card=contract.rate_card, role=senior, rate=Decimal(rate) * 2)
    project = ProjectFactory(contract=contract)
    for day, role, hours in ((10, consultant, "8.00"), (11, consultant, "4.00"), (12, senior, "5.00")):
        TimeEntryFactory(project=project, person=PersonFactory(role=role), hours=Decimal(hours),
                         date=datetime.date(2025, 3, day), status="approved")
    ExpenseFactory(project=project, amount=Decimal("120.00"), status="approved")
    return contract


def issued_invoice(*, approver=None, sent: bool = True, contract=None) -> Invoice:
    """Bill the contract's March work, approve and post it (no ERP), and mark it sent."""
    contract = contract or work_contract()
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE, contracts=[contract.code])
    invoice = Invoice.objects.get(contract=contract, kind=Invoice.Kind.INVOICE, status="pending_approval")
    invoice = approve_fully(invoice, approver or UserFactory(groups=["finance_analyst"]))
    assert invoice.status in (Invoice.Status.POSTED, Invoice.Status.SENT), invoice.status
    invoice.refresh_from_db()  # a live server's inline delivery may have sent it already
    if sent and invoice.status == Invoice.Status.POSTED:
        apply_transition(invoice, "mark_sent", user=None, reason="Delivered")
        save_audited(invoice, user=None, reason="Delivered")
    return invoice


def lines_of(invoice: Invoice, kind: str = InvoiceLine.Kind.TIME) -> list[InvoiceLine]:
    return list(invoice.lines.filter(kind=kind).order_by("position"))


def billed_items(invoice: Invoice) -> set[int]:
    return set(TimeEntry.objects.filter(invoice_line__invoice=invoice).values_list("id", flat=True))
