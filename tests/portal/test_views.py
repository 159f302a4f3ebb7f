"""The portal shell: login, logout, the role-aware home page and its navigation."""
from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from portal.selectors import Money
from tests.factories import (
    ChangeOrderFactory,
    ContractFactory,
    ExpenseFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    MilestoneFactory,
    PaymentFactory,
    PersonFactory,
    ProjectFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

EXTERNAL_URL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _today() -> datetime.date:
    return timezone.localdate()


def _home(client, user):
    client.force_login(user)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    return response


# --- login, logout, anonymous -----------------------------------------------------------------


def test_login_page_renders_without_external_urls(client):
    response = client.get(reverse("login"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in html and 'name="password"' in html
    assert not EXTERNAL_URL.search(html), EXTERNAL_URL.search(html).group(0)
    assert "/static/vendor/htmx/htmx.min.js" in html
    assert "/static/css/portal.css" in html


def test_vendored_assets_are_present():
    for path in ("vendor/htmx/htmx.min.js", "vendor/htmx/LICENSE", "css/portal.css", "js/portal.js"):
        assert finders.find(path), path


def test_login_with_valid_credentials_lands_on_home(client):
    UserFactory(username="ana", groups=["consultant"])
    response = client.post(reverse("login"), {"username": "ana", "password": "password"})
    assert response.status_code == 302
    assert response.url == reverse("home")


def test_login_with_wrong_password_says_so(client):
    UserFactory(username="ana")
    response = client.post(reverse("login"), {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert "badge-error" in response.content.decode()


def test_anonymous_user_is_redirected_to_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert "next=/" in response.url


def test_logout_is_a_post_form_and_ends_the_session(client):
    user = UserFactory(groups=["consultant"])
    html = _home(client, user).content.decode()
    assert f'<form method="post" action="{reverse("logout")}"' in html
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_home_page_has_no_external_urls_and_shows_the_user(client):
    user = UserFactory(first_name="Maria", last_name="Schmidt", groups=["finance_analyst"], is_staff=True)
    html = _home(client, user).content.decode()
    assert not EXTERNAL_URL.search(html)
    assert "Maria Schmidt" in html
    assert "Finance analyst" in html


def test_messages_are_rendered_with_a_text_badge(rf):
    from django.contrib import messages
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.signed_cookies import SessionStore
    from django.template.loader import render_to_string

    request = rf.get("/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    messages.success(request, "Invoice DE01-2026-000123 approved; posting to ERP")
    messages.error(request, "C-0001/CO-001: you cannot approve a change order you submitted.")
    html = render_to_string("base.html", request=request)
    assert "Invoice DE01-2026-000123 approved; posting to ERP" in html
    assert ">Done<" in html and ">Error<" in html  # the level is text, not colour alone


# --- "My work" by role -------------------------------------------------------------------------


def test_consultant_sees_own_draft_and_rejected_time_this_week(client):
    today = _today()
    last_week = today - datetime.timedelta(days=7)
    person = PersonFactory()
    user = person.user
    TimeEntryFactory.create_batch(2, person=person, date=today)
    TimeEntryFactory(person=person, date=last_week)  # draft, but another week
    TimeEntryFactory(person=person, date=today, status="rejected", rejection_reason="Wrong project")
    TimeEntryFactory(person=person, date=last_week, status="rejected", rejection_reason="Too many hours")
    TimeEntryFactory(person=person, date=today, status="submitted")
    TimeEntryFactory(date=today)  # somebody else's draft
    ExpenseFactory(person=person, status="rejected", rejection_reason="No receipt")

    response = _home(client, user)
    counts = response.context["counts"]
    assert counts.my_time_draft_week == 2
    assert counts.my_time_rejected_week == 1
    assert counts.my_time_rejected_all == 2
    assert counts.my_expenses_rejected == 1
    assert counts.pm_approvals == 0
    html = response.content.decode()
    assert "Draft time entries this week" in html
    assert "Exception queue" not in html
    # Consultants are not staff: counts are shown, admin links are not offered.
    assert "/admin/" not in html
    # No admin access, but the portal's own timesheet and expense screens.
    assert [i.key for i in _nav(response)] == ["home", "timesheet", "expenses"]


def _nav(response):
    from portal.selectors import navigation

    return navigation(response.wsgi_request.user)


def test_project_manager_sees_what_waits_on_projects_they_manage(client):
    pm = UserFactory(groups=["project_manager"], is_staff=True)
    mine = ProjectFactory(project_manager=pm)
    other = ProjectFactory()
    TimeEntryFactory.create_batch(3, project=mine, status="submitted")
    TimeEntryFactory(project=mine, status="approved")
    TimeEntryFactory(project=other, status="submitted")
    ExpenseFactory(project=mine, status="submitted")
    ExpenseFactory(project=other, status="submitted")
    fixed = ProjectFactory(project_manager=pm, contract__fixed_fee=True)
    MilestoneFactory(project=fixed, status="completed")
    MilestoneFactory(project=fixed, status="planned")
    MilestoneFactory(status="completed")  # another PM's project
    ChangeOrderFactory(contract=mine.contract, status="submitted")
    ChangeOrderFactory(contract=mine.contract, status="draft")
    ChangeOrderFactory(contract=other.contract, status="submitted")
    # Two managed projects on one contract must not count its change order twice.
    ProjectFactory(project_manager=pm, contract=mine.contract)

    response = _home(client, pm)
    counts = response.context["counts"]
    assert counts.pm_time_submitted == 3
    assert counts.pm_expenses_submitted == 1
    assert counts.pm_milestones_completed == 1
    assert counts.pm_change_orders_submitted == 1
    assert counts.pm_approvals == 6
    html = response.content.decode()
    assert "Approvals on my projects" in html
    assert 'href="/approvals/time/"' in html  # links into the PM's approval queues
    approvals = next(i for i in _nav(response) if i.key == "approvals")
    assert approvals.count == 6


def test_finance_analyst_sees_exceptions_grouped_by_code_and_drafts(client):
    analyst = UserFactory(groups=["finance_analyst"], is_staff=True)
    contract = ContractFactory()
    a = InvoiceFactory(contract=contract, status="exception", total=Decimal("1000.00"))
    b = InvoiceFactory(contract=contract, status="exception", total=Decimal("250.50"))
    c = InvoiceFactory(contract=contract, status="exception", total=Decimal("99.00"))
    InvoiceExceptionFactory(invoice=a, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=a, code="CAP_EXCEEDED")  # same code twice on one invoice: counted once
    InvoiceExceptionFactory(invoice=b, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=c, code="MISSING_RATE")
    InvoiceExceptionFactory(invoice=c, code="PO_REQUIRED_MISSING", state="resolved")
    draft = InvoiceFactory(contract=contract)
    InvoiceExceptionFactory(invoice=draft, code="MISSING_RATE")  # not in exception status
    InvoiceFactory(contract=contract, status="pending_approval")

    response = _home(client, analyst)
    counts = response.context["counts"]
    assert counts.invoices_exception == 3
    assert counts.invoices_draft == 1
    groups = {g.code: g for g in counts.exception_groups}
    assert set(groups) == {"CAP_EXCEEDED", "MISSING_RATE"}
    assert groups["CAP_EXCEEDED"].invoices == 2
    assert groups["CAP_EXCEEDED"].totals == (Money("EUR", Decimal("1250.50")),)
    assert groups["MISSING_RATE"].invoices == 1
    html = response.content.decode()
    exception_queue = next(s for s in response.context["sections"] if s.role == "finance_analyst")
    cap = next(i for i in exception_queue.items if i.label == "CAP_EXCEEDED")
    # The finance exception queue when it exists, else the filtered admin list.
    assert cap.url.endswith(("code=CAP_EXCEEDED", "exception_code=CAP_EXCEEDED")), cap.url
    assert cap.url in html.replace("&amp;", "&")
    assert "1,250.50" in html


def test_controller_counts_only_the_invoices_at_their_approval_step(client):
    """Pending approval is not "awaiting me": an invoice at the analyst's step, or one I prepared, is not mine.

    The demo's controller saw "51 pending" on the home page while "My approvals" was empty: every
    invoice of the run was still at the analyst's step.
    """
    from approvals.models import ApprovalRequest
    from approvals.services import approval_approve, approval_request_open

    controller = UserFactory(groups=["finance_controller"], is_staff=True)
    analyst = UserFactory(groups=["finance_analyst"], is_staff=True)
    contract = ContractFactory()
    at_analyst = InvoiceFactory(contract=contract, status="pending_approval", total=Decimal("20000.00"))
    at_controller = InvoiceFactory(contract=contract, status="pending_approval", total=Decimal("30000.00"))
    prepared = InvoiceFactory(contract=contract, status="pending_approval", prepared_by=controller,
                              total=Decimal("40000.00"))
    InvoiceFactory(contract=contract, status="draft")
    requests = {inv.pk: approval_request_open(subject=inv) for inv in (at_analyst, at_controller, prepared)}
    for inv in (at_controller, prepared):
        approval_approve(request=requests[inv.pk], user=analyst)
    assert ApprovalRequest.objects.filter(current_step=2, status="pending").count() == 2

    response = _home(client, controller)
    counts = response.context["counts"]
    assert counts.invoices_pending_approval == 3
    assert counts.invoices_pending_prepared_by_me == 1
    assert counts.invoices_awaiting_me == 1  # at_controller only
    assert counts.pending_approval_totals == [Money("EUR", Decimal("90000.00"))]
    section = response.context["sections"][0]
    assert "pending_approval" in section.items[0].url
    mine = next(i for i in section.items if i.label == "At your approval step")
    assert (mine.count, mine.attention) == (1, True)
    to_approve = next(i for i in _nav(response) if i.key == "to_approve")
    assert to_approve.count == 1


def test_collections_sees_overdue_open_receivables_net_of_payments(client):
    collector = UserFactory(groups=["collections"], is_staff=True)
    today = _today()
    past = {"issue_date": today - datetime.timedelta(days=60), "due_date": today - datetime.timedelta(days=1)}
    future = {"issue_date": today, "due_date": today + datetime.timedelta(days=30)}
    contract = ContractFactory()
    InvoiceFactory(contract=contract, status="sent", number="N-1", total=Decimal("1000.00"), **past)
    partly = InvoiceFactory(contract=contract, status="partially_paid", number="N-2", total=Decimal("500.00"), **past)
    PaymentFactory(invoice=partly, amount=Decimal("200.00"))
    InvoiceFactory(contract=contract, status="posted", number="N-3", total=Decimal("70.00"), **future)  # not due
    InvoiceFactory(contract=contract, status="paid", number="N-4", total=Decimal("80.00"), **past)
    usd = ContractFactory(currency="USD", rate_card__currency="USD")
    InvoiceFactory(contract=usd, status="posted", number="N-5", total=Decimal("30.00"), **past)

    response = _home(client, collector)
    counts = response.context["counts"]
    assert counts.overdue_receivables == 3
    assert counts.overdue_totals == [Money("EUR", Decimal("1300.00")), Money("USD", Decimal("30.00"))]
    assert "overdue=yes" in response.content.decode()


def test_billing_admin_and_auditor_get_admin_links(client):
    admin_user = UserFactory(groups=["billing_admin"], is_staff=True)
    html = _home(client, admin_user).content.decode()
    assert 'href="/admin/"' in html
    assert "/admin/billing/ratecard/" in html

    auditor = UserFactory(groups=["auditor"], is_staff=True)
    response = _home(client, auditor)
    html = response.content.decode()
    assert "Audit (read only)" in html
    assert 'href="/admin/"' in html
    assert "/admin/billing/timeentry/" in html
    assert any(i.key == "admin" and i.label == "Records (read only)" for i in _nav(response))


def test_user_without_role_is_told_so(client):
    html = _home(client, UserFactory()).content.decode()
    assert "No role assigned" in html


def test_user_with_several_roles_gets_one_section_each(client):
    user = UserFactory(groups=["project_manager", "finance_controller", "collections"], is_staff=True)
    response = _home(client, user)
    assert [s.role for s in response.context["sections"]] == ["project_manager", "finance_controller", "collections"]
    keys = [i.key for i in _nav(response)]
    assert len(keys) == len(set(keys))


def test_home_page_queries_are_bounded_whatever_the_row_count(client, django_assert_max_num_queries):
    roles = ["consultant", "project_manager", "finance_analyst", "finance_controller", "collections",
             "billing_admin", "auditor"]
    person = PersonFactory(user=UserFactory(groups=roles, is_staff=True))
    user = person.user
    project = ProjectFactory(project_manager=user)
    client.force_login(user)

    def load():
        response = client.get(reverse("home"))
        assert response.status_code == 200
        return response

    # Warm up (content types, permissions caches), then measure with few and with many rows.
    load()
    with django_assert_max_num_queries(20) as few:
        load()

    today = _today()
    TimeEntryFactory.create_batch(15, person=person, project=project, date=today)
    TimeEntryFactory.create_batch(15, project=project, status="submitted")
    ExpenseFactory.create_batch(5, project=project, status="submitted")
    MilestoneFactory.create_batch(5, project=ProjectFactory(project_manager=user, contract__fixed_fee=True),
                                  status="completed")
    ChangeOrderFactory.create_batch(3, contract=project.contract, status="submitted")
    for i in range(12):
        inv = InvoiceFactory(contract=project.contract, status="exception", total=Decimal("10.00"))
        InvoiceExceptionFactory(invoice=inv, code=f"CODE_{i % 4}")
    InvoiceFactory.create_batch(6, contract=project.contract, status="pending_approval")
    past = today - datetime.timedelta(days=5)
    for i in range(8):
        inv = InvoiceFactory(contract=project.contract, status="sent", number=f"Q-{i}",
                             issue_date=past - datetime.timedelta(days=30), due_date=past)
        PaymentFactory(invoice=inv, amount=Decimal("1.00"))

    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        response = load()
    assert len(many.captured_queries) == len(few.captured_queries), [q["sql"][:120] for q in many.captured_queries]
    assert response.context["counts"].pm_time_submitted == 15
    assert response.context["counts"].overdue_receivables == 8


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("1234.5"), "EUR", "1,234.50"),
        (Decimal("-99.995"), "EUR", "−100.00"),
        (Decimal("1234567"), "JPY", "1,234,567"),
        (Decimal("0.125"), "USD", "0.13"),
    ],
)
def test_money_filter_rounds_to_the_minor_unit_and_marks_negatives(amount, currency, text):
    from kernel.money import money

    html = money(amount, currency)
    assert f"{text} <span class=\"money-ccy\">{currency}</span>" in html
    assert ("money-neg" in html) == (amount < 0)


def test_navigation_marks_exactly_one_current_entry(rf):
    from portal.selectors import NavItem
    from portal.templatetags.portal_tags import _mark_current

    items = [
        NavItem("My work", "/", key="home"),
        NavItem("To approve", "/billing/invoices/?status=pending_approval", key="to_approve"),
        NavItem("Invoices", "/billing/invoices/", key="invoices"),
    ]
    _mark_current(items, rf.get("/"))
    assert [i.key for i in items if i.current] == ["home"]
    _mark_current(items, rf.get("/billing/invoices/", {"status": "pending_approval"}))
    assert [i.key for i in items if i.current] == ["to_approve"]
    _mark_current(items, rf.get("/billing/invoices/42/"))
    assert [i.key for i in items if i.current] == ["invoices"]
