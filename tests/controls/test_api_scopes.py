"""The REST API: scopes per integration client, a client's own source, idempotency — every way around them.

Each write endpoint is called by a client holding every scope but the one it needs (one attempt per
scope), by a revoked token, by a logged-in staff session without a token; a PSA client tries to write
another source's records and to push time as already approved; a retried POST tries to act twice.
Controls: `api-scopes`, `api-source`, `idempotency`, `policy-route` in docs/controls.md.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from billing.models import BillingRun, Client, Payment, TimeEntry
from disputes.models import Dispute
from integrations.services.clients import SCOPES, integration_client_create, integration_client_revoke
from kernel.roles import FINANCE_CONTROLLER
from tests.controls.conftest import log_in
from tests.factories import ClientFactory, PersonFactory, ProjectFactory, UserFactory
from tests.integrations.api.factories import posted_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


def _api(scopes, name="intruder", **kwargs) -> tuple:
    client, token, _secret = integration_client_create(name=name, scopes=list(scopes), **kwargs)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, api


def _run_body(_world):
    return {"period": "2025-03", "run_date": "2025-04-01"}


def _payment_body(world):
    invoice = world["invoice"]
    return {"invoice_number": invoice.number, "amount": "10.00", "currency": invoice.currency,
            "date": "2025-04-20", "external_reference": "PAY-INTRUDER-1"}


def _dispute_body(_world):
    return {"reason": "Wrong hours", "category": "hours"}


def _time_body(world):
    return {"external_id": "T-INTRUDER-1", "source": "psa", "person_code": world["person"].code,
            "project_code": world["project"].code, "date": "2025-03-10", "hours": "4", "description": "x"}


def _client_body(_world):
    return {"external_id": "CL-INTRUDER-1", "source": "crm", "code": "CLINTR", "legal_name": "Intruder AG",
            "country": "DE", "currency": "EUR"}


#: endpoint → (the scope it needs, path from the world, body, what must not grow)
WRITES = {
    "billing-runs": ("write:billing", lambda w: "/api/v1/billing-runs/", _run_body, BillingRun),
    "payments": ("write:payments", lambda w: "/api/v1/payments/", _payment_body, Payment),
    "disputes": ("write:disputes", lambda w: f"/api/v1/invoices/{w['invoice'].pk}/disputes/", _dispute_body, Dispute),
    "time-entries": ("write:time", lambda w: "/api/v1/time-entries/", _time_body, TimeEntry),
    "clients": ("write:masterdata", lambda w: "/api/v1/clients/", _client_body, Client),
}
ATTEMPTS = [(endpoint, scope) for endpoint, (needed, *_rest) in WRITES.items() for scope in SCOPES if scope != needed]


@pytest.fixture
def world():
    project = ProjectFactory()
    return {"invoice": posted_invoice(), "project": project, "person": PersonFactory()}


@pytest.mark.control("api-scopes")
@pytest.mark.parametrize(("endpoint", "scope"), ATTEMPTS, ids=[f"{e}-with-{s}" for e, s in ATTEMPTS])
def test_a_write_without_its_scope_is_refused_and_writes_nothing(world, endpoint, scope):
    _needed, path, body, model = WRITES[endpoint]
    before = model.objects.count()
    _client, api = _api([scope])

    response = api.post(path(world), body(world), format="json", HTTP_IDEMPOTENCY_KEY=f"k-{endpoint}")

    assert response.status_code == 403, response.content
    assert model.objects.count() == before


@pytest.mark.control("api-scopes")
@pytest.mark.parametrize("endpoint", sorted(WRITES))
def test_a_revoked_token_or_a_staff_session_cannot_write(world, endpoint):
    needed, path, body, model = WRITES[endpoint]
    before = model.objects.count()
    client, api = _api([needed], name="revoked")
    integration_client_revoke(name=client.name)
    session = log_in(APIClient(), UserFactory(username="api-staff", groups=[FINANCE_CONTROLLER], is_staff=True))

    revoked = api.post(path(world), body(world), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    by_session = session.post(path(world), body(world), format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert revoked.status_code == 401 and by_session.status_code in (401, 403)
    assert model.objects.count() == before


@pytest.mark.control("api-scopes")
@pytest.mark.parametrize("scope", sorted(s for s in SCOPES if s != "read:billing"))
def test_reading_invoices_needs_read_billing(world, scope):
    _client, api = _api([scope])
    assert api.get("/api/v1/invoices/").status_code == 403
    assert api.get(f"/api/v1/invoices/{world['invoice'].pk}/").status_code == 403


# --- a client writes its own source only ----------------------------------------------------------


@pytest.mark.control("api-source")
def test_a_client_cannot_write_another_sources_records(world):
    _client, api = _api(["write:masterdata"], name="psa-only", source="psa")
    theirs = ClientFactory(code="CRMOWN", source="crm", external_id="CL-CRM-1", legal_name="Theirs AG")

    as_other = api.post("/api/v1/clients/", {**_client_body(world), "source": "crm"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="src-1")
    taking_code = api.put("/api/v1/clients/CL-CRM-1/", {"code": "CRMOWN", "legal_name": "Hijacked",
                                                       "country": "DE", "currency": "EUR"},
                          format="json", HTTP_IDEMPOTENCY_KEY="src-2")

    assert as_other.status_code in (400, 403, 409), as_other.content
    assert taking_code.status_code in (400, 403, 409, 422), taking_code.content
    theirs.refresh_from_db()
    assert theirs.legal_name == "Theirs AG" and theirs.source == "crm"


@pytest.mark.control("policy-route")
@pytest.mark.parametrize("status", ["approved", "invoiced"])
def test_the_psa_cannot_push_time_past_its_approval(world, status):
    _client, api = _api(["write:time"], name="psa-time", source="psa")

    api.post("/api/v1/time-entries/", {**_time_body(world), "status": status}, format="json",
             HTTP_IDEMPOTENCY_KEY=f"st-{status}")

    assert not TimeEntry.objects.filter(status__in=["approved", "invoiced"], external_id="T-INTRUDER-1").exists()


# --- idempotency ---------------------------------------------------------------------------------------


@pytest.mark.control("idempotency")
@pytest.mark.parametrize("endpoint", ["billing-runs", "payments"])
def test_a_replayed_post_acts_once(world, endpoint, monkeypatch):
    monkeypatch.setattr("integrations.api.billing_runs.async_task", lambda *a, **k: None, raising=False)
    needed, path, body, model = WRITES[endpoint]
    _client, api = _api([needed, "read:billing"], name="replayer")
    before = model.objects.count()

    first = api.post(path(world), body(world), format="json", HTTP_IDEMPOTENCY_KEY="same-key")
    second = api.post(path(world), body(world), format="json", HTTP_IDEMPOTENCY_KEY="same-key")
    other = api.post(path(world), {**body(world), "run_date": "2025-04-02", "amount": "11.00"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="same-key")

    assert first.status_code in (200, 201, 202), first.content
    assert second.status_code == first.status_code and second["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert model.objects.count() == before + 1


@pytest.mark.control("idempotency")
def test_a_post_without_a_key_does_nothing(world):
    _client, api = _api(["write:payments"], name="keyless")
    before = Payment.objects.count()

    response = api.post("/api/v1/payments/", _payment_body(world), format="json")

    assert response.status_code == 400
    assert Payment.objects.count() == before


@pytest.mark.control("idempotency")
def test_a_payment_reference_is_recorded_once_even_under_another_key(world):
    _client, api = _api(["write:payments"], name="double-pay")
    api.post("/api/v1/payments/", _payment_body(world), format="json", HTTP_IDEMPOTENCY_KEY="p-1")

    api.post("/api/v1/payments/", _payment_body(world), format="json", HTTP_IDEMPOTENCY_KEY="p-2")

    total = sum(p.amount for p in Payment.objects.filter(external_reference__startswith="PAY-INTRUDER-1"))
    assert total == Decimal("10.00")

