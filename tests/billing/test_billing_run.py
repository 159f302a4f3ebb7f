"""Billing runs and the invoice services around them, through the real services."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django_fsm_log.models import StateLog

from billing.models import Invoice, InvoiceException, InvoiceLine, TimeEntry
from billing.services.billing_run import bill_period, run_billing
from billing.services.invoices import (
    invoice_approve,
    invoice_cancel,
    invoice_override,
    invoice_reject,
    invoice_revalidate,
    invoice_write_down_to_cap,
)
from kernel.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError
from tests.factories import (
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
    set_contract_terms,
)

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)

pytestmark = pytest.mark.django_db


def run(**kwargs):
    return bill_period(period_start=START, period_end=END, run_date=RUN_DATE, **kwargs)


@pytest.fixture
def consultant_role():
    return RoleFactory(code="CONSULTANT")


@pytest.fixture
def contract(consultant_role):
    contract = ContractFactory()
    RateCardLineFactory(rate_card=contract.rate_card, role=consultant_role, rate=Decimal("100.00"))
    return contract


@pytest.fixture
def project(contract):
    return ProjectFactory(contract=contract)


@pytest.fixture
def person(consultant_role):
    return PersonFactory(role=consultant_role)


def approved(project, person, hours="8.00", day=datetime.date(2025, 3, 10)):
    return TimeEntryFactory(project=project, person=person, hours=Decimal(hours), date=day, status="approved")


@pytest.fixture
def analyst():
    return UserFactory(groups=["finance_analyst"])


@pytest.fixture
def controller():
    return UserFactory(groups=["finance_controller"])


def test_run_bills_approved_time_and_links_every_entry(project, person):
    entries = [approved(project, person, "8.00"), approved(project, person, "4.50", datetime.date(2025, 3, 11))]
    billing_run = run()
    invoice = Invoice.objects.get()
    assert billing_run.status == "done"
    assert billing_run.summary["invoices"] == 1
    assert invoice.status == "pending_approval"
    assert invoice.subtotal == Decimal("1250.00")
    assert invoice.tax_total == Decimal("237.50")
    line = invoice.lines.get()
    assert line.rate_source == InvoiceLine.RateSource.RATE_CARD
    assert "Rate card" in line.rate_source_label
    for entry in entries:
        entry.refresh_from_db()
        assert entry.status == "invoiced"
        assert entry.invoice_line == line
    logs = StateLog.objects.filter(transition="mark_invoiced")
    assert logs.count() == 2
    assert StateLog.objects.filter(object_id=invoice.pk, state="pending_approval").exists()


def test_repeating_a_run_bills_nothing_twice(project, person):
    approved(project, person)
    run()
    second = run()
    assert Invoice.objects.count() == 1
    assert second.summary["invoices"] == 0


def test_contract_scope_limits_the_run(project, person):
    approved(project, person)
    other = ProjectFactory(contract=ContractFactory(rate_card=project.contract.rate_card))
    approved(other, person)
    run(contracts=[project.contract.code])
    assert list(Invoice.objects.values_list("contract__code", flat=True)) == [project.contract.code]


def test_unknown_contract_code_is_refused_before_any_run_exists():
    from billing.models import BillingRun

    with pytest.raises(ApplicationError) as refused:
        run(contracts=["NOPE"])
    assert refused.value.field_errors == {"contract_codes": ["Unknown contract(s): NOPE."]}
    assert not BillingRun.objects.exists()


def test_a_queued_run_naming_a_contract_that_no_longer_exists_fails_visibly():
    from billing.models import BillingRun

    queued = BillingRun.objects.create(period_start=START, period_end=END, run_date=RUN_DATE, contract_codes=["GONE"])
    with pytest.raises(ApplicationError, match="Unknown contract"):
        run_billing(queued)
    failed = BillingRun.objects.get()
    assert failed.status == "failed" and "Unknown contract" in failed.error


def test_a_run_takes_its_period_scope_and_starter_from_its_row(project, person, analyst):
    from billing.models import BillingRun

    approved(project, person)
    approved(ProjectFactory(contract=ContractFactory(rate_card=project.contract.rate_card)), person)
    code = project.contract.code
    queued = BillingRun.objects.create(
        period_start=START, period_end=END, run_date=RUN_DATE, contract_codes=[code], started_by=analyst
    )
    done = run_billing(queued)
    invoice = Invoice.objects.get()
    assert done.status == "done" and invoice.billing_run == done and invoice.contract == project.contract
    assert (invoice.issue_date, invoice.prepared_by) == (RUN_DATE, analyst)


def test_the_monthly_task_refuses_what_the_page_refuses(project, person, analyst):
    """The scheduled run goes through the page's start checks: an issue date before the period is refused alike."""
    from billing.models import BillingRun
    from billing.services.billing_run import billing_run_start
    from billing.tasks import monthly_billing_run

    approved(project, person)
    with pytest.raises(ApplicationError) as by_page:
        billing_run_start(period_start=START, period_end=END, run_date=datetime.date(2025, 2, 28), user=analyst)
    with pytest.raises(ApplicationError) as by_schedule:
        monthly_billing_run(period="2025-03", run_date="2025-02-28")
    assert by_schedule.value.field_errors == by_page.value.field_errors
    assert "run_date" in by_page.value.field_errors
    assert not BillingRun.objects.exists() and not Invoice.objects.exists()
    summary = monthly_billing_run(period="2025-03", run_date="2025-04-01")  # the same checks let a valid month through
    assert summary["invoices"] == 1 and BillingRun.objects.get().status == "done"


def test_retainer_fee_is_billed_once_per_period(consultant_role):
    contract = ContractFactory(retainer=True)
    ProjectFactory(contract=contract)
    run()
    run()
    assert Invoice.objects.filter(contract=contract).count() == 1
    assert Invoice.objects.get().lines.get().kind == "retainer"


def test_cancelling_a_draft_releases_its_items_for_the_next_run(project, person, analyst):
    entry = approved(project, person)
    run()
    invoice = Invoice.objects.get()
    with pytest.raises(ApplicationError, match="pending approval"):
        invoice_cancel(invoice=invoice, user=analyst, reason="Wrong period")
    invoice_reject(invoice=invoice, user=analyst, reason="Wrong period")
    with pytest.raises(ApplicationError, match="reason"):
        invoice_cancel(invoice=invoice, user=analyst, reason="")
    invoice_cancel(invoice=invoice, user=analyst, reason="Wrong period")
    entry.refresh_from_db()
    assert entry.status == "approved" and entry.invoice_line is None
    assert StateLog.objects.filter(transition="release", object_id=entry.pk).exists()
    run()
    assert Invoice.objects.filter(status="pending_approval").count() == 1
    entry.refresh_from_db()
    assert entry.status == "invoiced"


def test_missing_rate_blocks_then_revalidates_after_the_fix(contract, project, analyst):
    senior = RoleFactory(code="SENIOR")
    person = PersonFactory(role=senior)
    entry = approved(project, person)
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "exception"
    exception = invoice.exceptions.get()
    assert exception.code == "MISSING_RATE"
    assert "SENIOR" in exception.message and exception.fix_hint and exception.fix_url
    entry.refresh_from_db()
    assert entry.status == "approved"  # unpriced: no line, nothing linked

    # A second run does not open a second draft for the same contract.
    second = run()
    assert Invoice.objects.count() == 1
    assert second.summary["skipped"]

    RateCardLineFactory(rate_card=contract.rate_card, role=senior, rate=Decimal("150.00"))
    invoice_revalidate(invoice=invoice, user=analyst)
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval"
    assert invoice.subtotal == Decimal("1200.00")
    entry.refresh_from_db()
    assert entry.status == "invoiced"
    assert invoice.exceptions.get(code="MISSING_RATE").state == InvoiceException.State.RESOLVED
    transitions = list(
        StateLog.objects.filter(object_id=invoice.pk, content_type__model="invoice")
        .order_by("id")
        .values_list("source_state", "state")
    )
    assert transitions[-2:] == [("exception", "draft"), ("draft", "pending_approval")]


def test_override_needs_a_controller_and_a_reason(project, person, analyst, controller):
    project.contract.client.credit_hold = False
    set_contract_terms(project.contract, po_number="")
    project.contract.client.po_required = True
    project.contract.client.save()
    approved(project, person)
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "exception"
    with pytest.raises(PermissionDeniedError):
        invoice_override(invoice=invoice, user=analyst, reason="PO follows")
    with pytest.raises(ApplicationError, match="reason"):
        invoice_override(invoice=invoice, user=controller, reason=" ")
    invoice_override(invoice=invoice, user=controller, reason="PO confirmed by e-mail, follows")
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval"
    exception = invoice.exceptions.get()
    assert exception.state == "overridden" and exception.resolved_by == controller
    assert invoice.history.first().history_change_reason.startswith("Override")


def test_write_down_brings_the_invoice_exactly_to_the_cap(project, person, controller):
    set_contract_terms(project.contract, cap=Decimal("500.00"))
    approved(project, person)  # 8 h x 100 = 800 > 500
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "exception"
    assert invoice.exceptions.get().amount == Decimal("300.00")
    invoice_write_down_to_cap(invoice=invoice, user=controller, reason="Agreed with client")
    invoice.refresh_from_db()
    assert invoice.subtotal == Decimal("500.00")
    assert invoice.tax_total == Decimal("95.00")
    assert invoice.total == Decimal("595.00")
    assert invoice.status == "pending_approval"
    write_down = invoice.lines.get(kind="write_down")
    assert write_down.amount == Decimal("-300.00")
    assert write_down.history.first().history_user == controller


def test_approval_numbers_gaplessly_and_freezes(project, person, analyst, controller):
    approved(project, person)
    other = ProjectFactory(
        contract=ContractFactory(entity=project.contract.entity, rate_card=project.contract.rate_card)
    )
    approved(other, person, day=datetime.date(2025, 3, 12))
    run()
    first, second = Invoice.objects.order_by("id")
    invoice_approve(invoice=first, user=analyst)
    invoice_approve(invoice=second, user=analyst)  # step 1 of both (under 10,000) is an analyst's
    first.refresh_from_db()
    second.refresh_from_db()
    prefix = project.contract.entity.number_prefix
    assert first.number == f"{prefix}-2025-000001"
    assert second.number == f"{prefix}-2025-000002"
    assert first.status == "posted"  # no ERP configured: posted on approval
    with pytest.raises(ApplicationError, match="immutable"):
        invoice_cancel(invoice=first, user=analyst, reason="Oops")
    with pytest.raises(ApplicationError):
        invoice_revalidate(invoice=first, user=analyst)


def test_nobody_approves_an_invoice_they_prepared(project, person, analyst):
    approved(project, person)
    run(user=analyst)
    invoice = Invoice.objects.get()
    with pytest.raises(SegregationOfDutiesError):
        invoice_approve(invoice=invoice, user=analyst)
    with pytest.raises(PermissionDeniedError):
        invoice_approve(invoice=invoice, user=UserFactory(groups=["project_manager"]))


def test_reject_sends_back_to_draft_with_reason_then_revalidates(project, person, analyst):
    approved(project, person)
    run()
    invoice = Invoice.objects.get()
    with pytest.raises(ApplicationError):
        invoice_reject(invoice=invoice, user=analyst, reason="")
    invoice_reject(invoice=invoice, user=analyst, reason="Check the hours with the PM")
    invoice.refresh_from_db()
    assert invoice.status == "draft"
    assert StateLog.objects.filter(object_id=invoice.pk, description="Check the hours with the PM").exists()
    invoice_revalidate(invoice=invoice, user=analyst)
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval"
    assert TimeEntry.objects.get().invoice_line.invoice == invoice


def test_billing_run_command(project, person, capsys):
    approved(project, person)
    call_command("billing_run", "--period", "2025-03", "--run-date", "2025-04-01")
    assert '"invoices": 1' in capsys.readouterr().out
    with pytest.raises(Exception, match="2026-10"):
        call_command("billing_run", "--period", "March")


@pytest.mark.postgres
def test_database_refuses_to_change_a_numbered_invoice(project, person, analyst):
    from django.db import IntegrityError, transaction

    approved(project, person)
    run()
    invoice = invoice_approve(invoice=Invoice.objects.get(), user=analyst)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("1.00"))
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("1.00"))
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        InvoiceLine.objects.create(invoice=invoice, kind="time", unit_price=1, amount=1)
    # Its status still moves on.
    Invoice.objects.filter(pk=invoice.pk).update(status="sent")


def test_run_routes_pending_invoices_to_their_approval_policy(project, person, analyst, controller):
    from approvals.models import ApprovalRequest

    for day in range(1, 16):  # 15 × 8 h × 100 = 12,000 → analyst, then controller
        approved(project, person, day=datetime.date(2025, 3, day))
    run()
    invoice = Invoice.objects.get()
    request = ApprovalRequest.objects.get(object_id=invoice.pk, status="pending")
    assert request.policy.steps.count() == 2

    invoice_approve(invoice=invoice, user=analyst)  # step 1: recorded, not yet approved
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval" and invoice.number is None
    with pytest.raises(SegregationOfDutiesError):
        invoice_approve(invoice=invoice, user=analyst)  # nobody decides two steps
    invoice_approve(invoice=invoice, user=controller)  # step 2: the invoice is approved and numbered
    invoice.refresh_from_db()
    assert invoice.number and invoice.status == "posted"
    request.refresh_from_db()
    assert request.status == "approved"
    assert list(request.decisions.values_list("approver__username", flat=True)) == [
        analyst.username,
        controller.username,
    ]
