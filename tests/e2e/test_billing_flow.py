"""Finance's month end in a real browser: run billing, work the exception queue, approve.

Run: `pytest tests/e2e` (Playwright and Debian's /usr/bin/chromium; skipped without Chromium,
see tests/browser.py). `E2E_SCREENSHOT_DIR=/tmp/shots` keeps screenshots.
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billing.models import BillingRun, Invoice
from tests.factories import (
    ContractFactory,
    PersonFactory,
    ProjectFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
)
from tests.login import log_in as form_log_in

# The live server needs committed data (transaction=True). Seeded defaults (tax rules, role
# permissions) come back after each flush through post_migrate receivers, so no serialized_rollback.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORK_DAY = datetime.date(2025, 3, 10)


def log_in(page, username: str, next_url: str) -> None:
    """The login form, then the TOTP code when the user must pass two-factor (tests/login.py)."""
    form_log_in(page, username, next_url)


@pytest.fixture
def month_of_work():
    """Two T&M contracts with approved March time; a SENIOR has no rate on the second one's card."""
    consultant, senior = RoleFactory(code="CONSULTANT"), RoleFactory(code="SENIOR")
    clean = ContractFactory(code="C-CLEAN", client__legal_name="Nordlicht Versicherung AG")
    blocked = ContractFactory(code="C-BLOCKED", client__legal_name="Havel Logistik GmbH")
    for contract in (clean, blocked):
        RateCardLineFactory(rate_card=contract.rate_card, role=consultant, rate=Decimal("100.00"))
    anna = PersonFactory(role=consultant, name="Anna Berger")
    sam = PersonFactory(role=senior, name="Sam Senior")
    TimeEntryFactory(project=ProjectFactory(contract=clean), person=anna, date=WORK_DAY, status="approved")
    blocked_project = ProjectFactory(contract=blocked, code="PRJ-HAVEL")
    TimeEntryFactory(project=blocked_project, person=anna, date=WORK_DAY, hours=Decimal("6.00"), status="approved")
    TimeEntryFactory(project=blocked_project, person=sam, date=WORK_DAY, hours=Decimal("4.00"), status="approved")
    # Staff, as in the demo: the "fix it" links open the admin.
    analyst = UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"], is_staff=True)
    # The invoice's policy (under 10,000) wants a finance analyst other than its preparer: no controller skips it.
    reviewer = UserFactory(username="rita", first_name="Rita", last_name="Review", groups=["finance_analyst"])
    return {"blocked": blocked, "senior": senior, "analyst": analyst, "reviewer": reviewer}


def test_run_billing_fix_an_exception_and_approve(e2e_settings, new_page, shoot, month_of_work):
    data = month_of_work

    # 1. The analyst signs in through the login form and starts the March run.
    analyst = new_page()
    log_in(analyst, "ana", "/billing/runs/")
    expect(analyst.get_by_role("heading", name="Billing runs")).to_be_visible()
    analyst.get_by_label("Period").fill("2025-03")
    shoot(analyst, "01-runs-form")
    analyst.get_by_role("button", name="Start billing run").click()

    # 2. The task ran inline (django-q2 sync): the run page shows the finished summary.
    analyst.wait_for_url(re.compile(r"/billing/runs/\d+/$"))
    billing_run = BillingRun.objects.get()
    assert billing_run.status == "done", billing_run.error
    assert billing_run.started_by == data["analyst"]
    expect(analyst.locator(".message")).to_contain_text(f"Billing run {billing_run.pk} started for March 2025")
    expect(analyst.locator("#run-status .badge").first).to_have_text("Done")
    expect(analyst.locator("#run-progress-bar")).to_have_attribute("value", "2")
    expect(analyst.get_by_role("heading", name="Invoices made")).to_be_visible()
    expect(analyst.get_by_role("heading", name="Exceptions by code")).to_be_visible()
    shoot(analyst, "02-run-summary")

    # 3. From the summary into the exception queue, filtered by the code.
    analyst.get_by_role("link", name="MISSING_RATE").click()
    analyst.wait_for_url(re.compile(r"/billing/exceptions/\?code=MISSING_RATE$"))
    invoice = Invoice.objects.get(contract=data["blocked"])
    assert invoice.status == "exception"
    row = analyst.locator(f"#row-{invoice.pk}-MISSING_RATE")
    expect(row).to_contain_text("Havel Logistik GmbH")
    expect(row).to_contain_text("SENIOR")
    expect(row.get_by_role("link", name="Open the record to fix")).to_be_visible()
    shoot(analyst, "03-exception-queue")

    # 4. Finance fixes the data (a SENIOR rate on the card), then revalidates inline (htmx).
    RateCardLineFactory(rate_card=data["blocked"].rate_card, role=data["senior"], rate=Decimal("150.00"))
    row.get_by_role("button", name=f"Revalidate {invoice.display_number}").click()
    queue = analyst.locator("#exception-queue")
    expect(queue.locator(".message")).to_contain_text(
        f"{invoice.display_number} revalidated: no blocking exception; now pending approval."
    )
    expect(queue).to_contain_text("No invoice is blocked by MISSING_RATE.")
    assert analyst.url.endswith("/billing/exceptions/?code=MISSING_RATE")  # swapped in place, no page load
    shoot(analyst, "04-revalidated")
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval"
    assert invoice.subtotal == Decimal("1200.00")  # 6 h × 100 + 4 h × 150

    # 5. A second analyst (own browser context) opens it from the review queue and approves step 1.
    reviewer = new_page()
    log_in(reviewer, "rita", "/billing/invoices/?status=pending_approval")
    expect(reviewer.get_by_role("heading", name="Invoices")).to_be_visible()
    shoot(reviewer, "05-review-queue")
    reviewer.get_by_role("link", name=invoice.display_number).click()
    reviewer.wait_for_url(f"**/billing/invoices/{invoice.pk}/")
    senior_line = reviewer.locator("details.drill").filter(has_text="SENIOR")
    expect(senior_line.locator("table")).to_be_hidden()
    senior_line.locator("summary").click()  # drill down to the billed time entries
    expect(senior_line.locator("table")).to_contain_text("Sam Senior")
    expect(reviewer.locator(".timeline")).to_contain_text("Ana Lyst")
    shoot(reviewer, "06-invoice-detail")
    reviewer.get_by_role("button", name=re.compile(r"^Approve")).click()

    invoice.refresh_from_db()
    # Posted at once (no ERP configured), then e-mailed by the delivery task (run inline here): sent.
    assert invoice.number and invoice.status == "sent"
    assert invoice.delivery_attempts.get().result == "sent"
    assert invoice.approved_by == data["reviewer"]
    expect(reviewer.locator(".message")).to_contain_text(f"Invoice {invoice.number} approved")
    expect(reviewer.get_by_role("heading", level=1)).to_contain_text(invoice.number)
    expect(reviewer.locator(".timeline")).to_contain_text("Pending approval → Approved")
    expect(reviewer.locator(".delivery-log")).to_contain_text("Sent")
    shoot(reviewer, "07-approved")


def test_run_page_polls_until_the_run_is_done(e2e_settings, new_page, month_of_work):
    """A run queued for a worker: the page follows its progress without a reload (htmx every 2 s)."""
    queued = BillingRun.objects.create(
        period_start=datetime.date(2025, 3, 1), period_end=datetime.date(2025, 3, 31),
        run_date=datetime.date(2025, 4, 1), started_by=month_of_work["analyst"],
    )
    page = new_page()
    log_in(page, "ana", f"/billing/runs/{queued.pk}/")
    expect(page.locator("#run-status")).to_contain_text("queued, waiting for a worker")
    BillingRun.objects.filter(pk=queued.pk).update(status="running", contracts_total=2, contracts_done=1)
    expect(page.locator("#run-progress-bar")).to_have_attribute("value", "1", timeout=6_000)
    BillingRun.objects.filter(pk=queued.pk).update(
        status="done", contracts_done=2, summary={"invoices": 0, "exceptions_by_code": {}, "skipped": []}
    )
    expect(page.get_by_role("heading", name="Invoices made")).to_be_visible(timeout=6_000)
    expect(page.locator("#run-status")).not_to_have_attribute("hx-trigger", re.compile("every"))
