"""A week of time from timesheet to approval in a real browser, and the PM's other decisions.

A consultant submits a week; the PM rejects one day with a reason; the consultant
sees it, fixes and resubmits; the PM approves the week (through the approval
engine) and a milestone; another PM's project and queue item are 403; approving
one's own time is refused with a message.

Run: `pytest tests/e2e/test_approvals_flow.py` (Playwright + Debian's /usr/bin/chromium).
`E2E_SCREENSHOT_DIR=/tmp/shots` keeps screenshots of every step; on a failure the
pages are saved to tests/e2e/artifacts/ whatever the setting.
"""
from __future__ import annotations

import contextlib
import datetime
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from playwright.sync_api import expect

from approvals.models import ApprovalRequest
from billing.models import Milestone, TimeEntry
from billing.services.milestones import milestone_complete
from billing.services.work import time_entry_create, work_submit
from tests.factories import (
    ContractFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RoleFactory,
    UserFactory,
)
from tests.login import log_in as form_log_in

# The live server needs committed data (transaction=True); the default approval policies come
# back after each flush through the approvals app's post_migrate receiver.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEEK = "2026-W44"
MONDAY = datetime.date(2026, 10, 26)
ARTIFACTS = Path(__file__).parent / "artifacts"


def log_in(page, username: str, next_url: str) -> None:
    """The login form, then the TOTP code when the user must pass two-factor (tests/login.py)."""
    form_log_in(page, username, next_url)


@pytest.fixture
def pages(request, new_page):
    """`pages(name)` opens a page for one user; if the test fails, every page is saved to tests/e2e/artifacts/."""
    opened: dict[str, object] = {}

    def make(name: str):
        opened[name] = new_page()
        return opened[name]

    yield make
    failed = getattr(request.node, "_approvals_failed", False)
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, page in opened.items():
            with contextlib.suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{name}.png"), full_page=True)


@contextlib.contextmanager
def record_failure(request):
    try:
        yield
    except BaseException:
        request.node._approvals_failed = True
        raise


def requests_of(subject):
    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk
    )


@pytest.fixture
def team():
    role = RoleFactory(code="CONSULTANT")
    pia = UserFactory(username="pia", first_name="Pia", last_name="Manager", groups=["project_manager", "consultant"])
    otto = UserFactory(username="otto", first_name="Otto", last_name="Other", groups=["project_manager"])
    anna = PersonFactory(
        name="Anna Berger", role=role,
        user=UserFactory(username="anna", first_name="Anna", last_name="Berger", groups=["consultant"]),
    )
    ben = PersonFactory(name="Ben Kurz", role=role, user=UserFactory(username="ben", groups=["consultant"]))
    pia_person = PersonFactory(name="Pia Manager", role=role, user=pia)

    nord = ProjectFactory(code="PRJ-NORD", name="Nordlicht rollout", project_manager=pia,
                          contract=ContractFactory(code="C-NORD", client__legal_name="Nordlicht Versicherung AG"))
    ProjectFactory(code="PRJ-INT", name="Internal tooling", project_manager=pia)
    havel = ProjectFactory(code="PRJ-HAVEL", name="Havel logistics", project_manager=otto)

    # Otto's queue item: Ben's time on Havel.
    foreign = time_entry_create(person=ben, project=havel, date=MONDAY, hours="6", user=ben.user)
    work_submit(item=foreign, user=ben.user)
    # Pia's own time on her project: a controller approves it, never Pia.
    own = time_entry_create(person=pia_person, project=nord, date=MONDAY, hours="2", user=pia)
    work_submit(item=own, user=pia)

    # A milestone the previous PM completed; Pia took the project over and approves it.
    fixed = ProjectFactory(code="PRJ-FIX", name="Claims portal (fixed fee)",
                           contract=ContractFactory(code="C-FIX", fixed_fee=True, cap=Decimal("60000.00"),
                                                    client__legal_name="Nordlicht Versicherung AG"))
    milestone = MilestoneFactory(project=fixed, name="Design signed off", amount=Decimal("15000.00"))
    milestone_complete(milestone=milestone, user=fixed.project_manager, evidence="Design review minutes, 20 Oct")
    fixed.project_manager = pia
    fixed.save()
    return {"anna": anna, "nord": nord, "foreign": foreign, "own": own, "milestone": milestone}


def test_week_rejected_fixed_resubmitted_and_approved(e2e_settings, pages, shoot, team, request):
    with record_failure(request):
        _flow(pages, shoot, team)


def _flow(pages, shoot, team):
    # 1. Anna adds her projects to an empty week and types her hours; the 24 h limit is checked as she types.
    anna = pages("anna")
    log_in(anna, "anna", f"/approvals/timesheet/?week={WEEK}")
    expect(anna.get_by_role("heading", name="Timesheet")).to_be_visible()
    expect(anna.locator(".ap-week-title")).to_contain_text("Week 44")
    anna.get_by_label("Add a project").select_option(label="PRJ-NORD · Nordlicht rollout")
    anna.get_by_role("button", name="Add row").click()
    anna.get_by_label("Add a project").select_option(label="PRJ-INT · Internal tooling")
    anna.get_by_role("button", name="Add row").click()
    expect(anna.get_by_label("Hours on PRJ-NORD, Monday 26 October")).to_be_visible()
    expect(anna.get_by_label("Hours on PRJ-INT, Monday 26 October")).to_be_visible()

    for weekday, hours in zip(("Monday 26", "Tuesday 27", "Wednesday 28", "Thursday 29", "Friday 30"),
                              ("16", "8", "8", "8", "6"), strict=True):
        anna.get_by_label(f"Hours on PRJ-NORD, {weekday} October").fill(hours)
    anna.get_by_label("Hours on PRJ-INT, Monday 26 October").fill("10")
    limit = anna.locator("#ts-limit")
    expect(limit).to_be_visible()
    expect(limit).to_contain_text("More than 24 h on")
    expect(anna.get_by_role("button", name=re.compile("^Submit week"))).to_be_disabled()
    expect(anna.locator('[data-day-total="2026-10-26"]')).to_have_text("26")
    shoot(anna, "approvals-01-timesheet-over-limit")

    anna.get_by_label("Hours on PRJ-INT, Monday 26 October").fill("")
    anna.get_by_label("Hours on PRJ-NORD, Monday 26 October").fill("8")
    expect(limit).to_be_hidden()
    expect(anna.locator("#ts-week-total")).to_have_text("38")
    anna.get_by_role("button", name=re.compile("^Submit week")).click()
    expect(anna.locator(".message")).to_contain_text("Week 44 (26 Oct–01 Nov 2026) submitted: 5 entries, 38 h")
    shoot(anna, "approvals-02-timesheet-submitted")
    week = list(TimeEntry.objects.filter(person=team["anna"]).order_by("date"))
    assert [e.status for e in week] == ["submitted"] * 5
    assert all(requests_of(e).get().status == "pending" for e in week)

    # 2. Pia rejects Tuesday with a reason, inline.
    pia = pages("pia")
    log_in(pia, "pia", "/approvals/time/")
    group = pia.locator(f"#group-{team['anna'].pk}-{WEEK}")
    expect(group).to_contain_text("Anna Berger")
    expect(group).to_contain_text("38 h")
    shoot(pia, "approvals-03-pm-queue")
    tuesday = week[1]
    cell = group.locator(f"#entry-{tuesday.pk}")
    cell.locator("summary").click()
    cell.get_by_label("Reason for rejecting 8 h on Tue 27 Oct").fill("Tuesday was the offsite: book 1 h on PRJ-INT")
    shoot(pia, "approvals-03b-reject-inline")
    cell.get_by_role("button", name="Reject entry").click()
    expect(pia.locator("#pm-time .message")).to_contain_text(
        "Rejected Anna Berger's 8 h on Tue 27 Oct (PRJ-NORD): “Tuesday was the offsite: book 1 h on PRJ-INT”"
    )
    assert pia.url.endswith("/approvals/time/")  # swapped in place
    expect(pia.locator(f"#entry-{tuesday.pk}")).to_have_count(0)
    tuesday.refresh_from_db()
    assert tuesday.status == "rejected"
    assert requests_of(tuesday).get().decisions.get().approver.username == "pia"

    # 3. Anna sees the reason, fixes Tuesday (7 h on Nordlicht, 1 h internal) and resubmits.
    anna.goto(f"/approvals/timesheet/?week={WEEK}")
    rejections = anna.locator(".ap-rejections")
    expect(rejections).to_contain_text("Tuesday was the offsite: book 1 h on PRJ-INT")
    expect(rejections).to_contain_text("Pia Manager")
    shoot(anna, "approvals-04-timesheet-rejected")
    anna.get_by_label("Add a project").select_option(label="PRJ-INT · Internal tooling")
    anna.get_by_role("button", name="Add row").click()
    anna.get_by_label("Hours on PRJ-NORD, Tuesday 27 October").fill("7")
    anna.get_by_label("Hours on PRJ-INT, Tuesday 27 October").fill("1")
    anna.get_by_role("button", name=re.compile("^Submit week")).click()
    expect(anna.locator(".message")).to_contain_text("submitted: 2 entries, 8 h")
    expect(anna.locator(".ap-rejections")).to_have_count(0)
    tuesday.refresh_from_db()
    assert (tuesday.status, tuesday.hours) == ("submitted", Decimal("7.00"))

    # 4. Pia approves the week: one engine decision per entry.
    pia.goto("/approvals/time/")
    group = pia.locator(f"#group-{team['anna'].pk}-{WEEK}")
    expect(group).to_contain_text("38 h")
    group.get_by_role("button", name=f"Approve week {WEEK} of Anna Berger").click()
    expect(pia.locator("#pm-time .message")).to_contain_text(
        f"Approved Anna Berger's week {WEEK}: 6 time entries (38 h) and 0 expenses."
    )
    shoot(pia, "approvals-05-week-approved")
    approved = TimeEntry.objects.filter(person=team["anna"])
    assert set(approved.values_list("status", flat=True)) == {"approved"}
    assert set(approved.values_list("approved_by__username", flat=True)) == {"pia"}
    assert not ApprovalRequest.objects.filter(status="pending", prepared_by=team["anna"].user).exists()

    # 5. Pia approves the milestone her predecessor completed, with the contract cap in view.
    pia.goto("/approvals/milestones/")
    row = pia.locator(f"#milestone-{team['milestone'].pk}")
    expect(row).to_contain_text("Design signed off")
    expect(row).to_contain_text("60,000.00")
    shoot(pia, "approvals-06-milestones")
    row.get_by_role("button", name="Approve milestone Design signed off").click()
    expect(pia.locator("#pm-milestones .message")).to_contain_text("Milestone 'Design signed off' (PRJ-FIX) approved")
    assert Milestone.objects.get(pk=team["milestone"].pk).status == "approved"

    # 6. Another PM's project and queue item are closed to Pia.
    response = pia.goto("/approvals/time/?project=PRJ-HAVEL")
    assert response.status == 403
    expect(pia.get_by_role("heading", name="403 No access")).to_be_visible()
    foreign_request = requests_of(team["foreign"]).get()
    response = pia.goto(f"/approvals/requests/{foreign_request.pk}/")
    assert response.status == 403
    shoot(pia, "approvals-07-forbidden")

    # 7. Her own time: the page says why she cannot decide, and the server refuses a forged decision.
    own_request = requests_of(team["own"]).get()
    pia.goto(f"/approvals/requests/{own_request.pk}/")
    expect(pia.locator(".ap-decide")).to_contain_text(f"Time entry {team['own'].pk} is your own work")
    expect(pia.get_by_role("button", name=re.compile("^Approve step"))).to_have_count(0)
    token = next(c["value"] for c in pia.context.cookies() if c["name"] == "csrftoken")
    answer = pia.request.post(
        f"/approvals/requests/{own_request.pk}/decide/",
        form={"decision": "approve", "step": "1"},
        headers={"X-CSRFToken": token, "Referer": pia.url},
    )
    assert answer.ok
    assert f"Time entry {team['own'].pk} is your own work" in answer.text()
    own_request.refresh_from_db()
    assert own_request.status == "pending" and not own_request.decisions.exists()
    pia.goto(f"/approvals/requests/{own_request.pk}/")
    shoot(pia, "approvals-08-own-time-refused")
