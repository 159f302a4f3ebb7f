"""Billing screens: runs, exception queue, invoice review and detail, and their actions.

Invoices are made by the real billing run on factory data, so the pages show
what the engine writes (lines, links, taxes, exceptions, StateLog, history).
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal
from unittest import mock

import pytest
from django.urls import reverse

from billing.models import BillingRun, Invoice
from billing.services.billing_run import bill_period
from billing.services.invoices import invoice_approve
from tests.factories import (
    BillingRunFactory,
    ClientFactory,
    ContractFactory,
    LegalEntityFactory,
    PersonFactory,
    ProjectFactory,
    RateCardFactory,
    RateCardLineFactory,
    RoleFactory,
    TimeEntryFactory,
    UserFactory,
    set_contract_terms,
)

pytestmark = pytest.mark.django_db

START, END, RUN_DATE = datetime.date(2025, 3, 1), datetime.date(2025, 3, 31), datetime.date(2025, 4, 1)
WORK_DAY = datetime.date(2025, 3, 10)


# --- data ------------------------------------------------------------------------------------------


@pytest.fixture
def consultant_role():
    return RoleFactory(code="CONSULTANT")


@pytest.fixture
def senior_role():
    return RoleFactory(code="SENIOR")


@pytest.fixture
def contract(consultant_role):
    contract = ContractFactory(code="C-MAIN")
    RateCardLineFactory(rate_card=contract.rate_card, role=consultant_role, rate=Decimal("100.00"))
    return contract


@pytest.fixture
def project(contract):
    return ProjectFactory(contract=contract, code="PRJ-MAIN")


@pytest.fixture
def person(consultant_role):
    return PersonFactory(role=consultant_role, name="Anna Berger")


def approved(project, person, hours="8.00", day=WORK_DAY):
    return TimeEntryFactory(project=project, person=person, hours=Decimal(hours), date=day, status="approved")


def run(**kwargs):
    return bill_period(period_start=START, period_end=END, run_date=RUN_DATE, **kwargs)


@pytest.fixture
def analyst():
    # Staff, as finance users are: the exception queue links fixes into the admin only for users who can open it.
    return UserFactory(username="ana", first_name="Ana", last_name="Lyst", groups=["finance_analyst"], is_staff=True)


@pytest.fixture
def controller():
    return UserFactory(username="conny", first_name="Conny", last_name="Troll", groups=["finance_controller"],
                       is_staff=True)


@pytest.fixture
def auditor():
    return UserFactory(username="audrey", groups=["auditor"])


@pytest.fixture
def pm():
    return UserFactory(username="pete", groups=["project_manager"])


@pytest.fixture
def pending_invoice(project, person):
    approved(project, person)
    approved(project, person, "4.50", datetime.date(2025, 3, 11))
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "pending_approval"
    return invoice


@pytest.fixture
def missing_rate_invoice(project, senior_role):
    """Blocked by MISSING_RATE: a SENIOR books time, the rate card has no SENIOR rate."""
    approved(project, PersonFactory(role=senior_role, name="Sam Senior"))
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "exception"
    return invoice


@pytest.fixture
def cap_invoice(project, person):
    """Blocked by CAP_EXCEEDED: 8 h × 100 = 800 against a cap of 500."""
    set_contract_terms(project.contract, cap=Decimal("500.00"))
    approved(project, person)
    run()
    invoice = Invoice.objects.get()
    assert invoice.status == "exception"
    return invoice


def login(client, user):
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def follow_post(client, url, data=None, **extra):
    response = client.post(url, data or {}, follow=True, **extra)
    assert response.status_code == 200
    return response


# --- access ---------------------------------------------------------------------------------------

PAGES = [
    ("billing:run_list", []),
    ("billing:exception_queue", []),
    ("billing:invoice_list", []),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_users_are_sent_to_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_project_manager_gets_403_everywhere(client, pm, pending_invoice):
    login(client, pm)
    billing_run = BillingRunFactory()
    urls = [
        reverse("billing:run_list"),
        reverse("billing:run_detail", args=[billing_run.pk]),
        reverse("billing:run_progress", args=[billing_run.pk]),
        reverse("billing:exception_queue"),
        reverse("billing:invoice_list"),
        reverse("billing:invoice_detail", args=[pending_invoice.pk]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "No access" in response.content.decode()
    for action in ("revalidate", "override", "write_down", "approve", "reject", "cancel"):
        url = reverse(f"billing:invoice_{action}", args=[pending_invoice.pk])
        assert client.post(url, {"reason": "x"}).status_code == 403, url
    assert client.post(reverse("billing:run_list"), {"period": "2025-03", "run_date": "2025-04-01"}).status_code == 403
    pending_invoice.refresh_from_db()
    assert pending_invoice.status == "pending_approval"
    assert BillingRun.objects.count() == 2  # the factory run and the fixture's run


def test_a_consultant_and_a_user_without_role_get_403(client, pending_invoice):
    for user in (PersonFactory().user, UserFactory()):
        login(client, user)
        assert client.get(reverse("billing:exception_queue")).status_code == 403


def test_an_auditor_reads_every_page_but_cannot_act(client, auditor, pending_invoice):
    login(client, auditor)
    billing_run = BillingRun.objects.get()
    for url in (
        reverse("billing:run_list"),
        reverse("billing:run_detail", args=[billing_run.pk]),
        reverse("billing:exception_queue"),
        reverse("billing:invoice_list"),
        reverse("billing:invoice_detail", args=[pending_invoice.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'method="post" action="/billing/' not in html, url  # no action forms at all
    assert "Start billing run" not in client.get(reverse("billing:run_list")).content.decode()
    detail = client.get(reverse("billing:invoice_detail", args=[pending_invoice.pk])).content.decode()
    assert "Read only" in detail and "You have read access only." in detail

    assert client.post(reverse("billing:invoice_approve", args=[pending_invoice.pk])).status_code == 403
    assert client.post(reverse("billing:invoice_reject", args=[pending_invoice.pk]), {"reason": "x"}).status_code == 403
    assert client.post(reverse("billing:run_list"), {"period": "2025-03", "run_date": "2025-04-01"}).status_code == 403
    pending_invoice.refresh_from_db()
    assert pending_invoice.status == "pending_approval"
    assert BillingRun.objects.count() == 1


def test_auditors_find_the_billing_screens_in_the_navigation(client, auditor, analyst):
    html = login(client, auditor).get(reverse("billing:exception_queue")).content.decode()
    assert f'href="{reverse("billing:invoice_list")}?status=all" aria-current="page">Billing' in html
    html = login(client, analyst).get(reverse("billing:exception_queue")).content.decode()
    assert "(read only)</span></a>" not in html


def test_analysts_cannot_override_or_write_down(client, analyst, cap_invoice):
    login(client, analyst)
    for name in ("billing:invoice_override", "billing:invoice_write_down"):
        response = client.post(reverse(name, args=[cap_invoice.pk]), {"reason": "Agreed"})
        assert response.status_code == 403
    cap_invoice.refresh_from_db()
    assert cap_invoice.status == "exception"


# --- billing runs ---------------------------------------------------------------------------------


def test_runs_page_offers_the_form_with_defaults(client, analyst):
    response = login(client, analyst).get(reverse("billing:run_list"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'type="month"' in html and 'name="period"' in html
    assert 'name="run_date"' in html and 'name="contract_codes"' in html
    form = response.context["form"]
    today = datetime.date.today()
    assert form.initial["run_date"] == today
    assert "/static/css/billing.css" in html


def test_starting_a_run_queues_it_and_enqueues_the_task_after_commit(
    client, analyst, contract, django_capture_on_commit_callbacks
):
    login(client, analyst)
    with (
        mock.patch("billing.services.billing_run.async_task") as enqueue,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        response = client.post(
            reverse("billing:run_list"),
            {"period": "2025-03", "run_date": "2025-04-01", "contract_codes": "C-MAIN, C-MAIN"},
        )
    billing_run = BillingRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("billing:run_detail", args=[billing_run.pk])
    assert billing_run.status == "queued"
    assert billing_run.started_by == analyst
    assert (billing_run.period_start, billing_run.period_end) == (START, END)
    assert billing_run.run_date == RUN_DATE
    assert billing_run.contract_codes == ["C-MAIN"]
    assert len(callbacks) == 1
    enqueue.assert_called_once()
    assert enqueue.call_args.args == ("billing.tasks.run_billing_task", billing_run.pk)


def test_the_enqueued_task_runs_the_billing_synchronously_with_q_sync(
    client, analyst, project, person, django_capture_on_commit_callbacks, settings, monkeypatch
):
    """django-q2 1.11 reads `Q_CLUSTER["sync"]` once, into `Conf.SYNC`; patch both for inline tasks."""
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)
    approved(project, person)
    login(client, analyst)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("billing:run_list"), {"period": "2025-03", "run_date": "2025-04-01"})
    billing_run = BillingRun.objects.get()
    assert billing_run.status == "done", billing_run.error
    assert billing_run.summary["invoices"] == 1
    page = client.get(response.url)
    html = page.content.decode()
    assert "Invoices made" in html and "Totals by currency" in html
    assert 'hx-trigger="every 2s"' not in html  # finished: no polling
    assert "952.00" in html  # 800 + 19 % VAT


def test_run_form_rejects_unknown_contracts_and_early_run_dates(client, analyst):
    login(client, analyst)
    with mock.patch("billing.services.billing_run.async_task") as enqueue:
        response = client.post(
            reverse("billing:run_list"), {"period": "2025-03", "run_date": "2025-02-01", "contract_codes": "NOPE-1"}
        )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "Unknown contract(s): NOPE-1." in errors["contract_codes"]
    assert "cannot be before the period start" in errors["run_date"][0]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not BillingRun.objects.exists()
    enqueue.assert_not_called()
    response = client.post(reverse("billing:run_list"), {"period": "March", "run_date": "2025-04-01"})
    assert "Choose a month" in response.content.decode()


def test_run_detail_polls_while_queued_and_stops_when_done(client, analyst, project, person):
    login(client, analyst)
    queued = BillingRunFactory(started_by=analyst)
    html = client.get(reverse("billing:run_detail", args=[queued.pk])).content.decode()
    assert f'hx-get="{reverse("billing:run_progress", args=[queued.pk])}"' in html
    assert 'hx-trigger="every 2s"' in html
    assert "<progress" in html and "queued, waiting for a worker" in html

    BillingRun.objects.filter(pk=queued.pk).update(status="running", contracts_total=4, contracts_done=1)
    partial = client.get(reverse("billing:run_progress", args=[queued.pk]), HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert partial.status_code == 200
    assert body.lstrip().startswith("<div id=\"run-status\"")
    assert 'hx-trigger="every 2s"' in body
    assert 'max="4" value="1"' in body and "1 / 4" in body
    assert "<html" not in body

    approved(project, person)
    done = run()
    partial = client.get(reverse("billing:run_progress", args=[done.pk])).content.decode()
    assert "hx-trigger" not in partial
    assert "Invoices made" in partial


def test_run_summary_shows_entities_totals_exceptions_and_skipped(client, analyst, project, senior_role):
    approved(project, PersonFactory(role=senior_role))
    run()  # MISSING_RATE
    second = run()  # skipped: an open draft exists
    first = BillingRun.objects.exclude(pk=second.pk).get()
    login(client, analyst)
    html = client.get(reverse("billing:run_detail", args=[first.pk])).content.decode()
    entity = project.contract.entity.code
    assert f"<th scope=\"row\">{entity}</th><td>EUR</td><td class=\"num\">1</td>" in html
    assert f'href="{reverse("billing:exception_queue")}?code=MISSING_RATE"' in html
    assert f"?run={first.pk}&amp;status=exception" in html
    html = client.get(reverse("billing:run_detail", args=[second.pk])).content.decode()
    assert "Skipped contracts <span class=\"muted\">(1)</span>" in html
    assert "an open draft invoice exists" in html


def test_failed_run_shows_its_error(client, analyst):
    failed = BillingRunFactory(status="failed", error="Boom: database went away")
    html = login(client, analyst).get(reverse("billing:run_detail", args=[failed.pk])).content.decode()
    assert "Boom: database went away" in html and "hx-trigger" not in html


def test_recent_runs_are_listed(client, analyst, pending_invoice):
    html = login(client, analyst).get(reverse("billing:run_list")).content.decode()
    billing_run = BillingRun.objects.get()
    assert f'href="{reverse("billing:run_detail", args=[billing_run.pk])}"' in html
    assert "Mar 2025" in html and "Done" in html


def test_unknown_run_or_invoice_is_404(client, analyst):
    login(client, analyst)
    assert client.get(reverse("billing:run_detail", args=[999999])).status_code == 404
    assert client.get(reverse("billing:invoice_detail", args=[999999])).status_code == 404
    assert client.post(reverse("billing:invoice_approve", args=[999999])).status_code == 404


# --- exception queue ------------------------------------------------------------------------------


def test_exception_queue_groups_rows_and_explains_the_fix(client, analyst, missing_rate_invoice):
    response = login(client, analyst).get(reverse("billing:exception_queue"))
    html = response.content.decode()
    queue = response.context["queue"]
    assert [g.code for g in queue.groups] == ["MISSING_RATE"]
    group = queue.groups[0]
    assert group.invoices == 1 and group.rows[0].invoice == missing_rate_invoice
    assert missing_rate_invoice.display_number in html
    assert f'href="{reverse("billing:invoice_detail", args=[missing_rate_invoice.pk])}"' in html
    assert missing_rate_invoice.client.legal_name in html and "C-MAIN" in html
    exc = missing_rate_invoice.exceptions.get()
    assert exc.message in html
    assert "Add a rate for the role on the rate card or the contract, then revalidate." in html
    assert f'href="{exc.fix_url}"' in html
    assert "Revalidate" in html
    assert "Override…" not in html  # analysts do not override
    assert f'hx-post="{reverse("billing:invoice_revalidate", args=[missing_rate_invoice.pk])}"' in html
    assert "0 d" in html  # age in days


def test_controllers_see_override_and_write_down_only_on_cap_exceeded(client, controller, cap_invoice):
    html = login(client, controller).get(reverse("billing:exception_queue")).content.decode()
    assert "Override…" in html and "Write down…" in html
    assert 'name="reason" required' in html
    assert "excess" in html and "300.00" in html


def test_write_down_is_not_offered_for_other_codes(client, controller, missing_rate_invoice):
    html = login(client, controller).get(reverse("billing:exception_queue")).content.decode()
    assert "Override…" in html
    assert "Write down…" not in html


def test_exception_queue_filters_by_code(client, analyst, missing_rate_invoice, consultant_role, person):
    other = ContractFactory(code="C-CAP", cap=Decimal("100.00"))
    RateCardLineFactory(rate_card=other.rate_card, role=consultant_role)
    approved(ProjectFactory(contract=other), person)
    run()
    login(client, analyst)
    response = client.get(reverse("billing:exception_queue"))
    assert [g.code for g in response.context["queue"].groups] == ["CAP_EXCEEDED", "MISSING_RATE"]
    response = client.get(reverse("billing:exception_queue"), {"code": "CAP_EXCEEDED"})
    queue = response.context["queue"]
    assert [g.code for g in queue.groups] == ["CAP_EXCEEDED"]
    assert [r.invoice.contract.code for g in queue.groups for r in g.rows] == ["C-CAP"]
    assert queue.codes == ["CAP_EXCEEDED", "MISSING_RATE"]  # the filter still offers every code
    html = response.content.decode()
    assert '<option value="CAP_EXCEEDED" selected>' in html
    response = client.get(reverse("billing:exception_queue"), {"code": "NO_SUCH_CODE"})
    assert "No invoice is blocked by" in response.content.decode()


def test_empty_queue_says_so(client, analyst):
    html = login(client, analyst).get(reverse("billing:exception_queue")).content.decode()
    assert "No invoice is waiting in exception." in html


def test_revalidate_inline_after_the_fix_returns_the_queue_with_a_message(
    client, analyst, contract, senior_role, missing_rate_invoice
):
    RateCardLineFactory(rate_card=contract.rate_card, role=senior_role, rate=Decimal("150.00"))
    login(client, analyst)
    queue_url = reverse("billing:exception_queue") + "?code=MISSING_RATE"
    response = client.post(
        reverse("billing:invoice_revalidate", args=[missing_rate_invoice.pk]), {"next": queue_url},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 303
    assert response["Location"] == queue_url
    # htmx follows the redirect with its headers: the queue answers with its region only.
    partial = client.get(queue_url, HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="exception-queue">')
    assert "<html" not in body
    assert f"{missing_rate_invoice.display_number} revalidated: no blocking exception; now pending approval." in body
    assert "No invoice is blocked by" in body
    assert "HX-Request" in partial["Vary"]
    missing_rate_invoice.refresh_from_db()
    assert missing_rate_invoice.status == "pending_approval"
    assert missing_rate_invoice.subtotal == Decimal("1200.00")


def test_revalidate_without_the_fix_says_it_is_still_blocked(client, analyst, missing_rate_invoice):
    url = reverse("billing:invoice_revalidate", args=[missing_rate_invoice.pk])
    response = follow_post(login(client, analyst), url)
    assert f"{missing_rate_invoice.display_number} revalidated: still blocked by MISSING_RATE." in messages_of(response)
    assert response.request["PATH_INFO"] == reverse("billing:invoice_detail", args=[missing_rate_invoice.pk])


def test_override_needs_a_reason(client, controller, missing_rate_invoice):
    login(client, controller)
    url = reverse("billing:invoice_override", args=[missing_rate_invoice.pk])
    response = follow_post(client, url, {"reason": "   "})
    assert "A reason is required to override a blocking exception." in messages_of(response)
    missing_rate_invoice.refresh_from_db()
    assert missing_rate_invoice.status == "exception"
    response = follow_post(client, url, {"reason": "Rate agreed by e-mail; card follows"})
    assert any("overridden; now pending approval" in m for m in messages_of(response))
    missing_rate_invoice.refresh_from_db()
    assert missing_rate_invoice.status == "pending_approval"


def test_override_by_the_preparer_is_refused_with_the_services_message(client, project, senior_role):
    both = UserFactory(groups=["finance_controller"])
    approved(project, PersonFactory(role=senior_role))
    run(user=both)
    invoice = Invoice.objects.get()
    response = follow_post(login(client, both), reverse("billing:invoice_override", args=[invoice.pk]),
                           {"reason": "Fine"})
    assert "You prepared this invoice; another controller must override it." in messages_of(response)
    assert ">Error<" in response.content.decode()


def test_write_down_to_cap_from_the_queue(client, controller, cap_invoice):
    login(client, controller)
    url = reverse("billing:invoice_write_down", args=[cap_invoice.pk])
    response = follow_post(client, url, {"reason": ""})
    assert "A reason is required to write an invoice down to the cap." in messages_of(response)
    queue_url = reverse("billing:exception_queue")
    response = follow_post(client, url, {"reason": "Agreed with the client", "next": queue_url})
    assert response.request["PATH_INFO"] == queue_url
    assert any("written down to the contract cap; new total 595.00 EUR" in m for m in messages_of(response))
    cap_invoice.refresh_from_db()
    assert cap_invoice.total == Decimal("595.00") and cap_invoice.status == "pending_approval"


def test_next_must_stay_on_this_site(client, analyst, missing_rate_invoice):
    response = login(client, analyst).post(
        reverse("billing:invoice_revalidate", args=[missing_rate_invoice.pk]), {"next": "https://evil.example/"}
    )
    assert response.status_code == 303
    assert response["Location"] == reverse("billing:invoice_detail", args=[missing_rate_invoice.pk])


def test_actions_are_post_only(client, analyst, pending_invoice):
    response = login(client, analyst).get(reverse("billing:invoice_approve", args=[pending_invoice.pk]))
    assert response.status_code == 405


def _exception_invoices(n: int) -> None:
    """`n` invoices in exception with three different codes and several rows each."""
    entity, client_, card = LegalEntityFactory(), ClientFactory(), RateCardFactory()
    consultant = RoleFactory(code="CONSULTANT")
    senior = RoleFactory(code="SENIOR")
    RateCardLineFactory(rate_card=card, role=consultant)
    people = [PersonFactory(role=consultant), PersonFactory(role=senior)]
    owner = UserFactory(groups=["finance_analyst"])
    for i in range(n):
        contract = ContractFactory(
            entity=entity, client=client_, rate_card=card, cap=Decimal("10.00") if i % 3 == 0 else None,
            po_number="" if i % 3 == 1 else "PO-1",
        )
        if i % 3 == 1:
            client_.po_required = True
        project = ProjectFactory(contract=contract, project_manager=owner)
        approved(project, people[i % 3 == 2])
        approved(project, people[0], "2.00", datetime.date(2025, 3, 12))
    client_.save()
    run()
    from billing.models import InvoiceException

    InvoiceException.objects.update(owner=owner)


@pytest.mark.parametrize("n", [5, 50])
def test_exception_queue_query_count_is_bounded(client, controller, django_assert_max_num_queries, n):
    _exception_invoices(n)
    assert Invoice.objects.filter(status="exception").count() == n
    login(client, controller)
    client.get(reverse("billing:exception_queue"))  # warm caches (content types, session)
    # 12 + the navigation's "at my step" count (the controller's delegations and their roles: 3), constant in n.
    with django_assert_max_num_queries(15):
        response = client.get(reverse("billing:exception_queue"))
    assert sum(len(g.rows) for g in response.context["queue"].groups) >= n
    with django_assert_max_num_queries(15):
        client.get(reverse("billing:exception_queue"), {"code": "CAP_EXCEEDED"})


@pytest.mark.parametrize("n", [5, 50])
def test_invoice_list_query_count_is_bounded(client, controller, django_assert_max_num_queries, n):
    _exception_invoices(n)
    login(client, controller)
    client.get(reverse("billing:invoice_list"))
    with django_assert_max_num_queries(12):
        response = client.get(reverse("billing:invoice_list"), {"status": "exception"})
    assert len(response.context["queue"].invoices) == n


@pytest.mark.parametrize("entries", [2, 40])
def test_invoice_detail_query_count_is_bounded(client, controller, project, person, django_assert_max_num_queries,
                                               entries):
    second = ProjectFactory(contract=project.contract)
    for i in range(entries):
        approved(project if i % 2 else second, person, "1.00", START + datetime.timedelta(days=i % 28))
    run()
    invoice = Invoice.objects.get()
    login(client, controller)
    url = reverse("billing:invoice_detail", args=[invoice.pk])
    client.get(url)
    # 20 + the approval route panel with a controller's override check (3) + the navigation's "at my step"
    # count, which asks who the controller may decide for (delegations, their roles: 3). Constant in the lines.
    with django_assert_max_num_queries(26):
        response = client.get(url)
    assert response.content.decode().count("<details class=\"drill\">") == 2


# --- invoice review and detail --------------------------------------------------------------------


def test_review_queue_lists_invoices_pending_approval(client, controller, pending_invoice):
    response = login(client, controller).get(reverse("billing:invoice_list"), {"status": "pending_approval"})
    html = response.content.decode()
    queue = response.context["queue"]
    assert queue.tab == "pending_approval"
    assert list(queue.invoices) == [pending_invoice]
    assert pending_invoice.display_number in html
    assert "Pending approval" in html and "1,487.50" in html
    assert dict((k, n) for k, _label, n in queue.tabs)["pending_approval"] == 1


def test_review_queue_tabs_and_run_filter(client, analyst, pending_invoice):
    login(client, analyst)
    response = client.get(reverse("billing:invoice_list"))
    assert response.context["queue"].tab == "pending_approval"  # the default
    response = client.get(reverse("billing:invoice_list"), {"status": "exception"})
    assert list(response.context["queue"].invoices) == []
    assert "No invoices here." in response.content.decode()
    run_id = pending_invoice.billing_run_id
    response = client.get(reverse("billing:invoice_list"), {"status": "all", "run": run_id})
    assert list(response.context["queue"].invoices) == [pending_invoice]
    assert response.context["queue"].tab == "all"
    response = client.get(reverse("billing:invoice_list"), {"status": "all", "run": run_id + 1})
    assert list(response.context["queue"].invoices) == []
    response = client.get(reverse("billing:invoice_list"), {"status": "posted"})
    assert response.context["queue"].tab == "issued"


def test_invoice_detail_shows_header_lines_drill_down_tax_and_history(client, controller, pending_invoice):
    response = login(client, controller).get(reverse("billing:invoice_detail", args=[pending_invoice.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    contract = pending_invoice.contract
    for text in (
        pending_invoice.client.legal_name, pending_invoice.entity.name, contract.code, "Time &amp; materials",
        "1 Mar 2025 – 31 Mar 2025", "1 Apr 2025", "1 May 2025", contract.po_number, "Pending approval",
    ):
        assert text in html, text
    # Lines grouped by project: quantity × unit price = amount, with the rate source.
    assert "Project PRJ-MAIN" in html
    assert "12.50 h" in html and "100.00" in html and "1,250.00" in html
    line = pending_invoice.lines.get()
    assert line.rate_source_label and line.rate_source_label in html
    # Drill-down to the billed time entries.
    assert '<details class="drill">' in html
    assert "Anna Berger" in html and "Mon 10 Mar 2025" in html and "Tue 11 Mar 2025" in html and "4.50" in html
    # Tax with its legal note, totals.
    assert "Tax breakdown" in html and "237.50" in html and "1,487.50" in html
    # History: the run's transition and the creation record, made by "system" (no user).
    timeline = response.context["timeline"]
    assert any(e.kind == "transition" and e.title == "Draft → Pending approval" for e in timeline)
    assert any(e.kind == "change" and e.title.startswith("Created") for e in timeline)
    assert all(e.who == "system" for e in timeline)
    assert ">system<" in html
    # Actions for a controller on a pending invoice: approve and reject, not revalidate/cancel.
    actions = response.context["actions"]
    assert actions == {"revalidate": False, "override": False, "write_down": False, "approve": True,
                       "reject": True, "cancel": False}


def test_invoice_detail_of_a_blocked_invoice_shows_the_exception_and_its_actions(
    client, controller, missing_rate_invoice
):
    response = login(client, controller).get(reverse("billing:invoice_detail", args=[missing_rate_invoice.pk]))
    html = response.content.decode()
    exc = missing_rate_invoice.exceptions.get()
    assert exc.message in html and exc.fix_hint in html and f'href="{exc.fix_url}"' in html
    assert response.context["actions"] == {"revalidate": True, "override": True, "write_down": False,
                                           "approve": False, "reject": False, "cancel": True}
    assert "Exception queue" in html  # breadcrumb back to the queue


def test_approve_shows_the_number_and_the_history(client, analyst, pending_invoice):
    login(client, analyst)  # step 1 of an invoice under 10,000 is a finance analyst's
    response = follow_post(client, reverse("billing:invoice_approve", args=[pending_invoice.pk]),
                           {"comment": "Checked against the timesheets"})
    pending_invoice.refresh_from_db()
    number = pending_invoice.number
    assert number == f"{pending_invoice.entity.number_prefix}-2025-000001"
    assert f"Invoice {number} approved and posted (no ERP configured)." in messages_of(response)
    html = response.content.decode()
    assert f'<span class="invoice-number">{number}</span>' in html
    assert "Posted" in html
    timeline = response.context["timeline"]
    assert timeline[0].when >= timeline[-1].when  # newest first
    assert any(e.title == "Pending approval → Approved" and e.who == "Ana Lyst"
               and e.detail == "Checked against the timesheets" for e in timeline)
    assert any(e.title == "Approved → Posted" for e in timeline)
    assert any(e.detail == f"Approved as {number}" for e in timeline)
    assert "Numbered invoices are final" in html


def test_approve_with_erp_posting_says_posting_to_erp(client, analyst, pending_invoice, settings):
    settings.ERP_POSTING_ENABLED = True
    response = follow_post(login(client, analyst), reverse("billing:invoice_approve", args=[pending_invoice.pk]))
    pending_invoice.refresh_from_db()
    assert f"Invoice {pending_invoice.number} approved; posting to ERP." in messages_of(response)


def test_segregation_of_duties_error_shows_as_a_message(client, analyst, project, person):
    approved(project, person)
    run(user=analyst)
    invoice = Invoice.objects.get()
    login(client, analyst)
    html = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "You prepared this invoice; segregation of duties" in html
    assert reverse("billing:invoice_approve", args=[invoice.pk]) not in html
    response = follow_post(client, reverse("billing:invoice_approve", args=[invoice.pk]))
    assert "You prepared this invoice; someone else must approve it." in messages_of(response)
    invoice.refresh_from_db()
    assert invoice.status == "pending_approval" and invoice.number is None


def test_reject_needs_a_reason_then_sends_back_to_draft(client, analyst, pending_invoice):
    login(client, analyst)
    url = reverse("billing:invoice_reject", args=[pending_invoice.pk])
    response = follow_post(client, url, {"reason": ""})
    assert "A reason is required to reject an invoice." in messages_of(response)
    pending_invoice.refresh_from_db()
    assert pending_invoice.status == "pending_approval"
    response = follow_post(client, url, {"reason": "Hours of 11 March look wrong"})
    assert f"{pending_invoice.display_number} rejected and sent back to draft." in messages_of(response)
    pending_invoice.refresh_from_db()
    assert pending_invoice.status == "draft"
    assert any(e.detail == "Hours of 11 March look wrong" for e in response.context["timeline"])
    assert response.context["actions"]["revalidate"] and response.context["actions"]["cancel"]


def test_cancel_needs_a_reason_and_releases_the_items(client, analyst, missing_rate_invoice):
    login(client, analyst)
    url = reverse("billing:invoice_cancel", args=[missing_rate_invoice.pk])
    response = follow_post(client, url, {"reason": ""})
    assert "A reason is required to cancel a draft invoice." in messages_of(response)
    response = follow_post(client, url, {"reason": "Billed by hand"})
    assert f"{missing_rate_invoice.display_number} cancelled; its items can be billed again." in messages_of(response)
    missing_rate_invoice.refresh_from_db()
    assert missing_rate_invoice.status == "cancelled"


def test_an_invalid_transition_is_a_message_not_a_crash(client, controller, analyst, pending_invoice):
    invoice_approve(invoice=pending_invoice, user=analyst)
    response = follow_post(login(client, controller), reverse("billing:invoice_reject", args=[pending_invoice.pk]),
                           {"reason": "Too late"})
    assert any(m.startswith("Cannot reject") for m in messages_of(response))


def test_over_long_reason_is_refused(client, controller, missing_rate_invoice):
    url = reverse("billing:invoice_override", args=[missing_rate_invoice.pk])
    response = follow_post(login(client, controller), url, {"reason": "x" * 1001})
    assert any(re.search("at most 1000 characters", m) for m in messages_of(response))
    missing_rate_invoice.refresh_from_db()
    assert missing_rate_invoice.status == "exception"


def test_invoice_review_queue_filters_and_sorts(client):
    """Entity, client, amount, open-exception and age filters narrow the queue; sort by size."""
    from billing.selectors import invoice_queue
    from tests.factories import InvoiceExceptionFactory, InvoiceFactory

    small = InvoiceFactory(status="pending_approval", total=Decimal("100.00"))
    large = InvoiceFactory(status="pending_approval", total=Decimal("50000.00"))
    InvoiceExceptionFactory(invoice=large, code="CLIENT_ON_CREDIT_HOLD", severity="warning")

    def numbers(**kwargs):
        return [i.pk for i in invoice_queue(status="pending_approval", **kwargs).invoices]

    assert numbers(filters={"min_amount": Decimal("1000")}) == [large.pk]
    assert numbers(filters={"max_amount": Decimal("1000")}) == [small.pk]
    assert numbers(filters={"warning": "CLIENT_ON_CREDIT_HOLD"}) == [large.pk]
    assert numbers(filters={"client": large.client.code}) == [large.pk]
    assert numbers(filters={"entity": small.entity.code}) == [small.pk]
    assert numbers(filters={"min_age": 3}) == []
    assert numbers(sort="largest") == [large.pk, small.pk]

    user = UserFactory(groups=["finance_analyst"])
    client.force_login(user)
    response = client.get("/billing/invoices/?status=pending_approval&min_amount=1000&sort=largest")
    assert response.status_code == 200
    assert large.display_number in response.content.decode()
    assert small.display_number not in response.content.decode()


def test_fix_links_into_the_admin_are_not_shown_to_who_cannot_open_it(client, missing_rate_invoice):
    """A non-staff user would be sent to the admin's login page: a dead end, so no link (the hint stays)."""
    not_staff = UserFactory(groups=["finance_analyst"], is_staff=False)
    html = login(client, not_staff).get(reverse("billing:exception_queue")).content.decode()
    assert "/admin/billing/contract/" not in html
    assert "Add a rate for the role" in html
