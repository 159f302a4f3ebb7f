"""The four-eyes override of an approval route in a real browser (docs/rules/approvals.md, issue #12 finding 2).

Controller A cannot approve a 198,000 invoice past its analyst → controller → controller
route in one click; A requests an override with a reason; A's own page shows it awaiting a
second controller (no confirm button for A); controller B confirms; the invoice page shows
the route with every skipped step marked and who decided it.

Run: `pytest tests/e2e/test_override_flow.py` (Playwright + Debian's /usr/bin/chromium).
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from approvals.models import ApprovalRequest
from approvals.services import approval_request_open
from approvals.services.defaults import ensure_approval_defaults
from tests.factories import InvoiceFactory, UserFactory
from tests.login import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REASON = "Client signs today; analyst and second controller on leave"


def test_four_eyes_override_end_to_end(e2e_settings, new_page, shoot):
    ensure_approval_defaults()
    UserFactory(username="ada", first_name="Ada", last_name="Able", groups=["finance_controller"], is_staff=True)
    UserFactory(username="ben", first_name="Ben", last_name="Baker", groups=["finance_controller"], is_staff=True)
    invoice = InvoiceFactory(status="pending_approval", subtotal=Decimal("198000.00"), total=Decimal("198000.00"))
    request = approval_request_open(subject=invoice)
    url = f"/billing/invoices/{invoice.pk}/"

    a = new_page()
    log_in(a, "ada", url)
    route = a.locator("#approval-route")
    expect(route).to_contain_text("Approval route")
    expect(route.locator("tbody tr")).to_have_count(3)
    expect(route.locator("tbody tr").first).to_contain_text("Open")

    # One click is not enough: the approve button is refused by the engine, nothing changes.
    a.get_by_role("button", name=re.compile(r"^Approve ")).click()
    expect(a.locator("body")).to_contain_text("Step 1 of the approval")
    expect(a.locator("#approval-route tbody tr").first).to_contain_text("Open")

    # A requests the override, with a reason.
    a.get_by_text("Request override of the route…").click()
    a.get_by_label("Reason (required; a second controller must confirm)").fill(REASON)
    a.get_by_role("button", name="Request override").click()
    pending = a.locator(".route-override-pending")
    expect(pending).to_contain_text("Override awaiting a second controller")
    expect(pending).to_contain_text("Ada Able")
    expect(pending).to_contain_text(REASON)
    expect(a.get_by_role("button", name=re.compile("Confirm override"))).to_have_count(0)
    expect(pending).to_contain_text("four eyes")
    shoot(a, "override-1-requested")

    # B confirms.
    b = new_page()
    log_in(b, "ben", url)
    b.get_by_label("Comment (optional)").first.fill("SOW checked")
    b.get_by_role("button", name=re.compile("Confirm override")).click()
    done = b.locator("#approval-route")
    expect(done).to_contain_text("Approved")
    expect(done.locator(".route-overridden")).to_have_count(3)
    for row in range(3):
        expect(done.locator(".route-overridden").nth(row)).to_contain_text("Skipped by override")
        expect(done.locator(".route-overridden").nth(row)).to_contain_text("Ben Baker")
        expect(done.locator(".route-overridden").nth(row)).to_contain_text("requested by Ada Able")
    expect(done.locator(".route-override")).to_contain_text("Route overridden")
    expect(done.locator(".route-override")).to_contain_text(REASON)
    shoot(b, "override-2-confirmed")

    request.refresh_from_db()
    invoice.refresh_from_db()
    assert request.status == ApprovalRequest.Status.APPROVED and invoice.number
