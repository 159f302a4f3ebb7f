"""Credit notes: full, by lines, by amount; approval numbers them in the CN series; release of billed items."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django_fsm_log.models import StateLog

from billing.models import Invoice, TimeEntry
from billing.services.credit_notes import credit_note_cancel, credit_note_create, invoice_reissue
from billing.services.invoices import invoice_approve, invoice_reject
from kernel.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError
from tests.disputes.factories import billed_items, issued_invoice, lines_of

pytestmark = pytest.mark.django_db


def test_full_credit_mirrors_the_invoice_and_awaits_a_controller(analyst):
    invoice = issued_invoice()
    note = credit_note_create(invoice=invoice, user=analyst, reason="Billed to the wrong client")
    assert note.kind == Invoice.Kind.CREDIT_NOTE and note.credit_of_id == invoice.pk
    assert note.status == Invoice.Status.PENDING_APPROVAL and note.number is None
    assert (note.subtotal, note.tax_total, note.total) == (invoice.subtotal, invoice.tax_total, invoice.total)
    assert note.lines.count() == invoice.lines.count()
    assert set(note.lines.values_list("credited_line_id", flat=True)) == set(invoice.lines.values_list("id", flat=True))
    assert set(note.lines.values_list("kind", flat=True)) == {"credit"}
    invoice.refresh_from_db()
    assert invoice.credited_amount == invoice.total and invoice.balance == 0
    request = note_request(note)
    assert request.policy.name == "Credit note" and request.status == "pending"


def note_request(note):
    from approvals.models import ApprovalRequest

    return ApprovalRequest.objects.get(content_type=ContentType.objects.get_for_model(Invoice), object_id=note.pk)


def test_approval_numbers_the_credit_note_credits_the_invoice_and_releases_its_items(analyst, controller):
    invoice = issued_invoice()
    items = billed_items(invoice)
    assert items
    note = credit_note_create(invoice=invoice, user=analyst, reason="Wrong client")
    with pytest.raises(SegregationOfDutiesError):
        invoice_approve(invoice=note, user=analyst)  # the preparer never approves (and is no controller)
    note = invoice_approve(invoice=note, user=controller)
    assert note.number == f"{invoice.entity.number_prefix}-CN-{note.issue_date.year}-000001"
    assert note.status == Invoice.Status.POSTED
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.CREDITED
    assert billed_items(invoice) == set()
    assert set(TimeEntry.objects.filter(id__in=items).values_list("status", flat=True)) == {"approved"}
    logs = StateLog.objects.filter(
        content_type=ContentType.objects.get_for_model(TimeEntry), object_id__in=items, transition="release"
    )
    assert logs.count() == len(items)
    assert all(note.number in log.description for log in logs)


def test_partial_credit_by_lines_taxes_at_the_invoice_rate(analyst, controller):
    invoice = issued_invoice()
    first, second = lines_of(invoice)[:2]
    note = credit_note_create(invoice=invoice, user=analyst, reason="Hours not agreed",
                              lines=[(first, Decimal("100.00")), (second, second.amount)])
    assert note.subtotal == Decimal("100.00") + second.amount
    assert note.tax_total == (note.subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
    assert sorted(note.lines.values_list("credited_line_id", flat=True)) == sorted([first.pk, second.pk])
    items = billed_items(invoice)
    invoice_approve(invoice=note, user=controller)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT  # partly credited: stays on the account
    assert invoice.balance == invoice.total - note.total
    assert billed_items(invoice) == items  # a plain partial credit releases nothing


def test_credit_by_amount_splits_the_tax_and_never_exceeds_what_is_left(analyst):
    invoice = issued_invoice()
    note = credit_note_create(invoice=invoice, user=analyst, reason="Goodwill", amount=Decimal("119.00"))
    assert (note.subtotal, note.tax_total, note.total) == (Decimal("100.00"), Decimal("19.00"), Decimal("119.00"))
    assert note.lines.get().credited_line is None
    left = invoice.total - Decimal("119.00")
    with pytest.raises(ApplicationError, match="left to credit"):
        credit_note_create(invoice=invoice, user=analyst, reason="More", amount=left + Decimal("0.01"))
    with pytest.raises(ApplicationError, match="partly credited"):
        credit_note_create(invoice=invoice, user=analyst, reason="Full")
    rest = credit_note_create(invoice=invoice, user=analyst, reason="The rest", amount=left)
    invoice.refresh_from_db()
    assert invoice.credited_amount == invoice.total and rest.total == left
    with pytest.raises(ApplicationError, match="fully credited"):
        credit_note_create(invoice=invoice, user=analyst, reason="Again", amount=Decimal("1"))


def test_crediting_the_remainder_by_amount_makes_a_full_credit_that_releases_items(analyst, controller):
    invoice = issued_invoice()
    first = credit_note_create(invoice=invoice, user=analyst, reason="Part", amount=Decimal("50.00"))
    invoice_approve(invoice=first, user=controller)
    rest = credit_note_create(invoice=invoice, user=analyst, reason="Rest", amount=invoice.total - Decimal("50.00"))
    rest = invoice_approve(invoice=rest, user=controller)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.CREDITED and billed_items(invoice) == set()
    assert rest.number.endswith("-000002")


def test_a_line_cannot_be_credited_beyond_its_amount(analyst):
    invoice = issued_invoice()
    line = lines_of(invoice)[0]
    credit_note_create(invoice=invoice, user=analyst, reason="Part", lines=[(line, line.amount - 1)])
    with pytest.raises(ApplicationError, match=r"at most the 1\.00"):
        credit_note_create(invoice=invoice, user=analyst, reason="Again", lines=[(line, Decimal("2.00"))])


def test_a_rejected_credit_note_stays_a_draft_and_gives_its_amount_back(analyst, controller):
    invoice = issued_invoice()
    note = credit_note_create(invoice=invoice, user=analyst, reason="Wrong", amount=Decimal("100.00"))
    invoice_reject(invoice=note, user=controller, reason="Customer agreed to pay in full")
    note.refresh_from_db()
    invoice.refresh_from_db()
    assert note.status == Invoice.Status.DRAFT and note.number is None
    assert invoice.credited_amount == 0 and invoice.balance == invoice.total
    assert note_request(note).status == "rejected"
    again = credit_note_create(invoice=invoice, user=analyst, reason="Full after all")  # nothing counts any more
    assert again.total == invoice.total


def test_finance_may_withdraw_a_pending_credit_note(analyst):
    invoice = issued_invoice()
    note = credit_note_create(invoice=invoice, user=analyst, reason="Wrong", amount=Decimal("100.00"))
    credit_note_cancel(credit_note=note, user=analyst, reason="Typed the wrong amount")
    note.refresh_from_db()
    invoice.refresh_from_db()
    assert note.status == Invoice.Status.CANCELLED and invoice.credited_amount == 0
    assert note_request(note).status == "cancelled"


def test_only_finance_credits_and_only_issued_invoices(collector, auditor, analyst):
    invoice = issued_invoice()
    for user in (collector, auditor):
        with pytest.raises(PermissionDeniedError):
            credit_note_create(invoice=invoice, user=user, reason="No")
    note = credit_note_create(invoice=invoice, user=analyst, reason="Ok", amount=Decimal("10"))
    with pytest.raises(ApplicationError, match="cannot be credited"):
        credit_note_create(invoice=note, user=analyst, reason="A credit of a credit")


def test_reissue_bills_the_released_items_again(analyst, controller):
    invoice = issued_invoice()
    items = billed_items(invoice)
    with pytest.raises(ApplicationError, match="no approved credit note"):
        invoice_reissue(invoice=invoice, user=analyst)
    note = credit_note_create(invoice=invoice, user=analyst, reason="Re-bill with the PO")
    invoice_approve(invoice=note, user=controller)
    invoice.refresh_from_db()
    drafts = invoice_reissue(invoice=invoice, user=analyst)
    assert len(drafts) == 1
    new = drafts[0]
    assert new.status == Invoice.Status.PENDING_APPROVAL and new.total == invoice.total
    assert billed_items(new) == items
    with pytest.raises(ApplicationError, match="Nothing to reissue"):
        invoice_reissue(invoice=invoice, user=analyst)


def test_a_full_credit_of_a_disputed_invoice_resolves_its_dispute(analyst, controller):
    from disputes.models import Dispute
    from disputes.services import dispute_open

    invoice = issued_invoice()
    dispute = dispute_open(invoice=invoice, category="duplicate", disputed_amount=invoice.total, user=analyst)
    note = credit_note_create(invoice=invoice, user=analyst, reason="Billed twice by mistake")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DISPUTED  # still disputed until the credit is approved
    note = invoice_approve(invoice=note, user=controller)
    invoice.refresh_from_db()
    dispute.refresh_from_db()
    assert invoice.status == Invoice.Status.CREDITED
    assert (dispute.status, dispute.outcome, dispute.credit_note_id) == (Dispute.Status.RESOLVED, "credit", note.pk)
    assert dispute.resolved_by == controller and note.number in dispute.resolution_note
