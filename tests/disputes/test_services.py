"""Dispute services: open (whole invoice or lines), investigate, notes, withdraw, resolve with each outcome."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.models import Invoice, TimeEntry
from billing.services.credit_notes import invoice_reissue
from billing.services.invoices import invoice_approve
from disputes.models import Dispute
from disputes.services import (
    dispute_add_note,
    dispute_investigate,
    dispute_open,
    dispute_resolve,
    dispute_withdraw,
)
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, InvalidTransitionError, PermissionDeniedError
from kernel.workflow import apply_transition
from tests.disputes.factories import billed_items, issued_invoice, lines_of

pytestmark = pytest.mark.django_db


def open_on_lines(invoice, user, **kwargs):
    first, second = lines_of(invoice)[:2]
    return dispute_open(
        invoice=invoice, category="hours", disputed_amount=first.amount + second.amount, user=user,
        customer_reference="AP-4711", lines=[(first, first.amount), (second, second.amount)], **kwargs,
    )


def test_opening_a_dispute_marks_the_invoice_disputed_with_defaults(analyst):
    invoice = issued_invoice()
    dispute = open_on_lines(invoice, analyst)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DISPUTED
    assert dispute.owner == analyst and dispute.status == Dispute.Status.OPEN and dispute.currency == "EUR"
    assert dispute.due_date == timezone.now().date() + datetime.timedelta(days=14)
    assert dispute.lines.count() == 2
    log = StateLog.objects.for_(invoice).latest("timestamp")
    assert (log.state, log.by) == ("disputed", analyst) and "hours" in log.description
    assert dispute.history.first().history_user == analyst


def test_one_live_dispute_per_invoice_and_amounts_within_the_balance(analyst, collector):
    invoice = issued_invoice()
    line = lines_of(invoice)[0]
    with pytest.raises(ApplicationError, match="exceeds the open balance"):
        dispute_open(invoice=invoice, category="rate", disputed_amount=invoice.total + 1, user=analyst)
    with pytest.raises(ApplicationError, match="at most the line"):
        dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("1"), user=analyst,
                     lines=[(line, line.amount + 1)])
    with pytest.raises(ApplicationError, match="category"):
        dispute_open(invoice=invoice, category="mood", disputed_amount=Decimal("1"), user=analyst)
    dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("10"), user=collector)
    with pytest.raises(ConflictError):
        dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("10"), user=analyst)


def test_drafts_and_credited_invoices_cannot_be_disputed_and_auditors_change_nothing(analyst, auditor):
    invoice = issued_invoice()
    with pytest.raises(PermissionDeniedError):
        dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("1"), user=auditor)
    approved = issued_invoice(sent=False)
    Invoice.objects.filter(pk=approved.pk)  # posted is disputable
    dispute_open(invoice=approved, category="tax", disputed_amount=Decimal("1"), user=analyst)
    draft = Invoice.objects.create(
        contract=invoice.contract, entity=invoice.entity, client=invoice.client, currency="EUR",
        issue_date=invoice.issue_date, due_date=invoice.due_date, total=Decimal("10"),
    )
    with pytest.raises(ApplicationError, match="Only posted, sent or partially paid"):
        dispute_open(invoice=draft, category="tax", disputed_amount=Decimal("1"), user=analyst)


def test_investigate_note_with_attachment_and_withdraw(analyst, collector, auditor):
    invoice = issued_invoice()
    dispute = dispute_open(invoice=invoice, category="quality", disputed_amount=Decimal("50"), user=analyst)
    dispute = dispute_investigate(dispute=dispute, user=collector)
    assert dispute.status == Dispute.Status.INVESTIGATING
    with pytest.raises(InvalidTransitionError):
        dispute_investigate(dispute=dispute, user=collector)
    note = dispute_add_note(dispute=dispute, user=collector, text="Customer sent the timesheet",
                            attachment=SimpleUploadedFile("timesheet.pdf", b"%PDF-1.4 test", "application/pdf"))
    assert note.attachment.name.startswith("disputes/") and note.attachment.read() == b"%PDF-1.4 test"
    with pytest.raises(PermissionDeniedError):
        dispute_add_note(dispute=dispute, user=auditor, text="No")
    with pytest.raises(ApplicationError, match="reason"):
        dispute_withdraw(dispute=dispute, user=analyst, reason=" ")
    dispute = dispute_withdraw(dispute=dispute, user=analyst, reason="Customer found the timesheet")
    invoice.refresh_from_db()
    assert dispute.status == Dispute.Status.WITHDRAWN and dispute.outcome == ""
    assert invoice.status == Invoice.Status.SENT


def test_upheld_on_a_partly_paid_invoice_returns_it_to_partially_paid(analyst):
    invoice = issued_invoice()
    apply_transition(invoice, "record_partial_payment", user=analyst, reason="Paid 100")
    invoice.paid_amount = Decimal("100.00")
    save_audited(invoice, user=analyst, reason="Paid 100")
    dispute = dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("50"), user=analyst)
    dispute = dispute_resolve(dispute=dispute, outcome="upheld", user=analyst, note="Rates are per contract")
    invoice.refresh_from_db()
    assert (dispute.status, dispute.outcome) == ("resolved", "upheld")
    assert invoice.status == Invoice.Status.PARTIALLY_PAID and dispute.credit_note is None
    with pytest.raises(ApplicationError, match="cannot be resolved again"):
        dispute_resolve(dispute=dispute, outcome="upheld", user=analyst, note="Again")


def test_credit_outcome_makes_a_credit_note_awaiting_approval(analyst, controller, collector):
    invoice = issued_invoice()
    dispute = dispute_open(invoice=invoice, category="rate", disputed_amount=Decimal("119"), user=collector)
    with pytest.raises(PermissionDeniedError, match="Only finance"):
        dispute_resolve(dispute=dispute, outcome="credit", user=collector, note="x", credit_amount=Decimal("119"))
    dispute = dispute_resolve(dispute=dispute, outcome="credit", user=analyst, note="Agreed discount",
                              credit_amount=Decimal("119.00"))
    note = dispute.credit_note
    assert note.status == Invoice.Status.PENDING_APPROVAL and note.total == Decimal("119.00")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT and invoice.balance == invoice.total - Decimal("119.00")
    invoice_approve(invoice=note, user=controller)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT
    assert "approved" in dispute.notes.get().text


def test_credit_and_reissue_on_two_lines_releases_exactly_their_items(analyst, controller):
    invoice = issued_invoice()
    first, second, third = lines_of(invoice, kind="time") + lines_of(invoice, kind="expense")
    items_of = {
        line.pk: set(TimeEntry.objects.filter(invoice_line=line).values_list("id", flat=True))
        for line in (first, second)
    }
    dispute = open_on_lines(invoice, analyst)
    with pytest.raises(ApplicationError, match="in full"):
        dispute_resolve(dispute=dispute, outcome="credit_and_reissue", user=analyst, note="x",
                        lines=[(first, first.amount - 1)])
    with pytest.raises(ApplicationError, match="not an amount"):
        dispute_resolve(dispute=dispute, outcome="credit_and_reissue", user=analyst, note="x",
                        credit_amount=Decimal("1"))
    dispute = dispute_resolve(dispute=dispute, outcome="credit_and_reissue", user=analyst, note="Wrong rates",
                              lines=[(first, first.amount), (second, second.amount)])
    note = invoice_approve(invoice=dispute.credit_note, user=controller)
    assert note.number and "-CN-" in note.number
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT  # partly credited
    remaining = billed_items(invoice)
    released = items_of[first.pk] | items_of[second.pk]
    assert not (remaining & released)
    assert third.expenses.count() == 1  # the expense line was not credited: still billed
    drafts = invoice_reissue(invoice=invoice, user=analyst)
    assert billed_items(drafts[0]) == released
    assert drafts[0].subtotal == first.amount + second.amount
