"""Management commands and django-q2 tasks take the same services, so the same controls hold.

Each test runs a command or a task the way cron, an operator or a retried worker would — the billing
run twice over a billed period, a run over posted invoices, a queued run executed twice, delivery of a
draft, the escalation job over pending approvals — and checks nothing is billed twice, no numbered
invoice changes and no approval is taken. Controls: `never-bill-twice`, `immutability`, `policy-route`.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from approvals.tasks import escalate_overdue
from billing.models import BillingRun, Invoice, InvoiceLine, TimeEntry
from billing.services.invoices import invoice_approve
from billing.tasks import deliver_invoice_task, run_billing_task
from kernel.roles import FINANCE_ANALYST
from tests.controls.conftest import attempt, pending_invoice, pending_request
from tests.factories import (
    BillingRunFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def billable():
    """Approved, billable time on a contract with a rate: one invoice's worth."""
    role = RoleFactory(code="CONSULTANT")
    project = ProjectFactory()
    RateCardLineFactory(rate_card=project.contract.rate_card, role=role, rate=Decimal("100.00"))
    person = PersonFactory(role=role)
    return [
        TimeEntryFactory(project=project, person=person, hours=Decimal("8.00"), status="approved",
                         date=datetime.date(2025, 3, day))
        for day in (10, 11)
    ]


def _run_command(*args: str) -> dict:
    out = StringIO()
    call_command("billing_run", *args, stdout=out)
    return json.loads(out.getvalue())


def _billed_lines() -> dict[int, int]:
    return dict(TimeEntry.objects.filter(invoice_line__isnull=False).values_list("pk", "invoice_line_id"))


@pytest.mark.control("never-bill-twice")
@pytest.mark.parametrize("repeat", ["same-run-date", "later-run-date", "contract-only"])
def test_the_billing_run_command_twice_bills_nothing_twice(billable, repeat):
    _run_command("--period", "2025-03", "--run-date", "2025-04-01")
    first = _billed_lines()
    assert len(first) == 2 and Invoice.objects.count() == 1

    extra = {
        "same-run-date": ["--run-date", "2025-04-01"],
        "later-run-date": ["--run-date", "2025-05-02"],
        "contract-only": ["--run-date", "2025-04-01", "--contract", billable[0].project.contract.code],
    }[repeat]
    _run_command("--period", "2025-03", *extra)

    assert _billed_lines() == first
    assert Invoice.objects.exclude(status="cancelled").count() == 1


@pytest.mark.control("immutability")
def test_the_billing_run_command_over_a_posted_period_changes_no_numbered_invoice(billable):
    _run_command("--period", "2025-03", "--run-date", "2025-04-01")
    invoice = Invoice.objects.get()
    invoice = invoice_approve(invoice=invoice, user=UserFactory(groups=[FINANCE_ANALYST]), comment="ok")
    assert invoice.number
    frozen = Invoice.objects.filter(pk=invoice.pk).values("number", "total", "subtotal").get()
    lines = list(InvoiceLine.objects.filter(invoice=invoice).values_list("pk", "amount"))

    _run_command("--period", "2025-03", "--run-date", "2025-04-01")
    _run_command("--period", "2025-02", "--run-date", "2025-04-01")

    assert Invoice.objects.filter(pk=invoice.pk).values("number", "total", "subtotal").get() == frozen
    assert list(InvoiceLine.objects.filter(invoice=invoice).values_list("pk", "amount")) == lines
    assert Invoice.objects.count() == 1


@pytest.mark.control("never-bill-twice")
def test_a_queued_run_executed_twice_by_workers_bills_once(billable):
    run = BillingRunFactory(period_start=datetime.date(2025, 3, 1), period_end=datetime.date(2025, 3, 31),
                            run_date=datetime.date(2025, 4, 1), status=BillingRun.Status.QUEUED)

    run_billing_task(run.pk)
    first = _billed_lines()
    run_billing_task(run.pk)  # a retried task

    assert _billed_lines() == first and Invoice.objects.count() == 1


@pytest.mark.control("immutability")
def test_the_delivery_task_refuses_a_draft(billable):
    _run_command("--period", "2025-03", "--run-date", "2025-04-01")
    invoice = Invoice.objects.get()
    assert invoice.number is None

    assert attempt(lambda: deliver_invoice_task(invoice.pk)) is not None

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and not invoice.delivery_attempts.exists()


@pytest.mark.control("policy-route")
def test_the_escalation_job_escalates_but_approves_nothing():
    invoice = pending_invoice(prepared_by=UserFactory(groups=[FINANCE_ANALYST]), total="50000.00")

    with time_machine.travel(datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(days=30), tick=False):
        escalate_overdue()

    invoice.refresh_from_db()
    request = pending_request(invoice)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and invoice.number is None
    assert request.current_step == 1 and request.decisions.count() == 0
