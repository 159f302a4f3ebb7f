"""Django admin of the billing models: pages, locks, auditors, and actions through the services."""
from __future__ import annotations

import datetime
import sys
import types
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from billing.models import (
    BillingRun,
    BillingRunChunk,
    ChangeOrder,
    DeliveryAttempt,
    Invoice,
    InvoiceDocument,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    Milestone,
    Payment,
    TaxEngineRecording,
    TimeEntry,
    VatCheck,
)
from kernel.errors import SegregationOfDutiesError
from tests.factories import (
    BillingRunFactory,
    ChangeOrderFactory,
    ChangeOrderMilestoneFactory,
    ChangeOrderRateFactory,
    ContractRateFactory,
    ExpenseFactory,
    FxRateFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    InvoiceLineFactory,
    InvoiceNumberSequenceFactory,
    InvoiceTaxFactory,
    MilestoneFactory,
    PaymentFactory,
    PersonFactory,
    ProjectFactory,
    PurchaseOrderFactory,
    RateCardLineFactory,
    TaxRuleFactory,
    TimeEntryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

BILLING_MODELS = sorted(
    (m for m in apps.get_app_config("billing").get_models() if not m.__name__.startswith("Historical")),
    key=lambda m: m.__name__,
)
# Written by services only (numbering, runs, payments, validation): nobody adds them in admin.
SERVICE_WRITTEN = {BillingRun, InvoiceNumberSequence, Payment, InvoiceException, InvoiceDocument, DeliveryAttempt,
                   VatCheck, TaxEngineRecording, BillingRunChunk}


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _ids(model) -> str:
    return model.__name__


@pytest.fixture
def one_of_each(db):
    """At least one row of every billing model."""
    line = InvoiceLineFactory()
    InvoiceTaxFactory(invoice=line.invoice)
    InvoiceExceptionFactory(invoice=line.invoice)
    sent = InvoiceFactory(status="sent", number="DE01-2025-000001")
    PaymentFactory(invoice=sent)
    InvoiceDocument.objects.create(invoice=sent, kind="pdf", content=b"%PDF-", sha256="0" * 64, size=5)
    DeliveryAttempt.objects.create(
        invoice=sent, to="ap@example.com", attempted_at=timezone.now(), result="sent", message_id="<1@billable>"
    )
    InvoiceNumberSequenceFactory()
    BillingRunChunk.objects.create(run=BillingRunFactory(), position=0, done_at=timezone.now(), status="done")
    ChangeOrderRateFactory()
    ChangeOrderMilestoneFactory()
    ContractRateFactory()
    RateCardLineFactory()
    FxRateFactory()
    TaxRuleFactory()
    TimeEntryFactory()
    ExpenseFactory()
    MilestoneFactory()
    PurchaseOrderFactory()
    VatCheck.objects.create(client=sent.contract.client, vat_id="DE274158609", result="valid",
                            checked_at=timezone.now(), request_date=datetime.date(2026, 1, 5),
                            consultation_number="WAPIAAAA00000001")
    TaxEngineRecording.objects.create(invoice=sent, next_attempt_at=timezone.now())
    missing = [m.__name__ for m in BILLING_MODELS if not m._default_manager.exists()]
    assert not missing


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def auditor(db):
    return UserFactory(username="audrey", is_staff=True, groups=["auditor"])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- registration and pages --------------------------------------------------------------------


def test_every_billing_model_is_registered():
    assert [m.__name__ for m in BILLING_MODELS if not admin.site.is_registered(m)] == []


@pytest.mark.parametrize("model", BILLING_MODELS, ids=_ids)
def test_superuser_gets_changelist_add_and_change_pages(client, superuser, one_of_each, model):
    client.force_login(superuser)
    assert client.get(_url(model, "changelist")).status_code == 200
    add = client.get(_url(model, "add")).status_code
    assert add == (403 if model in SERVICE_WRITTEN else 200)
    obj = model._default_manager.order_by("pk").first()
    assert client.get(_url(model, "change", obj.pk)).status_code == 200
    if hasattr(model, "history"):
        assert client.get(_url(model, "history", obj.pk)).status_code == 200


def test_changelist_search_and_date_hierarchy_work(client, superuser, one_of_each):
    client.force_login(superuser)
    for model in BILLING_MODELS:
        model_admin = admin.site._registry[model]
        if model_admin.search_fields:
            assert client.get(_url(model, "changelist"), {"q": "1"}).status_code == 200, model.__name__
        if model_admin.date_hierarchy:
            params = {f"{model_admin.date_hierarchy}__year": "2025"}
            assert client.get(_url(model, "changelist"), params).status_code == 200, model.__name__


def test_history_is_readable_but_never_reverted(client, superuser):
    entry = TimeEntryFactory()
    client.force_login(superuser)
    version = entry.history.first()
    url = _url(TimeEntry, "simple_history", entry.pk, version.history_id)
    assert client.get(url).status_code == 200
    assert client.post(url, {"hours": "1.00"}).status_code == 403


def test_status_fields_are_read_only(client, superuser):
    entry = TimeEntryFactory()
    model_admin = admin.site._registry[TimeEntry]
    request = types.SimpleNamespace(user=superuser)
    assert "status" in model_admin.get_readonly_fields(request, entry)
    for model in (Invoice, Milestone, ChangeOrder):
        assert "status" in admin.site._registry[model].get_readonly_fields(request, None)


# --- locks -------------------------------------------------------------------------------------


def test_numbered_invoice_is_read_only(client, superuser):
    numbered = InvoiceFactory()
    InvoiceLineFactory(invoice=numbered)  # lines first: a numbered invoice takes none (PostgreSQL trigger)
    Invoice.objects.filter(pk=numbered.pk).update(status="approved", number="DE01-2025-000009")
    numbered.refresh_from_db()
    client.force_login(superuser)
    model_admin = admin.site._registry[Invoice]
    request = types.SimpleNamespace(user=superuser)
    assert model_admin.has_change_permission(request, numbered) is False
    assert model_admin.has_change_permission(request, InvoiceFactory()) is True
    assert client.post(_url(Invoice, "change", numbered.pk), {}).status_code == 403
    html = client.get(_url(Invoice, "change", numbered.pk)).content.decode()
    assert 'name="_save"' not in html


def test_invoice_line_cannot_be_added_to_a_numbered_invoice(client, superuser):
    numbered = InvoiceFactory(status="approved", number="DE01-2025-000010")
    client.force_login(superuser)
    response = client.post(
        _url(InvoiceLine, "add"),
        {"invoice": numbered.pk, "position": 1, "kind": "time", "quantity": "1", "unit_price": "1",
         "amount": "1", "rate_source": ""},
    )
    assert response.status_code == 200  # form redisplayed with the error
    assert "corrections are made with a credit note" in response.content.decode()
    assert not InvoiceLine.objects.filter(invoice=numbered).exists()


def test_submitted_work_is_locked_against_edits(superuser):
    model_admin = admin.site._registry[TimeEntry]
    request = types.SimpleNamespace(user=superuser)
    assert model_admin.has_change_permission(request, TimeEntryFactory()) is True
    assert model_admin.has_change_permission(request, TimeEntryFactory(status="submitted")) is False
    assert model_admin.has_delete_permission(request, TimeEntryFactory(status="approved")) is False


# --- auditors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", BILLING_MODELS, ids=_ids)
def test_auditor_reads_everything_and_changes_nothing(client, auditor, one_of_each, model):
    client.force_login(auditor)
    obj = model._default_manager.order_by("pk").first()
    assert client.get(_url(model, "changelist")).status_code == 200
    assert client.get(_url(model, "change", obj.pk)).status_code == 200
    assert client.get(_url(model, "add")).status_code == 403
    assert client.post(_url(model, "add"), {}).status_code == 403
    assert client.post(_url(model, "change", obj.pk), {}).status_code == 403
    assert client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    if hasattr(model, "history"):
        assert client.get(_url(model, "history", obj.pk)).status_code == 200


def test_auditor_stays_read_only_even_with_other_roles(client):
    user = UserFactory(is_staff=True, groups=["auditor", "billing_admin"])
    entry = TimeEntryFactory()
    client.force_login(user)
    assert client.post(_url(TimeEntry, "change", entry.pk), {}).status_code == 403
    response = client.get(_url(TimeEntry, "changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "work_approve" not in html and "delete_selected" not in html
    assert "Auditor · read only" in html


def test_auditor_cannot_run_actions(client, auditor):
    entry = TimeEntryFactory(status="submitted")
    client.force_login(auditor)
    client.post(_url(TimeEntry, "changelist"), {"action": "work_approve", ACTION_CHECKBOX_NAME: [entry.pk]})
    entry.refresh_from_db()
    assert entry.status == "submitted"


# --- actions through the services ---------------------------------------------------------------


def _run_action(client, model, action: str, objs, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objs], "index": 0, **extra}
    return client.post(_url(model, "changelist"), data, follow=True)


def test_approve_action_calls_the_service_and_shows_the_sod_refusal(client):
    pm = UserFactory(is_staff=True, groups=["project_manager"])
    project = ProjectFactory(project_manager=pm)
    own = TimeEntryFactory(project=project, person=PersonFactory(user=pm), status="submitted")
    theirs = TimeEntryFactory(project=project, status="submitted")
    client.force_login(pm)

    response = _run_action(client, TimeEntry, "work_approve", [own, theirs])

    assert response.status_code == 200
    own.refresh_from_db()
    theirs.refresh_from_db()
    assert own.status == "submitted"
    assert theirs.status == "approved" and theirs.approved_by == pm
    texts = _messages(response)
    assert any(str(own) in t and "your own" in t for t in texts), texts
    assert any(t.startswith("1 time entry approved") for t in texts), texts


def test_action_reports_each_application_error_per_object(client, superuser, monkeypatch):
    calls = []

    def fake_approve(*, item, user):
        calls.append((item.pk, user.pk))
        if len(calls) == 1:
            raise SegregationOfDutiesError("You cannot approve your own time entry.")

    fake = types.ModuleType("billing.services.work")
    fake.work_approve = fake_approve
    monkeypatch.setitem(sys.modules, "billing.services.work", fake)
    entries = TimeEntryFactory.create_batch(2, status="submitted")
    client.force_login(superuser)

    response = _run_action(client, TimeEntry, "work_approve", entries)

    assert calls == [(entries[0].pk, superuser.pk), (entries[1].pk, superuser.pk)]
    texts = _messages(response)
    assert f"{entries[0]}: You cannot approve your own time entry." in texts
    assert "1 time entry approved." in texts


def test_action_says_when_its_service_is_missing(client, superuser, monkeypatch):
    monkeypatch.setitem(sys.modules, "billing.services.contracts", None)  # import fails
    project = ProjectFactory()
    client.force_login(superuser)
    response = _run_action(client, project.contract._meta.model, "contract_close", [project.contract])
    assert any("not available yet" in t for t in _messages(response))


def test_reject_action_asks_for_a_reason(client):
    pm = UserFactory(is_staff=True, groups=["project_manager"])
    entry = TimeEntryFactory(project=ProjectFactory(project_manager=pm), status="submitted")
    client.force_login(pm)

    page = _run_action(client, TimeEntry, "work_reject", [entry])
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()

    data = {"action": "work_reject", ACTION_CHECKBOX_NAME: [entry.pk], "apply": "1", "reason": "  "}
    again = client.post(_url(TimeEntry, "changelist"), data)
    assert again.status_code == 200 and 'name="reason"' in again.content.decode()
    entry.refresh_from_db()
    assert entry.status == "submitted"

    data["reason"] = "Booked on the wrong project"
    done = client.post(_url(TimeEntry, "changelist"), data, follow=True)
    entry.refresh_from_db()
    assert entry.status == "rejected"
    assert entry.rejection_reason == "Booked on the wrong project"
    assert "1 time entry rejected." in _messages(done)


def test_milestone_completer_cannot_approve_it_in_admin(client):
    pm = UserFactory(is_staff=True, groups=["project_manager"])
    milestone = MilestoneFactory(project=ProjectFactory(project_manager=pm, contract__fixed_fee=True))
    client.force_login(pm)

    done = _run_action(client, Milestone, "milestone_complete", [milestone])
    milestone.refresh_from_db()
    assert milestone.status == "completed", _messages(done)

    refused = _run_action(client, Milestone, "milestone_approve", [milestone])
    milestone.refresh_from_db()
    assert milestone.status == "completed"
    assert any("someone else must" in t for t in _messages(refused)), _messages(refused)


def test_change_order_submitter_cannot_approve_it_in_admin(client):
    pm = UserFactory(is_staff=True, groups=["project_manager"])
    project = ProjectFactory(project_manager=pm)
    change_order = ChangeOrderFactory(contract=project.contract, cap_delta=Decimal("1000.00"))
    client.force_login(pm)

    _run_action(client, ChangeOrder, "change_order_submit", [change_order])
    change_order.refresh_from_db()
    assert change_order.status == "submitted"
    refused = _run_action(client, ChangeOrder, "change_order_approve", [change_order])
    change_order.refresh_from_db()
    assert change_order.status == "submitted"
    assert any("someone else must" in t for t in _messages(refused)), _messages(refused)


# --- filters the portal links to -----------------------------------------------------------------


def test_portal_filters_select_the_right_rows(client, superuser):
    from django.utils import timezone

    me = PersonFactory(user=superuser)
    project = ProjectFactory(project_manager=superuser)
    TimeEntryFactory.create_batch(2, person=me)
    TimeEntryFactory(project=project, status="submitted")
    TimeEntryFactory()
    bad = InvoiceFactory(status="exception")
    InvoiceExceptionFactory(invoice=bad, code="CAP_EXCEEDED")
    InvoiceExceptionFactory(invoice=InvoiceFactory(status="exception"), code="CAP_EXCEEDED", state="resolved")
    today = timezone.localdate()
    InvoiceFactory(status="sent", number="X-1", issue_date=today.replace(year=today.year - 1),
                   due_date=today.replace(year=today.year - 1))
    client.force_login(superuser)

    def count(model, params):
        response = client.get(_url(model, "changelist"), params)
        assert response.status_code == 200, params
        return response.context["cl"].result_count

    assert count(TimeEntry, {"mine": "1"}) == 2
    assert count(TimeEntry, {"managed_by_me": "1", "status__exact": "submitted"}) == 1
    assert count(Invoice, {"status__exact": "exception", "exception_code": "CAP_EXCEEDED"}) == 1
    assert count(Invoice, {"overdue": "yes"}) == 1
    assert count(ChangeOrder, {"managed_by_me": "1"}) == 0
