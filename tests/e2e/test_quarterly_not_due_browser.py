"""Billing frequency in a real browser: a month that ends no quarter leaves the quarterly contracts waiting.

Run: `pytest tests/e2e` (Playwright and Debian's /usr/bin/chromium; skipped without Chromium,
see tests/browser.py). `E2E_SCREENSHOT_DIR=/tmp/shots` keeps screenshots.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billing.models import BillingRun, Invoice, TimeEntry
from tests.factories import (
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)
from tests.login import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AUGUST_DAY = datetime.date(2025, 8, 12)


def test_analyst_runs_august_and_sees_the_quarterly_contracts_not_due(e2e_settings, new_page, shoot):
    consultant = RoleFactory(code="CONSULTANT")
    anna = PersonFactory(role=consultant, name="Anna Berger")
    monthly = ContractFactory(code="C-MONTHLY")
    quarterly = ContractFactory(code="C-QUARTERLY", billing_frequency="quarterly")
    retainer = ContractFactory(code="C-RETAINER-Q", billing_frequency="quarterly", retainer=True)
    for contract in (monthly, quarterly, retainer):
        RateCardLineFactory(rate_card=contract.rate_card, role=consultant, rate=Decimal("100.00"))
        TimeEntryFactory(project=ProjectFactory(contract=contract), person=anna, date=AUGUST_DAY, status="approved")
    UserFactory(username="ana", groups=["finance_analyst"], is_staff=True)

    page = new_page()
    log_in(page, "ana", "/billing/runs/")
    page.get_by_label("Period").fill("2025-08")
    page.get_by_role("button", name="Start billing run").click()
    page.wait_for_url(re.compile(r"/billing/runs/\d+/$"))
    run = BillingRun.objects.get()
    assert run.status == "done", run.error

    not_due = page.locator("#not-due")
    expect(not_due.get_by_role("heading", name=re.compile("Not due in this run"))).to_be_visible()
    expect(not_due).to_contain_text("(2)")
    for code in ("C-QUARTERLY", "C-RETAINER-Q"):
        row = not_due.get_by_role("row").filter(has_text=code)
        expect(row).to_contain_text("2025-09-30")
        expect(row).to_contain_text("Bills quarterly")
    expect(not_due).not_to_contain_text("C-MONTHLY")
    shoot(page, "quarterly-not-due")

    # Only the monthly contract was billed; the quarterly work waits for the September run.
    assert list(Invoice.objects.values_list("contract__code", flat=True)) == ["C-MONTHLY"]
    assert TimeEntry.objects.filter(invoice_line__isnull=True).count() == 2
