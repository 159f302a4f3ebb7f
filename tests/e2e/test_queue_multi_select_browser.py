"""The approvals queue's multi-select in a real browser (ADR 0116): tick two requests, approve them at once.

Run: `pytest tests/e2e/test_queue_multi_select_browser.py` (Playwright + Debian's /usr/bin/chromium).
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from playwright.sync_api import expect

from approvals.models import ApprovalDecision, ApprovalRequest
from tests.approvals.test_bulk_decisions import _week
from tests.login import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _request(item) -> ApprovalRequest:
    ct = ContentType.objects.get_for_model(type(item))
    return ApprovalRequest.objects.get(content_type=ct, object_id=item.pk)


def test_two_ticked_requests_are_approved_at_once_and_the_third_waits(e2e_settings, new_page):
    project, items = _week(5)  # four time entries and an expense of one project, routed to its PM
    pm = project.project_manager
    pm.username = "pia"
    pm.save()
    first, second, third = (_request(items[0]), _request(items[4]), _request(items[1]))  # time, expense, time

    page = new_page()
    log_in(page, "pia", "/approvals/mine/")
    expect(page.get_by_role("heading", name="My approvals")).to_be_visible()
    expect(page.locator("#my-approvals tbody tr")).to_have_count(5)
    page.locator(f"#select-{first.pk}").check()
    page.locator(f"#select-{second.pk}").check()
    page.get_by_role("button", name="Approve selected").click()

    expect(page.locator("#my-approvals .message")).to_contain_text("2 approvals approved.")
    expect(page.locator(f"#request-{first.pk}")).to_have_count(0)
    expect(page.locator(f"#request-{second.pk}")).to_have_count(0)
    expect(page.locator(f"#request-{third.pk}")).to_be_visible()
    expect(page.locator("#my-approvals tbody tr")).to_have_count(3)
    for approval in (first, second):
        approval.refresh_from_db()
        assert approval.status == ApprovalRequest.Status.APPROVED
    assert set(ApprovalDecision.objects.values_list("request_id", flat=True)) == {first.pk, second.pk}
    third.refresh_from_db()
    assert third.status == ApprovalRequest.Status.PENDING
