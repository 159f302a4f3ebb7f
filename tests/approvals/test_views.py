"""Approval screens: timesheet, expenses, the PM's queues, my approvals, delegation.

Data is made through the real services (submit, complete), so every subject has
its approval request as in production and the screens' actions go through the engine.
"""

from __future__ import annotations

import datetime
import html
import re
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.html import strip_tags

from approvals.models import ApprovalDecision, ApprovalRequest, Delegation
from approvals.services import approval_requests_open_bulk
from billing.models import ChangeOrder, Expense, TimeEntry
from billing.services.change_orders import change_order_submit
from billing.services.milestones import milestone_complete
from billing.services.work import time_entry_create, work_approve, work_reject, work_submit
from tests.factories import (
    ChangeOrderFactory,
    ChangeOrderRateFactory,
    ContractFactory,
    ExpenseFactory,
    InvoiceFactory,
    MilestoneFactory,
    PersonFactory,
    ProjectFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
    set_contract_terms,
)

pytestmark = pytest.mark.django_db

MONDAY = datetime.date(2025, 3, 10)  # ISO week 2025-W11
WEEK = "2025-W11"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def day(n: int) -> datetime.date:
    return MONDAY + datetime.timedelta(days=n)


def requests_of(subject):
    return ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subject)), object_id=subject.pk
    ).order_by("pk")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def pm():
    return UserFactory(username="pia", first_name="Pia", last_name="Manager", groups=["project_manager"])


@pytest.fixture
def other_pm():
    return UserFactory(username="otto", first_name="Otto", last_name="Other", groups=["project_manager"])


@pytest.fixture
def project(pm):
    return ProjectFactory(
        code="PRJ-NORD", name="Nordlicht rollout", project_manager=pm, contract=ContractFactory(code="C-NORD")
    )


@pytest.fixture
def foreign_project(other_pm):
    return ProjectFactory(code="PRJ-HAVEL", name="Havel logistics", project_manager=other_pm)


@pytest.fixture
def anna():
    user = UserFactory(username="anna", first_name="Anna", last_name="Berger", groups=["consultant"])
    return PersonFactory(user=user, name="Anna Berger", role=RoleFactory(code="CONSULTANT"))


@pytest.fixture
def ben():
    user = UserFactory(username="ben", first_name="Ben", last_name="Kurz", groups=["consultant"])
    return PersonFactory(user=user, name="Ben Kurz", role=RoleFactory(code="CONSULTANT"))


def book(person, project, date, hours="8", *, submit=True, billable=True, description="Workshop"):
    entry = time_entry_create(
        person=person, project=project, date=date, hours=hours, billable=billable, description=description,
        user=person.user,
    )
    if submit:
        work_submit(item=entry, user=person.user)
    return entry


def text(response) -> str:
    """The page as a reader sees it: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(strip_tags(response.content.decode())).split())


def login(client, user):
    client.force_login(user)
    return client


# =====================================================================================================
# Consultant: timesheet
# =====================================================================================================


def test_the_timesheet_shows_the_week_by_project_and_day(client, anna, project, foreign_project):
    book(anna, project, day(0), "8")
    book(anna, project, day(1), "6.5", submit=False)
    book(anna, foreign_project, day(7), "2", submit=False)  # next week: not in this grid, but a recent project

    response = login(client, anna.user).get(reverse("approvals:timesheet"), {"week": WEEK})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Week 11" in html and "10 Mar" in html and "16 Mar 2025" in html
    assert "PRJ-NORD" in html and "PRJ-HAVEL" in html
    assert f'name="h-{project.pk}-2025-03-11" id="h-{project.pk}-2025-03-11" value="6.5"' in html  # draft: editable
    assert f'name="h-{project.pk}-2025-03-10"' not in html  # submitted: locked
    assert 'data-hours="8.00"' in html
    sheet = response.context["sheet"]
    assert sheet.total == Decimal("14.50")
    assert [t for _, t in sheet.day_totals][:2] == [Decimal("8.00"), Decimal("6.50")]


def test_saving_the_grid_creates_changes_and_removes_drafts(client, anna, project):
    keep = book(anna, project, day(0), "8", submit=False)
    drop = book(anna, project, day(1), "4", submit=False)
    c = login(client, anna.user)

    response = c.post(
        reverse("approvals:timesheet"),
        {
            "week": WEEK,
            "row": [project.pk],
            f"h-{project.pk}-2025-03-10": "7,5",
            f"h-{project.pk}-2025-03-11": "",
            f"h-{project.pk}-2025-03-12": "3",
            f"note-{project.pk}": "Rollout planning",
            "action": "save",
        },
    )

    assert response.status_code == 303 and response["Location"].endswith(f"?week={WEEK}")
    keep.refresh_from_db()
    assert (keep.hours, keep.description, keep.status) == (Decimal("7.50"), "Rollout planning", "draft")
    assert not TimeEntry.objects.filter(pk=drop.pk).exists()
    new = TimeEntry.objects.get(date=day(2))
    assert (new.hours, new.status, new.description) == (Decimal("3.00"), "draft", "Rollout planning")
    message = str(next(iter(c.get(response["Location"]).context["messages"])))
    assert "saved as draft: 1 added, 1 changed, 1 removed" in message


def test_submitting_the_week_sends_every_draft_for_approval(client, anna, project):
    book(anna, project, day(0), "8", submit=False)
    c = login(client, anna.user)

    response = c.post(
        reverse("approvals:timesheet"),
        {"week": WEEK, "row": [project.pk], f"h-{project.pk}-2025-03-11": "4", "action": "submit"},
        follow=True,
    )

    assert set(TimeEntry.objects.values_list("status", flat=True)) == {"submitted"}
    assert ApprovalRequest.objects.filter(status="pending", subject_type="time_entry").count() == 2
    assert "Week 11 (10 Mar–16 Mar 2025) submitted: 2 entries, 12 h" in response.content.decode()


def test_more_than_24_hours_a_day_saves_nothing(client, anna, project, foreign_project):
    book(anna, foreign_project, day(0), "10", submit=False)
    c = login(client, anna.user)

    response = c.post(
        reverse("approvals:timesheet"),
        {
            "week": WEEK,
            "row": [project.pk, foreign_project.pk],
            f"h-{project.pk}-2025-03-10": "15",
            f"h-{project.pk}-2025-03-11": "8",
            "action": "save",
        },
    )

    assert response.status_code == 200
    assert "Nothing was saved" in response.content.decode()
    assert "25" in response.content.decode() and "at most 24 h a day" in response.content.decode()
    assert TimeEntry.objects.count() == 1
    # The posted values stay in the grid to be corrected.
    assert 'value="15"' in response.content.decode()


def test_moving_hours_between_projects_of_a_full_day_is_fine(client, anna, project, foreign_project):
    a = book(anna, project, day(0), "16", submit=False)
    book(anna, foreign_project, day(0), "8", submit=False)
    c = login(client, anna.user)

    c.post(
        reverse("approvals:timesheet"),
        {
            "week": WEEK,
            "row": [project.pk, foreign_project.pk],
            f"h-{project.pk}-2025-03-10": "8",
            f"h-{foreign_project.pk}-2025-03-10": "16",
            "action": "save",
        },
    )

    a.refresh_from_db()
    assert a.hours == Decimal("8.00")
    assert TimeEntry.objects.get(project=foreign_project).hours == Decimal("16.00")


def test_invalid_hours_are_refused_per_cell(client, anna, project):
    response = login(client, anna.user).post(
        reverse("approvals:timesheet"),
        {"week": WEEK, "row": [project.pk], f"h-{project.pk}-2025-03-10": "abc", "action": "save"},
    )
    assert response.status_code == 200
    assert "Enter hours from 0 to 24" in response.content.decode()
    assert not TimeEntry.objects.exists()


def test_adding_a_project_row_keeps_what_was_typed(client, anna, project, foreign_project):
    book(anna, project, day(0), "8", submit=False)
    c = login(client, anna.user)
    response = c.post(
        reverse("approvals:timesheet"),
        {"week": WEEK, "row": [project.pk], f"h-{project.pk}-2025-03-10": "6", "add": foreign_project.pk,
         "action": "add"},
    )
    assert response.status_code == 303 and f"add={foreign_project.pk}" in response["Location"]
    assert TimeEntry.objects.get().hours == Decimal("6.00")
    page = c.get(response["Location"])
    assert f'name="h-{foreign_project.pk}-2025-03-10"' in page.content.decode()


def test_a_rejected_entry_shows_the_reason_and_is_fixed_and_resubmitted(client, anna, project, pm):
    entry = book(anna, project, day(2), "9")
    work_reject(item=entry, user=pm, reason="Split the 9 h: 1 h belongs to the internal project")
    c = login(client, anna.user)

    page = c.get(reverse("approvals:timesheet"), {"week": WEEK})
    html = page.content.decode()
    assert "To fix and resubmit" in html
    assert "Split the 9 h: 1 h belongs to the internal project" in html
    assert "Pia Manager" in html
    assert f'name="h-{project.pk}-2025-03-12"' in html  # editable again

    c.post(
        reverse("approvals:timesheet"),
        {"week": WEEK, "row": [project.pk], f"h-{project.pk}-2025-03-12": "8", "action": "submit"},
    )

    entry.refresh_from_db()
    assert (entry.status, entry.hours, entry.rejection_reason) == ("submitted", Decimal("8.00"), "")
    assert list(requests_of(entry).values_list("status", flat=True)) == ["rejected", "pending"]


def test_a_refused_save_is_rolled_back_and_shows_the_week_as_stored(client, anna, project, pm):
    entry = book(anna, project, day(2), "9")
    work_reject(item=entry, user=pm, reason="Too many hours")
    anna.active = False  # the services refuse an inactive person's bookings
    anna.save()

    response = login(client, anna.user).post(
        reverse("approvals:timesheet"),
        {"week": WEEK, "row": [project.pk], f"h-{project.pk}-2025-03-12": "8", "action": "submit"},
    )

    assert response.status_code == 200
    page = text(response)
    assert "Nothing was saved" in page and "is inactive and cannot book work" in page
    entry.refresh_from_db()
    assert (entry.status, entry.hours) == ("rejected", Decimal("9.00"))  # the redraft was rolled back too
    cell = next(c for c in response.context["sheet"].rows[0].cells if c.day == day(2))
    assert (cell.value, cell.rejected) == ("8", True)
    assert "is inactive" in cell.error


def test_rejected_weeks_elsewhere_are_linked(client, anna, project, pm):
    entry = book(anna, project, day(-7), "4")
    work_reject(item=entry, user=pm, reason="Wrong week")
    html = login(client, anna.user).get(reverse("approvals:timesheet"), {"week": WEEK}).content.decode()
    assert "Rejected time in other weeks" in html and "?week=2025-W10" in html


def test_a_login_without_a_consultant_record_has_no_timesheet(client, pm):
    response = login(client, pm).get(reverse("approvals:timesheet"))
    assert response.status_code == 403
    assert "not linked to a consultant record" in response.content.decode()


def test_the_timesheet_needs_a_login(client):
    response = client.get(reverse("approvals:timesheet"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# =====================================================================================================
# Consultant: expenses
# =====================================================================================================


def expense_post(project, **overrides):
    data = {
        "project": project.pk,
        "date": "2025-03-11",
        "category": "travel",
        "amount": "184.20",
        "currency": "eur",
        "description": "Train Berlin–Hamburg",
        "billable": "on",
        "action": "save",
    }
    data.update(overrides)
    return data


def test_an_expense_with_its_receipt_is_recorded_as_draft(client, anna, project):
    receipt = SimpleUploadedFile("ticket.pdf", PDF, content_type="application/pdf")
    response = login(client, anna.user).post(
        reverse("approvals:expense_new"), {**expense_post(project), "receipt": receipt}
    )

    assert response.status_code == 303 and response["Location"] == reverse("approvals:expense_list")
    expense = Expense.objects.get()
    assert (expense.person, expense.amount, expense.currency, expense.status) == (
        anna, Decimal("184.20"), "EUR", "draft"
    )
    assert expense.receipt.name.startswith("expenses/receipts/ticket")
    assert expense.history.latest().history_user == anna.user


def test_save_and_submit_routes_the_expense(client, anna, project):
    login(client, anna.user).post(reverse("approvals:expense_new"), expense_post(project, action="submit"))
    expense = Expense.objects.get()
    assert expense.status == "submitted"
    assert requests_of(expense).get().status == "pending"


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("receipt.exe", b"MZ\x90\x00", "PDF, PNG or JPEG"),
        ("receipt.pdf", b"<html>not a pdf</html>", "not a valid PDF"),
        ("photo.jpg", b"\x89PNG\r\n\x1a\n0000", "not a valid JPG"),
    ],
)
def test_receipts_are_checked_by_type_and_content(client, anna, project, name, content, error):
    upload = SimpleUploadedFile(name, content)
    data = {**expense_post(project), "receipt": upload}
    response = login(client, anna.user).post(reverse("approvals:expense_new"), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Expense.objects.exists()


def test_receipts_over_10_mb_are_refused(client, anna, project, monkeypatch):
    monkeypatch.setattr("billing.forms_work.MAX_RECEIPT_BYTES", 1024)
    upload = SimpleUploadedFile("scan.pdf", PDF + b"0" * 2048)
    data = {**expense_post(project), "receipt": upload}
    response = login(client, anna.user).post(reverse("approvals:expense_new"), data)
    assert "the limit is 10 MB" in response.content.decode()
    assert not Expense.objects.exists()


def test_service_errors_show_on_the_form(client, anna):
    on_hold = ProjectFactory(status="on_hold")
    response = login(client, anna.user).post(reverse("approvals:expense_new"), expense_post(on_hold))
    assert response.status_code == 200  # an inactive project is not even offered
    assert not Expense.objects.exists()


def test_a_rejected_expense_is_fixed_and_resubmitted(client, anna, project, pm):
    expense = ExpenseFactory(person=anna, project=project, status="draft", amount=Decimal("300.00"))
    work_submit(item=expense, user=anna.user)
    work_reject(item=expense, user=pm, reason="Hotel above the travel policy: 150 per night")
    c = login(client, anna.user)

    listing = c.get(reverse("approvals:expense_list"), {"status": "rejected"}).content.decode()
    assert "Hotel above the travel policy" in listing and "Fix…" in listing
    form = c.get(reverse("approvals:expense_edit", args=[expense.pk])).content.decode()
    assert "Hotel above the travel policy" in form

    c.post(reverse("approvals:expense_edit", args=[expense.pk]),
           expense_post(project, amount="150.00", category="lodging", action="submit"))

    expense.refresh_from_db()
    assert (expense.status, expense.amount, expense.category) == ("submitted", Decimal("150.00"), "lodging")
    assert list(requests_of(expense).values_list("status", flat=True)) == ["rejected", "pending"]


def test_drafts_are_submitted_from_the_list(client, anna, project):
    expense = ExpenseFactory(person=anna, project=project, status="draft")
    response = login(client, anna.user).post(reverse("approvals:expense_submit", args=[expense.pk]), follow=True)
    expense.refresh_from_db()
    assert expense.status == "submitted"
    assert "submitted to the project's manager" in text(response)


def test_someone_elses_expense_is_403(client, anna, ben, project):
    theirs = ExpenseFactory(person=ben, project=project, status="draft")
    c = login(client, anna.user)
    assert c.get(reverse("approvals:expense_edit", args=[theirs.pk])).status_code == 403
    assert c.post(reverse("approvals:expense_submit", args=[theirs.pk])).status_code == 403
    theirs.refresh_from_db()
    assert theirs.status == "draft"


def test_receipts_are_shown_to_the_person_the_pm_and_finance_only(client, anna, ben, project, pm, other_pm):
    expense = ExpenseFactory(person=anna, project=project, receipt=SimpleUploadedFile("r.pdf", PDF))
    url = reverse("approvals:expense_receipt", args=[expense.pk])
    for user in (anna.user, pm, UserFactory(groups=["finance_analyst"])):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        assert b"".join(response.streaming_content).startswith(b"%PDF")
    for user in (ben.user, other_pm):
        client.force_login(user)
        assert client.get(url).status_code == 403


# =====================================================================================================
# PM: time & expenses
# =====================================================================================================


@pytest.fixture
def anna_week(anna, project):
    entries = [book(anna, project, day(i), h) for i, h in enumerate(["8", "8", "7.5", "8", "6"])]
    entries.append(book(anna, project, day(3), "1", billable=False, description="Internal sync"))
    expense = ExpenseFactory(person=anna, project=project, status="draft", date=day(1), amount=Decimal("42.00"))
    work_submit(item=expense, user=anna.user)
    return entries, expense


def test_the_pm_sees_submitted_work_by_person_and_week(client, pm, anna_week, ben, foreign_project):
    book(ben, foreign_project, day(0), "5")  # another PM's project
    response = login(client, pm).get(reverse("approvals:pm_time"))

    assert response.status_code == 200
    queue = response.context["queue"]
    assert len(queue.groups) == 1
    group = queue.groups[0]
    assert (group.person_name, group.week, group.hours, group.non_billable_hours) == (
        "Anna Berger", WEEK, Decimal("38.50"), Decimal("1.00")
    )
    assert group.day_totals == [Decimal(x) for x in ("8", "8", "7.5", "9", "6", "0", "0")]
    assert len(group.expenses) == 1
    html = response.content.decode()
    assert "Non-billable" in html and 'title="Non-billable">NB</abbr>' in html
    assert "PRJ-HAVEL" not in html.split('id="pm-time"')[1]
    assert "Approve week" in html


def test_a_person_week_shows_its_figures_its_grid_and_a_form_approving_exactly_its_items(client, pm, anna_week):
    entries, expense = anna_week
    page = login(client, pm).get(reverse("approvals:pm_time")).content.decode()
    section = page.split('id="group-title-')[1].split("</section>")[0]

    assert "Anna Berger" in section and "· Week 11 · 10 Mar – 16 Mar 2025" in section
    assert "<strong>38.50 h</strong> in 6 entries" in section and "1 h non-billable" in section
    assert "1 expense · " in section and "42.00" in section
    form = section.split('action="/approvals/time/approve-week/"')[1].split("</form>")[0]
    assert sorted(int(pk) for pk in re.findall(r'name="time" value="(\d+)"', form)) == sorted(e.pk for e in entries)
    assert re.findall(r'name="expense" value="(\d+)"', form) == [str(expense.pk)]
    assert 'aria-label="Approve week 2025-W11 of Anna Berger"' in form and 'name="csrfmiddlewaretoken"' in form
    grid = section.split('class="table ap-dense ap-week-table"')[1].split("</table>")[0]
    head = re.findall(r'<th scope="col" class="num( is-weekend)?">([^<]+)</th>', grid.split("</thead>")[0])
    assert head == [("", "Mon 10"), ("", "Tue 11"), ("", "Wed 12"), ("", "Thu 13"), ("", "Fri 14"),
                    (" is-weekend", "Sat 15"), (" is-weekend", "Sun 16"), ("", "Total")]
    totals = grid.split('<tr class="ap-totals">')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', totals) == ["8", "8", "7.50", "9", "6", "", ""]
    assert '<td class="num"><strong>38.50</strong></td>' in totals


def test_approving_the_week_goes_through_the_engine(client, pm, anna_week):
    entries, expense = anna_week
    data = {"time": [e.pk for e in entries], "expense": [expense.pk], "next": reverse("approvals:pm_time")}

    response = login(client, pm).post(reverse("approvals:pm_time_approve_week"), data, follow=True)

    assert set(TimeEntry.objects.values_list("status", flat=True)) == {"approved"}
    assert Expense.objects.get().status == "approved"
    assert not ApprovalRequest.objects.filter(status="pending").exists()
    assert ApprovalDecision.objects.filter(approver=pm, decision="approve").count() == 7
    assert "Approved Anna Berger's week 2025-W11: 6 time entries (38.5 h) and 1 expense." in text(response)


def test_a_week_already_decided_meanwhile_is_reported(client, pm, anna_week):
    entries, _ = anna_week
    work_approve(item=entries[0], user=pm)
    response = login(client, pm).post(
        reverse("approvals:pm_time_approve_week"), {"time": [e.pk for e in entries]}, follow=True
    )
    assert "1 item(s) had been decided meanwhile and were skipped" in response.content.decode()


def test_rejecting_one_entry_inline(client, pm, anna_week):
    entries, _ = anna_week
    tuesday = entries[1]
    response = login(client, pm).post(
        reverse("approvals:pm_work_reject", args=["time", tuesday.pk]),
        {"reason": "Offsite day: book it on the internal project", "next": reverse("approvals:pm_time")},
        HTTP_HX_REQUEST="true",
        follow=True,
    )

    tuesday.refresh_from_db()
    assert (tuesday.status, tuesday.rejection_reason) == ("rejected", "Offsite day: book it on the internal project")
    region = response.content.decode().split('id="pm-time"')[1]
    assert "Rejected Anna Berger&#x27;s 8 h on Tue 11 Mar (PRJ-NORD)" in region  # the message inside the swapped region
    assert f'id="entry-{tuesday.pk}"' not in region


def test_a_rejection_needs_a_reason(client, pm, anna_week):
    entries, _ = anna_week
    response = login(client, pm).post(
        reverse("approvals:pm_work_reject", args=["time", entries[0].pk]), {"reason": "  "}, follow=True
    )
    assert "A reason is required" in response.content.decode()
    entries[0].refresh_from_db()
    assert entries[0].status == "submitted"


def test_another_pms_project_and_items_are_403(client, pm, ben, foreign_project):
    theirs = book(ben, foreign_project, day(0), "5")
    c = login(client, pm)
    assert c.get(reverse("approvals:pm_time"), {"project": "PRJ-HAVEL"}).status_code == 403
    assert c.get(reverse("approvals:pm_time"), {"project": "NOPE"}).status_code == 404
    assert c.post(reverse("approvals:pm_work_reject", args=["time", theirs.pk]), {"reason": "x"}).status_code == 403
    assert c.post(reverse("approvals:pm_time_approve_week"), {"time": [theirs.pk]}).status_code == 403
    theirs.refresh_from_db()
    assert theirs.status == "submitted"


def test_the_pms_own_time_is_shown_without_an_approve_button(client, pm, project):
    mine = PersonFactory(user=pm)
    book(mine, project, day(0), "4")
    html = login(client, pm).get(reverse("approvals:pm_time")).content.decode()
    assert "Your own work" in html and "A finance controller approves it" in html
    assert "Approve week" not in html


def test_a_forged_approval_of_own_time_is_refused_with_the_reason(client, pm, project):
    mine = PersonFactory(user=pm)
    own = book(mine, project, day(0), "4")
    response = login(client, pm).post(reverse("approvals:pm_time_approve_week"), {"time": [own.pk]}, follow=True)
    assert "Nothing was approved" in response.content.decode()
    assert "is your own work" in response.content.decode()
    own.refresh_from_db()
    assert own.status == "submitted"


def test_the_queue_filters_by_project_person_and_week(client, pm, anna_week, ben, project):
    book(ben, project, day(7), "3")
    c = login(client, pm)
    assert len(c.get(reverse("approvals:pm_time")).context["queue"].groups) == 2
    assert [g.person_name for g in c.get(reverse("approvals:pm_time"), {"person": ben.pk}).context["queue"].groups] == [
        "Ben Kurz"
    ]
    assert [g.week for g in c.get(reverse("approvals:pm_time"), {"week": WEEK}).context["queue"].groups] == [WEEK]
    assert len(c.get(reverse("approvals:pm_time"), {"project": "PRJ-NORD"}).context["queue"].groups) == 2


def test_pm_screens_are_for_project_managers(client, anna):
    c = login(client, anna.user)
    for name in ("approvals:pm_time", "approvals:pm_milestones", "approvals:pm_change_orders"):
        assert c.get(reverse(name)).status_code == 403


# =====================================================================================================
# PM: milestones and change orders
# =====================================================================================================


@pytest.fixture
def fixed_project(pm):
    contract = ContractFactory(code="C-FIX", fixed_fee=True, cap=Decimal("60000.00"))
    return ProjectFactory(code="PRJ-FIX", contract=contract, project_manager=pm)


def handed_over_milestone(project, name="Design signed off", amount="15000.00"):
    """Completed by the previous PM, so the current PM may approve it."""
    current = project.project_manager
    previous = UserFactory(groups=["project_manager"])
    project.project_manager = previous
    project.save()
    milestone = MilestoneFactory(project=project, name=name, amount=Decimal(amount))
    milestone_complete(milestone=milestone, user=previous, evidence="Review minutes")
    project.project_manager = current
    project.save()
    return milestone


def test_milestones_show_amount_evidence_and_the_contract_cap(client, pm, fixed_project):
    milestone = handed_over_milestone(fixed_project)
    approved_co = ChangeOrderFactory(contract=fixed_project.contract, cap_delta=Decimal("5000.00"), status="approved")
    assert approved_co.pk
    invoice = InvoiceFactory(contract=fixed_project.contract, status="posted", subtotal=Decimal("20000.00"))
    InvoiceFactory(contract=fixed_project.contract, kind="credit_note", credit_of=invoice, status="posted",
                   subtotal=Decimal("2000.00"))
    InvoiceFactory(contract=fixed_project.contract, status="cancelled", subtotal=Decimal("9999.00"))

    response = login(client, pm).get(reverse("approvals:pm_milestones"))

    item = response.context["items"][0]
    assert item["milestone"] == milestone
    cap = item["cap"]
    assert (cap.total, cap.invoiced, cap.remaining, cap.used_pct) == (
        Decimal("65000.00"), Decimal("18000.00"), Decimal("47000.00"), 27
    )
    assert item["routing"].can_decide
    html = response.content.decode()
    assert "Review minutes" in html and "65,000.00" in html and "47,000.00" in html
    assert "Approve milestone Design signed off" in html


def test_the_pm_approves_and_rejects_milestones_through_the_engine(client, pm, fixed_project):
    first = handed_over_milestone(fixed_project, "Phase 1")
    second = handed_over_milestone(fixed_project, "Phase 2")
    c = login(client, pm)

    response = c.post(reverse("approvals:pm_milestone_action", args=[first.pk, "approve"]), follow=True)
    assert "Milestone 'Phase 1' (PRJ-FIX) approved: 15,000.00 EUR can be invoiced." in text(response)
    first.refresh_from_db()
    assert first.status == "approved" and requests_of(first).get().decisions.get().approver == pm

    c.post(reverse("approvals:pm_milestone_action", args=[second.pk, "reject"]), {"reason": "Client has not signed"})
    second.refresh_from_db()
    assert second.status == "completed"
    assert requests_of(second).get().outcome_reason == "Client has not signed"

    page = c.get(reverse("approvals:pm_milestones")).content.decode()
    assert "Client has not signed" in page and "Resubmit…" in page
    c.post(reverse("approvals:pm_milestone_action", args=[second.pk, "resubmit"]), {"evidence": "Signed 20 Mar"})
    assert list(requests_of(second).values_list("status", flat=True)) == ["rejected", "pending"]


def test_a_milestone_the_pm_completed_waits_for_a_controller(client, pm, fixed_project):
    milestone = MilestoneFactory(project=fixed_project, name="Go-live")
    c = login(client, pm)
    planned = c.get(reverse("approvals:pm_milestones"), {"status": "planned"}).content.decode()
    assert "Mark completed…" in planned

    c.post(reverse("approvals:pm_milestone_action", args=[milestone.pk, "complete"]), {"evidence": "Go-live 14 Mar"})

    milestone.refresh_from_db()
    assert (milestone.status, milestone.evidence) == ("completed", "Go-live 14 Mar")
    html = c.get(reverse("approvals:pm_milestones")).content.decode()
    assert "You completed it: finance controller approves (segregation of duties)." in html
    assert "Approve milestone Go-live" not in html
    response = c.post(reverse("approvals:pm_milestone_action", args=[milestone.pk, "approve"]), follow=True)
    assert "You marked milestone 'Go-live' completed; someone else must decide step 1." in text(response)


def test_another_pms_milestone_is_403(client, other_pm, fixed_project):
    milestone = handed_over_milestone(fixed_project)
    c = login(client, other_pm)
    assert c.post(reverse("approvals:pm_milestone_action", args=[milestone.pk, "approve"])).status_code == 403
    assert c.get(reverse("approvals:pm_milestones"), {"project": "PRJ-FIX"}).status_code == 403
    milestone.refresh_from_db()
    assert milestone.status == "completed"


@pytest.fixture
def submitted_co(project):
    """Submitted by a colleague PM of the same contract, so Pia decides it."""
    colleague = ProjectFactory(contract=project.contract).project_manager
    co = ChangeOrderFactory(contract=project.contract, code="CO-7", cap_delta=Decimal("4000.00"),
                            description="Second rollout wave")
    ChangeOrderRateFactory(change_order=co, role=RoleFactory(code="SENIOR"), rate=Decimal("145"))
    change_order_submit(change_order=co, user=colleague)
    return co


def test_change_orders_show_delta_rates_and_decide_through_the_engine(client, pm, project, submitted_co):
    set_contract_terms(project.contract, cap=Decimal("50000.00"))
    c = login(client, pm)

    page = text(c.get(reverse("approvals:pm_change_orders")))
    assert "C-NORD/CO-7" in page and "Second rollout wave" in page
    assert "+4,000.00 EUR" in page and "new cap 54,000.00 EUR" in page
    assert "SENIOR 145.00 EUR/h" in page

    response = c.post(reverse("approvals:pm_change_order_action", args=[submitted_co.pk, "approve"]), follow=True)
    assert "approved and applied to the contract" in response.content.decode()
    submitted_co.refresh_from_db()
    assert submitted_co.status == "approved"
    assert requests_of(submitted_co).get().decisions.get().approver == pm


def test_rejecting_a_change_order_needs_a_reason(client, pm, submitted_co):
    c = login(client, pm)
    response = c.post(reverse("approvals:pm_change_order_action", args=[submitted_co.pk, "reject"]), follow=True)
    assert "A reason is required" in response.content.decode()
    c.post(reverse("approvals:pm_change_order_action", args=[submitted_co.pk, "reject"]), {"reason": "Not signed"})
    submitted_co.refresh_from_db()
    assert (submitted_co.status, submitted_co.decision_reason) == ("rejected", "Not signed")


def test_change_orders_filter_by_contract(client, pm, other_pm, submitted_co, foreign_project):
    c = login(client, pm)
    assert len(c.get(reverse("approvals:pm_change_orders"), {"contract": "C-NORD"}).context["items"]) == 1
    assert c.get(reverse("approvals:pm_change_orders"), {"contract": foreign_project.contract.code}).status_code == 403
    assert c.get(reverse("approvals:pm_change_orders"), {"contract": "C-NONE"}).status_code == 404


def test_a_change_order_without_a_submitter_is_listed(client, pm, project):
    ChangeOrderFactory(contract=project.contract, code="CO-API", status="submitted", submitted_by=None)
    response = login(client, pm).get(reverse("approvals:pm_change_orders"))
    assert response.status_code == 200 and "C-NORD/CO-API" in text(response)


def test_another_contracts_change_order_is_403(client, other_pm, submitted_co):
    response = login(client, other_pm).post(
        reverse("approvals:pm_change_order_action", args=[submitted_co.pk, "approve"])
    )
    assert response.status_code == 403
    assert ChangeOrder.objects.get().status == "submitted"


# =====================================================================================================
# Everyone: my approvals, request detail, delegation
# =====================================================================================================


def test_my_approvals_lists_what_i_may_decide_overdue_first(client, pm, anna, project):
    older = book(anna, project, day(0), "8")
    newer = book(anna, project, day(1), "4")
    ApprovalRequest.objects.filter(object_id=older.pk, subject_type="time_entry").update(
        sla_due_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )

    response = login(client, pm).get(reverse("approvals:mine"))

    rows = response.context["rows"]
    assert [r.subject for r in rows] == [older, newer]
    assert rows[0].overdue and not rows[1].overdue
    html = response.content.decode()
    assert "Overdue" in html and "1/1 · Project manager" in html and "Anna Berger" in html
    overdue_only = login(client, pm).get(reverse("approvals:mine"), {"overdue": "1"}).context["rows"]
    assert [r.subject for r in overdue_only] == [older]
    assert login(client, pm).get(reverse("approvals:mine"), {"type": "milestone"}).context["rows"] == []


def test_deciding_inline_and_a_conflict_is_a_message(client, pm, anna, project):
    entry = book(anna, project, day(0), "8")
    request = requests_of(entry).get()
    c = login(client, pm)

    response = c.post(
        reverse("approvals:request_decide", args=[request.pk]),
        {"decision": "approve", "step": 1, "next": reverse("approvals:mine")},
        HTTP_HX_REQUEST="true",
        follow=True,
    )
    region = response.content.decode().split('id="my-approvals"')[1]
    assert f"Time entry {entry.pk} approved." in region
    entry.refresh_from_db()
    assert entry.status == "approved"

    response = c.post(
        reverse("approvals:request_decide", args=[request.pk]), {"decision": "reject", "comment": "late", "step": 1},
        follow=True,
    )
    assert "already decided by Pia Manager (approved at" in response.content.decode()


def test_rejecting_from_my_approvals_sends_the_reason_back(client, pm, anna, project):
    entry = book(anna, project, day(0), "8")
    request = requests_of(entry).get()
    login(client, pm).post(
        reverse("approvals:request_decide", args=[request.pk]),
        {"decision": "reject", "comment": "Wrong project", "step": 1},
    )
    entry.refresh_from_db()
    assert (entry.status, entry.rejection_reason) == ("rejected", "Wrong project")


def test_the_request_page_explains_who_decides_and_refuses_self_approval(client, pm, project, anna):
    own = book(PersonFactory(user=pm), project, day(0), "3")
    request = requests_of(own).get()
    c = login(client, pm)

    html = c.get(reverse("approvals:request_detail", args=[request.pk])).content.decode()
    assert f"Time entry {own.pk} is your own work; someone else must decide step 1." in html
    assert "Approve step" not in html

    response = c.post(reverse("approvals:request_decide", args=[request.pk]), {"decision": "approve"}, follow=True)
    assert "is your own work" in response.content.decode()
    assert not request.decisions.exists()

    theirs = requests_of(book(anna, project, day(1), "8")).get()
    assert "Approve step 1" in c.get(reverse("approvals:request_detail", args=[theirs.pk])).content.decode()


def test_an_unrelated_pm_cannot_open_or_decide_the_request(client, other_pm, anna, project):
    request = requests_of(book(anna, project, day(0), "8")).get()
    c = login(client, other_pm)
    assert c.get(reverse("approvals:request_detail", args=[request.pk])).status_code == 403
    assert c.post(reverse("approvals:request_decide", args=[request.pk]), {"decision": "approve"}).status_code == 403
    assert c.get(reverse("approvals:request_detail", args=[request.pk + 1000])).status_code == 404


def test_a_delegate_sees_and_decides_on_behalf(client, pm, other_pm, anna, project):
    request = requests_of(book(anna, project, day(0), "8")).get()
    c = login(client, pm)
    today = datetime.date.today()
    response = c.post(
        reverse("approvals:delegation"),
        {"delegate": other_pm.pk, "starts_on": today.isoformat(), "ends_on": today.isoformat(), "reason": "Holiday"},
        follow=True,
    )
    assert "Otto Other may decide your approvals" in response.content.decode()

    c = login(client, other_pm)
    page = c.get(reverse("approvals:mine"))
    assert [r.pk for r in page.context["rows"]] == [request.pk]
    assert "You also decide for" in page.content.decode()
    assert c.get(reverse("approvals:request_detail", args=[request.pk])).status_code == 200


def test_delegations_are_listed_and_ended(client, pm, other_pm):
    today = datetime.date.today()
    delegation = Delegation.objects.create(
        delegator=pm, delegate=other_pm, starts_on=today - datetime.timedelta(days=2),
        ends_on=today + datetime.timedelta(days=5),
    )
    c = login(client, pm)
    html = c.get(reverse("approvals:delegation")).content.decode()
    assert "Otto Other" in html and "Active" in html

    response = c.post(reverse("approvals:delegation_end", args=[delegation.pk]), follow=True)
    assert "Delegation to Otto Other ended" in text(response)
    delegation.refresh_from_db()
    assert delegation.ends_on == today - datetime.timedelta(days=1)

    assert "Otto Other" not in text(c.get(reverse("approvals:delegation"))).split("Delegated to me")[0]
    assert "Ended" in text(c.get(reverse("approvals:delegation"), {"show": "ended"}))

    assert login(client, other_pm).post(reverse("approvals:delegation_end", args=[delegation.pk])).status_code == 403


def test_a_delegation_to_oneself_or_backwards_is_refused_on_the_form(client, pm, other_pm):
    today = datetime.date.today()
    response = login(client, pm).post(
        reverse("approvals:delegation"),
        {"delegate": other_pm.pk, "starts_on": today.isoformat(),
         "ends_on": (today - datetime.timedelta(days=1)).isoformat()},
    )
    assert response.status_code == 200
    assert "Must be on or after the start." in response.content.decode()
    assert not Delegation.objects.exists()


# =====================================================================================================
# Navigation
# =====================================================================================================


def test_the_navigation_leads_to_the_new_screens(client, anna, pm):
    html = login(client, anna.user).get(reverse("home")).content.decode()
    assert 'href="/approvals/timesheet/"' in html and 'href="/approvals/expenses/"' in html
    assert 'href="/approvals/mine/"' in html
    html = login(client, pm).get(reverse("home")).content.decode()
    assert 'href="/approvals/time/"' in html and 'href="/approvals/milestones/"' in html
    assert 'href="/approvals/change-orders/"' in html
    assert login(client, pm).get(reverse("approvals:index"))["Location"] == reverse("approvals:pm_time")
    assert login(client, anna.user).get(reverse("approvals:index"))["Location"] == reverse("approvals:timesheet")


# =====================================================================================================
# Bounded queries: the same number of round trips for 10 and for 200 rows
# =====================================================================================================


def _rows_for(screen: str, n: int, *, anna, pm, project) -> tuple[str, dict, object]:
    """Make `n` rows for `screen`; returns (url name, query, user)."""
    others = [PersonFactory(name=f"Person {i:03d}") for i in range(5)]
    if screen == "timesheet":
        for i in range(n):
            TimeEntryFactory(person=anna, project=ProjectFactory(), date=day(i % 7), hours=Decimal("0.50"),
                             status=["draft", "submitted", "rejected", "approved"][i % 4])
        return "approvals:timesheet", {"week": WEEK}, anna.user
    if screen == "expenses":
        for i in range(n):
            ExpenseFactory(person=anna, project=project, date=day(i % 7), status=["draft", "rejected"][i % 2])
        return "approvals:expense_list", {}, anna.user
    if screen == "pm_time":
        for i in range(n):
            TimeEntryFactory(person=others[i % 5], project=project, date=day(7 * (i // 5)), status="submitted",
                             billable=i % 3 != 0)
            if i % 4 == 0:
                ExpenseFactory(person=others[i % 5], project=project, date=day(7 * (i // 5)), status="submitted")
        return "approvals:pm_time", {}, pm
    if screen == "milestones":
        previous = UserFactory()
        fixed = ProjectFactory(project_manager=pm, contract__fixed_fee=True, contract__cap=Decimal("900000"))
        milestones = [MilestoneFactory(project=fixed, status="completed", completed_by=previous) for _ in range(n)]
        approval_requests_open_bulk(subjects=milestones)
        return "approvals:pm_milestones", {}, pm
    if screen == "change_orders":
        submitter = ProjectFactory(contract=project.contract).project_manager
        orders = [
            ChangeOrderFactory(contract=project.contract, status="submitted", submitted_by=submitter)
            for _ in range(n)
        ]
        for co in orders:
            ChangeOrderRateFactory(change_order=co)
        approval_requests_open_bulk(subjects=orders)
        return "approvals:pm_change_orders", {}, pm
    if screen == "mine":
        entries = [TimeEntryFactory(person=others[i % 5], project=project, status="submitted") for i in range(n)]
        expenses = [ExpenseFactory(person=others[0], project=project, status="submitted") for _ in range(3)]
        approval_requests_open_bulk(subjects=[*entries, *expenses])
        return "approvals:mine", {}, pm
    if screen == "delegation":
        today = datetime.date.today()
        for i in range(n):
            Delegation.objects.create(delegator=pm, delegate=others[i % 5].user, starts_on=today,
                                      ends_on=today + datetime.timedelta(days=i))
        return "approvals:delegation", {}, pm
    raise AssertionError(screen)


#: Measured round trips per page, session, user and navigation counts included.
SCREEN_QUERIES = {
    "timesheet": 12,
    "expenses": 9,
    "pm_time": 12,
    "milestones": 19,
    "change_orders": 20,
    "mine": 13,
    "delegation": 11,
}


@pytest.mark.parametrize("n", [10, 200])
@pytest.mark.parametrize("screen", SCREEN_QUERIES)
def test_lists_take_a_bounded_number_of_queries(client, django_assert_max_num_queries, anna, pm, project, screen, n):
    name, query, user = _rows_for(screen, n, anna=anna, pm=pm, project=project)
    client.force_login(user)
    with django_assert_max_num_queries(SCREEN_QUERIES[screen]):
        response = client.get(reverse(name), query)
    assert response.status_code == 200
    page = response.context.get("page") or getattr(response.context.get("queue"), "page", None)
    if page is not None and n == 200:
        assert len(page.object_list) == 50 and page.paginator.num_pages >= 4


def _queue_page(client, user, **query):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("approvals:mine"), query)
    assert response.status_code == 200
    return response, len(ctx.captured_queries)


def test_my_approvals_reads_the_same_queries_for_3_and_60_rows_and_shows_every_row(client, anna, pm, project):
    """The queue's rows are formatted in Python (approval_queue_rows): same markup, ids and labels per row."""
    person = PersonFactory(name="Carl <Cole>")
    entries = [
        TimeEntryFactory(person=person, project=project, status="submitted", hours=Decimal("1.50"),
                         description="Design & review", billable=i % 2 == 0)
        for i in range(3)
    ]
    approval_requests_open_bulk(subjects=entries)
    small, small_queries = _queue_page(client, pm)
    assert len(small.context["rows"]) == 3

    more = [TimeEntryFactory(person=person, project=project, status="submitted") for _ in range(50)]
    expenses = [ExpenseFactory(person=person, project=project, status="submitted") for _ in range(7)]
    approval_requests_open_bulk(subjects=[*more, *expenses])
    large, large_queries = _queue_page(client, pm)

    assert large_queries == small_queries <= SCREEN_QUERIES["mine"]
    rows = large.context["rows"]
    assert len(rows) == 50 and large.context["page"].paginator.count == 60
    page = large.content.decode()
    assert page.count('<tr id="request-') == 50
    assert page.count('name="csrfmiddlewaretoken"') == 2 * 50 + 2  # each row's two forms, the bulk form, sign-out
    assert "1–50 of 60 approvals" in text(large)

    first = small.context["rows"][0]
    pk, entry = first.pk, first.subject
    html_ = small.content.decode()
    for fragment in (
        f'<tr id="request-{pk}" class="">',
        f'id="select-{pk}" aria-label="Select time entry {entry.pk}"',
        f'<a href="{reverse("approvals:request_detail", args=[pk])}">Time entry {entry.pk}</a>',
        f'action="{reverse("approvals:request_decide", args=[pk])}"',
        f'aria-label="Approve time entry {entry.pk}"',
        f'<label for="rq-{pk}">Reason for rejecting time entry {entry.pk}</label>',
        "1.50 h · Carl &lt;Cole&gt; · ",  # escaped
        '<div class="muted small">Design &amp; review</div>',
        '<span class="ap-project-code">PRJ-NORD</span><div class="muted small">C-NORD</div>',
        '<td class="num">1.50 h</td>',
        "1/1 · Project manager",
        '<input type="hidden" name="next" value="/approvals/mine/">',
    ):
        assert fragment in html_, fragment
    assert html_.count('<span class="badge badge-info">Non-billable</span>') == 1
    assert "Carl <Cole>" not in html_


def test_the_request_page_reads_a_bounded_number_of_queries(client, django_assert_max_num_queries, pm, anna, project):
    request = requests_of(book(anna, project, day(0), "8")).get()
    client.force_login(pm)
    with django_assert_max_num_queries(14):
        response = client.get(reverse("approvals:request_detail", args=[request.pk]))
    assert "Approve step 1" in response.content.decode()
    assert "8 h · Anna Berger · " in text(response)


def test_deciding_from_the_page_reads_the_request_twice_and_the_users_roles_twice(client, pm, anna, project):
    """The view's pre-check and the service under lock each read the request and the roles once, no more."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    request = requests_of(book(anna, project, day(0), "8")).get()
    c = login(client, pm)
    ContentType.objects.get_for_models(TimeEntry, ApprovalRequest)  # warm the content-type cache

    with CaptureQueriesContext(connection) as ctx:
        response = c.post(reverse("approvals:request_decide", args=[request.pk]), {"decision": "approve", "step": 1})
    assert response.status_code == 303
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert sum(s.startswith('SELECT "approvals_approvalrequest"') for s in sqls) == 2  # the view's, the locked one
    assert sum('FROM "auth_group"' in s for s in sqls) == 2  # the view's pre-check, the decision under lock
    assert not sqls[-1].startswith('SELECT "approvals_approvalrequest"')  # the caller's instance is not re-read
    assert len(sqls) == 27
