"""A PO-exceeded invoice in a real browser: the analyst raises the client's PO in admin and revalidates.

Run: `pytest tests/e2e/test_po_flow.py` (Playwright and /usr/bin/chromium; skipped without Chromium).
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billing.models import Invoice, PurchaseOrder
from billing.services.billing_run import bill_period
from tests.billing.po_helpers import END, RUN_DATE, START, bill_hours, po_contract, purchase_order
from tests.factories import ClientFactory, UserFactory
from tests.login import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def po_exceeded():
    """PO 1,000.00 of Calder Water; its contract's March time is 1,200.00: PO_EXCEEDED."""
    po = purchase_order(ClientFactory(code="CALDER", legal_name="Calder Water plc"), amount="1000.00",
                        number="PO-CW-4471", raised_by="Priya Shah (procurement)")
    contract = po_contract("C-CALDER", po)
    bill_hours(contract, "12.00")
    UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"], is_staff=True)
    bill_period(period_start=START, period_end=END, run_date=RUN_DATE)
    invoice = Invoice.objects.get(contract=contract)
    assert invoice.status == Invoice.Status.EXCEPTION
    return po, invoice


def test_a_po_exceeded_invoice_is_fixed_by_raising_the_po_and_revalidating(e2e_settings, new_page, shoot,
                                                                          po_exceeded):
    po, invoice = po_exceeded
    page = new_page()

    # 1. The exception queue says how much is left on the PO and who can raise it.
    log_in(page, "ana", "/billing/exceptions/?code=PO_EXCEEDED")
    row = page.locator(f"#row-{invoice.pk}-PO_EXCEEDED")
    expect(row).to_contain_text("1000.00 EUR left on PO PO-CW-4471")
    expect(row).to_contain_text("Priya Shah (procurement)")
    shoot(page, "po-01-exception")

    # 2. "Open the record to fix" is the PO in admin: the analyst raises it, with the reason.
    row.get_by_role("link", name="Open the record to fix").click()
    page.wait_for_url(re.compile(rf"/admin/billing/purchaseorder/{po.pk}/change/"))
    page.locator("#id_amount").fill("1500.00")
    page.locator("#id_change_reason").fill("Client raised PO-CW-4471 to 1,500.00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    po.refresh_from_db()
    assert po.amount == Decimal("1500.00")
    assert po.history.first().history_change_reason == "Client raised PO-CW-4471 to 1,500.00"

    # 3. Back in the queue, revalidating clears PO_EXCEEDED: the invoice goes to approval.
    page.goto("/billing/exceptions/?code=PO_EXCEEDED")
    page.locator(f"#row-{invoice.pk}-PO_EXCEEDED").get_by_role(
        "button", name=f"Revalidate {invoice.display_number}"
    ).click()
    queue = page.locator("#exception-queue")
    expect(queue.locator(".message")).to_contain_text(
        f"{invoice.display_number} revalidated: no blocking exception; now pending approval."
    )
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING_APPROVAL

    # 4. The PO page shows what is now held and what is left.
    page.goto(f"/billing/purchase-orders/{po.pk}/")
    expect(page.locator("[data-figure=amount]")).to_contain_text("1,500.00")
    expect(page.locator("[data-figure=invoiced]")).to_contain_text("1,200.00")
    expect(page.locator("[data-figure=remaining]")).to_contain_text("300.00")
    expect(page.locator("#po-invoices")).to_contain_text(invoice.display_number)
    shoot(page, "po-02-po-page")
    assert PurchaseOrder.objects.get(pk=po.pk).amount == Decimal("1500.00")
