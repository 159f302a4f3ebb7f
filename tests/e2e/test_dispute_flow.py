"""From a customer's objection to a corrected invoice, in a real browser.

Finance opens a dispute on two lines of a sent invoice and resolves it with credit-and-reissue; a
controller approves the credit note (numbered in the CN series; the two lines' items are released);
finance reissues; the controller approves the corrected invoice; the AR aging and the client statement
agree with the invoice balances.
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from approvals.services.defaults import ensure_approval_defaults
from billing.models import Invoice, TimeEntry
from disputes.models import Dispute
from tests.disputes.factories import issued_invoice, lines_of
from tests.factories import UserFactory
from tests.login import log_in as form_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(page, username: str, next_url: str) -> None:
    """The login form, then the TOTP code when the user must pass two-factor (tests/login.py)."""
    form_log_in(page, username, next_url)


@pytest.fixture
def sent_invoice():
    ensure_approval_defaults()
    UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"])
    UserFactory(username="conny", first_name="Conny", last_name="Troll", groups=["finance_controller"])
    UserFactory(username="cole", first_name="Cole", last_name="Lector", groups=["collections"])
    return issued_invoice()


def test_dispute_two_lines_credit_and_reissue(e2e_settings, new_page, shoot, sent_invoice):
    invoice = sent_invoice
    first, second = lines_of(invoice)[:2]
    released = set(TimeEntry.objects.filter(invoice_line__in=[first, second]).values_list("id", flat=True))
    kept = set(TimeEntry.objects.filter(invoice_line__invoice=invoice).values_list("id", flat=True)) - released

    # 1. The analyst opens a dispute from the invoice page on two ticked lines.
    analyst = new_page()
    log_in(analyst, "ana", f"/billing/invoices/{invoice.pk}/")
    panel = analyst.locator("#dispute-panel")
    expect(panel).to_contain_text("No dispute, no credit note.")
    panel.get_by_role("link", name="Open dispute").click()
    analyst.wait_for_url(f"**/disputes/invoices/{invoice.pk}/open/")
    analyst.get_by_label(f"Line {first.position}", exact=True).check()
    analyst.get_by_label(f"Line {second.position}", exact=True).check()
    analyst.get_by_label("Category").select_option("hours")
    analyst.get_by_label("Customer reference").fill("AP-2025-0417")
    shoot(analyst, "dispute-01-open")
    analyst.get_by_role("button", name="Open dispute").click()
    analyst.wait_for_url(re.compile(r"/disputes/\d+/$"))
    dispute = Dispute.objects.get(invoice=invoice)
    expect(analyst.locator(".message")).to_contain_text("held from dunning")
    expect(analyst.locator("#disputed-lines tbody tr")).to_have_count(2)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DISPUTED

    # 2. … and resolves it: credit and reissue of the two lines (ticked already, from the dispute).
    analyst.locator("#resolve summary").click()
    analyst.get_by_label("Credit and reissue").check()
    analyst.get_by_label("Resolution note").fill("Hours booked on the wrong project; re-bill with the right ones")
    shoot(analyst, "dispute-02-resolve")
    analyst.get_by_role("button", name="Resolve dispute").click()
    expect(analyst.locator(".message")).to_contain_text("awaits a controller")
    expect(analyst.locator("#dispute-status")).to_contain_text("Resolved")
    dispute.refresh_from_db()
    credit_note = dispute.credit_note
    assert credit_note.status == Invoice.Status.PENDING_APPROVAL
    assert credit_note.subtotal == first.amount + second.amount
    expect(analyst.locator(".timeline")).to_contain_text("Ana Lyst")

    # 3. The controller approves the credit note: numbered in the credit-note series.
    controller = new_page()
    log_in(controller, "conny", f"/billing/invoices/{credit_note.pk}/")
    controller.get_by_role("button", name=re.compile(r"^Approve")).click()
    credit_note.refresh_from_db()
    assert credit_note.number and "-CN-" in credit_note.number
    assert credit_note.status in (Invoice.Status.POSTED, Invoice.Status.SENT)  # posted, then e-mailed
    expect(controller.locator(".message")).to_contain_text(credit_note.number)
    assert not TimeEntry.objects.filter(id__in=released).exclude(status="approved", invoice_line=None).exists()

    # 4. The original invoice shows the credit; finance reissues at once.
    analyst.goto(f"/billing/invoices/{invoice.pk}/")
    panel = analyst.locator("#dispute-panel")
    expect(panel.locator("#invoice-credit-notes")).to_contain_text(credit_note.number)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT and invoice.balance == invoice.total - credit_note.total
    shoot(analyst, "dispute-03-credited")
    panel.get_by_role("button", name="Reissue now").click()
    analyst.wait_for_url(re.compile(r"/billing/invoices/\d+/$"))
    corrected = Invoice.objects.filter(contract=invoice.contract, kind="invoice").exclude(pk=invoice.pk).get()
    assert analyst.url.endswith(f"/billing/invoices/{corrected.pk}/")
    expect(analyst.locator(".message")).to_contain_text("Corrected invoice")
    assert corrected.status == Invoice.Status.PENDING_APPROVAL
    assert set(TimeEntry.objects.filter(invoice_line__invoice=corrected).values_list("id", flat=True)) == released
    assert set(TimeEntry.objects.filter(invoice_line__invoice=invoice).values_list("id", flat=True)) == kept

    # 5. A second analyst approves the corrected invoice (its route's step; nobody approves what they
    #    prepared and a controller does not skip the analyst's step): numbered and posted.
    UserFactory(username="rita", first_name="Rita", last_name="Review", groups=["finance_analyst"], is_staff=True)
    reviewer = new_page()
    log_in(reviewer, "rita", f"/billing/invoices/{corrected.pk}/")
    reviewer.get_by_role("button", name=re.compile(r"^Approve")).click()
    expect(reviewer.get_by_role("heading", level=1)).to_contain_text("-")
    corrected.refresh_from_db()
    assert corrected.number and corrected.status in (Invoice.Status.POSTED, Invoice.Status.SENT)
    expect(reviewer.get_by_role("heading", level=1)).to_contain_text(corrected.number)

    # 6. Collections: aging and statement agree with the balances.
    owed = invoice.balance + corrected.balance
    assert owed == invoice.total - credit_note.total + corrected.total
    collector = new_page()
    log_in(collector, "cole", f"/disputes/collections/clients/{invoice.client_id}/statement/?since=2025-01-01")
    statement = collector.locator("main")
    for number in (invoice.number, credit_note.number, corrected.number):
        expect(statement).to_contain_text(number)
    from disputes.selectors.collections import aging_report, client_statement

    today = timezone.localdate()
    ledger = client_statement(client=invoice.client, as_of=today, since=today.replace(year=2025, month=1, day=1))
    (eur,) = ledger.ledgers
    assert eur.closing == owed == eur.open_items
    shoot(collector, "dispute-04-statement")
    collector.goto("/disputes/collections/aging/")
    expect(collector.locator("main")).to_contain_text(invoice.client.legal_name)
    report = aging_report(as_of=today)
    assert sum((row.total for row in report.rows), Decimal("0")) == owed
    shoot(collector, "dispute-05-aging")
