"""Each demo persona, on the seeded demo firm, signs in with the credentials `seed_demo` prints and does
their headline task in a real browser.

- pm: approves a milestone someone else completed;
- analyst: runs billing and fixes an exception (revalidates it after the fix);
- analyst2 then controller: an invoice through a two-step route (analyst's review, then a controller);
- collections: sends the payment reminders due today;
- auditor: reads an invoice's history, and a POST of theirs is refused (403), nothing changed.

Each test seeds the whole demo (`seed_demo --scale 1`, as `make demo` does) through the command, and
reads the logins from its printed table: the live server needs committed data, which pytest-django
flushes after every test, so the seed cannot be shared across tests. It costs about 10 s of CPU per
test on PostgreSQL; the module's run is dominated by it and by the analyst's billing run.

Run: `pytest tests/e2e/test_personas.py` (Playwright + Debian's /usr/bin/chromium).
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from playwright.sync_api import expect

from approvals.models import ApprovalRequest
from billing.models import BillingRun, Invoice, Milestone, RateCard, RateCardLine, Role
from tests.login import log_in as form_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOGIN_ROW = re.compile(r"^\s+(\S+)\s+(\S+)\s+\S.*$")


def printed_logins(output: str) -> dict[str, str]:
    """username -> password, as `seed_demo` prints them under "Demo logins"."""
    table = output.split("Demo logins", 1)[1].splitlines()[1:]
    return {m.group(1): m.group(2) for line in table if (m := LOGIN_ROW.match(line))}


@pytest.fixture
def demo(e2e_settings) -> dict[str, str]:
    """The seeded demo firm; returns the printed logins."""
    out = StringIO()
    call_command("seed_demo", "--scale", "1", stdout=out)
    logins = printed_logins(out.getvalue())
    assert {"pm", "analyst", "analyst2", "controller", "controller2", "collections", "auditor"} <= set(logins)
    return logins


def log_in(page, demo: dict[str, str], username: str, next_url: str) -> None:
    """Sign in through the login form with the printed demo credentials (the one login of this module).

    The suite runs with DEBUG off, so controllers and admins also pass the TOTP check
    (tests/login.py types the code of an enrolled authenticator).
    """
    form_log_in(page, username, next_url, password=demo[username])


def _user(username: str):
    return get_user_model().objects.get(username=username)


def _csrf_post(page, url: str, form: dict[str, str]):
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(url, form=form, headers={"X-CSRFToken": token}, max_redirects=0)


def test_pm_approves_a_milestone_someone_else_completed(demo, new_page):
    pm = _user("pm")
    milestone = Milestone.objects.filter(project__project_manager=pm, status="completed").order_by("pk").first()
    assert milestone is not None and milestone.completed_by != pm

    page = new_page()
    log_in(page, demo, "pm", "/approvals/milestones/")
    row = page.locator("tr", has_text=milestone.name).filter(has_text=milestone.project.code)
    row.get_by_role("button", name=f"Approve milestone {milestone.name}").click()
    expect(page.locator(".message").first).to_contain_text("approved")

    milestone.refresh_from_db()
    assert milestone.status == "approved" and milestone.approved_by == pm
    request = ApprovalRequest.objects.get(content_type=ContentType.objects.get_for_model(Milestone),
                                          object_id=milestone.pk)
    assert request.status == "approved" and request.decisions.get().approver == pm


def test_analyst_runs_billing_and_fixes_an_exception(demo, new_page):
    page = new_page()
    log_in(page, demo, "analyst", "/billing/runs/")
    page.get_by_label("Period").fill("2026-10")
    page.get_by_label("Run date").fill("2026-11-04")
    page.get_by_role("button", name="Start billing run").click()
    page.wait_for_url(re.compile(r"/billing/runs/\d+/$"))
    run = BillingRun.objects.filter(started_by__username="analyst").get()
    assert run.status == "done", run.error
    assert run.summary["invoices"] > 40 and "MISSING_RATE" in run.summary["exceptions_by_code"]
    expect(page.locator("#run-status .badge").first).to_have_text("Done")

    # The legacy rate card has no ANALYST rate: finance adds it, then revalidates in the queue.
    page.get_by_role("link", name="MISSING_RATE").click()
    page.wait_for_url(re.compile(r"/billing/exceptions/\?code=MISSING_RATE$"))
    invoice = Invoice.objects.filter(billing_run=run, contract__rate_card__code="LEGACY-GBP",
                                     exceptions__code="MISSING_RATE", exceptions__state="open").order_by("pk").first()
    assert invoice is not None
    row = page.locator(f"#row-{invoice.pk}-MISSING_RATE")
    expect(row).to_contain_text("ANALYST")
    RateCardLine.objects.create(rate_card=RateCard.objects.get(code="LEGACY-GBP"), role=Role.objects.get(
        code="ANALYST"), rate=Decimal("85.00"), effective_from=datetime.date(2025, 1, 1))
    row.get_by_role("button", name=f"Revalidate {invoice.display_number}").click()
    expect(page.locator("#exception-queue .message")).to_contain_text(f"{invoice.display_number} revalidated")
    expect(row).to_have_count(0)  # swapped in place: the invoice left the MISSING_RATE group
    assert not invoice.exceptions.filter(code="MISSING_RATE", state="open").exists()
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval"


def test_controller_approves_an_invoice_after_analyst2_through_its_route(demo, new_page):
    from billing.services.billing_run import bill_period

    run = bill_period(period_start=datetime.date(2026, 10, 1), period_end=datetime.date(2026, 10, 31),
                      run_date=datetime.date(2026, 11, 4), user=_user("analyst"))
    request = (ApprovalRequest.objects.filter(status="pending", subject_type="invoice", current_step=1,
                                              object_id__in=run.invoices.values("pk"),
                                              policy__name="Invoice 10,000 to 100,000")
               .order_by("pk").first())
    assert request is not None
    invoice = Invoice.objects.get(pk=request.object_id)
    assert invoice.prepared_by.username == "analyst"

    # Step 1, the analyst's review: not `analyst` (who prepared it), so `analyst2`.
    reviewer = new_page()
    log_in(reviewer, demo, "analyst2", f"/approvals/requests/{request.pk}/")
    reviewer.get_by_role("button", name="Approve step 1").click()
    expect(reviewer.locator(".message").first).to_contain_text("pproved")
    request.refresh_from_db()
    assert (request.status, request.current_step) == ("pending", 2)

    # Step 2, the controller's: on their home page and in "My approvals", then approved.
    controller = new_page()
    log_in(controller, demo, "controller", "/")
    expect(controller.locator("body")).to_contain_text("At your approval step")
    controller.goto("/approvals/mine/")
    expect(controller.locator("#my-approvals")).to_contain_text(invoice.display_number)
    controller.goto(f"/approvals/requests/{request.pk}/")
    controller.get_by_role("button", name="Approve step 2").click()
    expect(controller.locator(".message").first).to_contain_text("pproved")

    request.refresh_from_db()
    invoice.refresh_from_db()
    assert request.status == "approved"
    assert [d.approver.username for d in request.decisions.order_by("step_order")] == ["analyst2", "controller"]
    assert invoice.number and invoice.approved_by.username == "controller"


def test_collections_sends_the_reminders_due_today(demo, new_page):
    from disputes.models import DunningNotice

    page = new_page()
    log_in(page, demo, "collections", "/disputes/collections/dunning/")
    due = page.get_by_role("heading", name=re.compile(r"^Due today \((\d+)\)$"))
    expect(due).to_be_visible()
    assert int(re.search(r"\((\d+)\)", due.inner_text()).group(1)) > 0
    before = DunningNotice.objects.count()
    page.get_by_role("button", name="Send now").click(timeout=60_000)  # renders and e-mails each reminder's PDF
    expect(page.locator(".message").first).to_contain_text("sent")
    assert DunningNotice.objects.count() > before


def test_auditor_reads_a_history_and_changes_nothing(demo, new_page):
    invoice = Invoice.objects.filter(kind="invoice", status="paid").order_by("pk").first()
    pending = Invoice.objects.filter(status="pending_approval").order_by("pk").first()
    page = new_page()
    log_in(page, demo, "auditor", f"/billing/invoices/{invoice.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(invoice.number)
    expect(page.locator(".timeline")).to_contain_text("Approved")
    expect(page.get_by_role("button", name=re.compile(r"^Approve"))).to_have_count(0)

    refused = _csrf_post(page, f"/billing/invoices/{pending.pk}/approve/", {"comment": "audit"})
    assert refused.status == 403
    pending.refresh_from_db()
    assert pending.status == "pending_approval" and pending.number is None
