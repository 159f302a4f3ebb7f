"""Actions through the API: start and poll a billing run, open a dispute, download documents; audited as the client."""

from __future__ import annotations

import datetime
from decimal import Decimal
from unittest import mock

import pytest
from django_fsm_log.models import StateLog

from billing.models import BillingRun, Invoice
from disputes.models import Dispute
from tests.factories import PersonFactory, ProjectFactory, RateCardLineFactory, RoleFactory, TimeEntryFactory

from .conftest import bearer
from .factories import posted_invoice
from .helpers import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputer(make_client):
    client, token = make_client("crm", ("read:billing", "write:disputes"))
    return client, bearer(token)


def test_a_billing_run_started_by_the_api_runs_and_is_polled_to_done(
    writer, django_capture_on_commit_callbacks, settings, monkeypatch
):
    """A real run (django-q2 in sync mode): the invoice it makes is prepared by the client's service user."""
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)
    role = RoleFactory(code="CONSULTANT")
    project = ProjectFactory()
    RateCardLineFactory(rate_card=project.contract.rate_card, role=role, rate=Decimal("100.00"))
    TimeEntryFactory(
        project=project, person=PersonFactory(role=role), hours=Decimal("8.00"),
        date=datetime.date(2025, 3, 10), status="approved",
    )
    client, api = writer
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/billing-runs/",
            {"period": "2025-03", "run_date": "2025-04-01", "contract_codes": [project.contract.code]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="run-2025-03",
        )
    assert response.status_code == 202, response.content
    location = response["Location"]
    assert location == f"/api/v1/billing-runs/{response.json()['id']}/"
    polled = api.get(location).json()
    assert polled["status"] == "done", polled
    assert polled["summary"]["invoices"] == 1
    assert polled["started_by"] == "api-writer"
    run = BillingRun.objects.get()
    assert run.started_by == client.user
    invoice = Invoice.objects.get(billing_run=run)
    assert invoice.prepared_by == client.user
    [invoice_row] = api.get("/api/v1/invoices/", {"billing_run": run.pk}).json()["results"]
    assert invoice_row["total"] == "952.00"


def test_billing_run_validation_and_scope(writer, reader):
    _c, api = writer
    with mock.patch("billing.services.billing_run.async_task"):
        body = assert_error(
            api.post("/api/v1/billing-runs/", {"period": "2025-03", "run_date": "2025-02-01"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="early"),
            400,
            "invalid",
        )
    assert "run_date" in body["field_errors"]
    assert not BillingRun.objects.exists()


def test_opening_a_dispute_marks_the_invoice_disputed_as_the_service_user(disputer):
    client, api = disputer
    invoice = posted_invoice()
    line = invoice.lines.first()
    response = api.post(
        f"/api/v1/invoices/{invoice.pk}/disputes/",
        {
            "category": "hours",
            "disputed_amount": "200.00",
            "customer_reference": "TICKET-77",
            "description": "Two days were not worked.",
            "lines": [{"invoice_line": line.pk, "amount": "200.00"}],
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="dispute-77",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"/api/v1/disputes/{body['id']}/"
    assert body["status"] == "open" and body["source"] == "api" and body["opened_by"] == "api-crm"
    assert body["lines"] == [{"invoice_line": line.pk, "amount": "200.00"}]
    assert body["owner"] == "api-crm"  # no owner given: the client's service user
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DISPUTED
    dispute = Dispute.objects.get()
    assert dispute.history.first().history_user == client.user
    assert invoice.history.first().history_user == client.user
    log = StateLog.objects.for_(invoice).latest("timestamp")
    assert (log.transition, log.by) == ("dispute", client.user)
    listed = api.get(f"/api/v1/invoices/{invoice.pk}/disputes/").json()["results"]
    assert [d["id"] for d in listed] == [dispute.pk]


def test_dispute_errors_are_in_the_error_shape(disputer, reader):
    _c, api = disputer
    invoice = posted_invoice()
    other = posted_invoice()

    def post(body, key, pk=invoice.pk):
        return api.post(f"/api/v1/invoices/{pk}/disputes/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert_error(post({"category": "rate", "disputed_amount": "1.00"}, "k404", pk=999_999), 404, "not_found")
    body = assert_error(post({"category": "vibes", "disputed_amount": "-1"}, "k1"), 400, "invalid")
    assert set(body["field_errors"]) == {"category", "disputed_amount"}
    body = assert_error(post({"category": "rate", "disputed_amount": "99999.00"}, "k2"), 400, "invalid")
    assert "disputed_amount" in body["field_errors"]
    foreign = other.lines.first().pk
    body = assert_error(
        post({"category": "rate", "disputed_amount": "5.00", "lines": [{"invoice_line": foreign, "amount": "5"}]},
             "k3"),
        400,
        "invalid",
    )
    assert "lines" in body["field_errors"]
    assert_error(post({"category": "rate", "disputed_amount": "5.00", "owner": "nobody"}, "k4"), 400, "invalid")
    assert post({"category": "rate", "disputed_amount": "5.00"}, "k5").status_code == 201
    assert_error(post({"category": "rate", "disputed_amount": "5.00"}, "k6"), 409, "dispute_open")
    draft = Invoice.objects.create(
        contract=invoice.contract, entity=invoice.entity, client=invoice.client, currency="EUR",
        issue_date=invoice.issue_date, due_date=invoice.due_date,
    )
    assert_error(post({"category": "rate", "disputed_amount": "5.00"}, "k7", pk=draft.pk), 409, "invalid_transition")
    _r, read_only = reader
    assert_error(
        read_only.post(f"/api/v1/invoices/{invoice.pk}/disputes/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k8"),
        403,
        "insufficient_scope",
    )


def test_documents_download_as_stored_bytes(reader):
    invoice = posted_invoice()
    _c, api = reader
    pdf = api.get(f"/api/v1/invoices/{invoice.pk}/pdf", HTTP_ACCEPT="application/pdf")
    assert pdf.status_code == 200, pdf.content[:300]
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert invoice.number in pdf["Content-Disposition"]
    again = api.get(f"/api/v1/invoices/{invoice.pk}/pdf")
    assert again.content == pdf.content and again["ETag"] == pdf["ETag"]
    ubl = api.get(f"/api/v1/invoices/{invoice.pk}/ubl")
    assert ubl.status_code == 200, ubl.content[:500]
    assert b"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" in ubl.content
    assert invoice.number.encode() in ubl.content
    draft = Invoice.objects.create(
        contract=invoice.contract, entity=invoice.entity, client=invoice.client, currency="EUR",
        issue_date=invoice.issue_date, due_date=invoice.due_date,
    )
    assert_error(api.get(f"/api/v1/invoices/{draft.pk}/pdf"), 404, "not_found")
    assert_error(api.get("/api/v1/invoices/999999/ubl"), 404, "not_found")
