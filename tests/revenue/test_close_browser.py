"""The monthly close in a real browser: a finance controller picks the month, computes a draft, overrides the
open checklist item with a reason, closes and locks the month, and sees the schedules locked and the
journal queued for the ERP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from integrations.models import OutboxMessage
from revenue.models import JournalEntry, RevenuePeriod, RevenueSchedule
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.login import log_in

from .helpers import D, contract, issue, work

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_controller_closes_a_month_with_an_override_and_sees_it_locked_and_queued(e2e_settings, new_page, shoot):
    e2e_settings.ERP_POSTING_ENABLED = True
    e2e_settings.OUTBOX_ENQUEUE_ON_COMMIT = False  # queued, not delivered: no ERP behind this test
    carla = UserFactory(username="carla", first_name="Carla", groups=["finance_controller"])
    carla.set_password(DEFAULT_PASSWORD)  # this session's hasher (the factories' cached hash may be another's)
    carla.save(update_fields=["password"])
    c, project = contract()
    work(project, D(2026, 10, 5), "8")  # 800.00 delivered
    work(project, D(2026, 10, 28), "2", status="submitted")  # waiting for approval: the checklist's open item
    issue(c, D(2026, 10, 30), "300.00")

    page = new_page()
    log_in(page, "carla", "/revenue/close/")
    page.get_by_label("Month", exact=True).fill("2026-10")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("h1")).to_contain_text("Monthly close 2026-10")
    expect(page.locator("#check-unapproved_time")).to_contain_text("✗")
    expect(page.locator("#check-unapproved_time")).to_contain_text(project.code)

    page.get_by_role("button", name="Compute draft").click()
    expect(page.locator(".message")).to_contain_text("Revenue period 2026-10 computed as a draft")
    expect(page.locator("#close-status h2")).to_contain_text("Draft closed")
    expect(page.locator("#close-progress")).to_contain_text("Contracts scheduled: 1")
    shoot(page, "revenue-close-01-draft")

    # Closing with the item open and no reason is refused; with a reason it closes.
    page.get_by_role("button", name="Close and lock").click()
    expect(page.locator(".message")).to_contain_text("The close checklist is not clear")
    assert RevenuePeriod.objects.get(start=D(2026, 10, 1)).status == RevenuePeriod.Status.DRAFT
    page.get_by_label("Reason / note").fill("October close")
    page.get_by_label("Override the open checklist items (reason)").fill("2 h of late time: approved in November")
    page.get_by_role("button", name="Close and lock").click()

    expect(page.locator(".message")).to_contain_text("Revenue period 2026-10 closed and locked")
    expect(page.locator("#close-status h2")).to_contain_text("Closed")
    expect(page.locator("#close-status")).to_contain_text("Checklist overridden: 2 h of late time")
    expect(page.locator("#close-lock")).to_contain_text("Schedules locked")
    expect(page.get_by_role("button", name="Close and lock")).to_have_count(0)
    journal = JournalEntry.objects.get(period__start=D(2026, 10, 1))
    table = page.locator(f"#journal-{journal.entity.code}")
    expect(table).to_contain_text(journal.reference)
    expect(table.locator(".journal-status")).to_have_text("Queued for the ERP")
    expect(table).to_contain_text("Revenue recognised 2026-10")
    shoot(page, "revenue-close-02-closed")

    period = RevenuePeriod.objects.get(start=D(2026, 10, 1))
    assert period.status == RevenuePeriod.Status.CLOSED and period.closed_by == carla
    assert period.checklist_override == "2 h of late time: approved in November"
    assert RevenueSchedule.objects.get(period=period, contract=c).period_revenue == 800
    assert OutboxMessage.objects.filter(kind=OutboxMessage.Kind.POST_JOURNAL, status="pending").count() == 1
