"""Inbound-sync API: single and bulk upserts, idempotent replay, scopes, source, lists with bounded queries."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from billing.models import Client, TimeEntry
from integrations.models import IdempotencyRecord, ImportBatch
from integrations.services.clients import integration_client_create
from tests.factories import InvoiceLineFactory, TimeEntryFactory

pytestmark = pytest.mark.django_db

TIME = "/api/v1/time-entries/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def psa(db):
    client, token, _secret = integration_client_create(name="psa-sync", scopes=["write:time", "read:masterdata"],
                                                       source="psa")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, api


@pytest.fixture
def crm(db):
    client, token, _secret = integration_client_create(name="crm-sync", scopes=["write:masterdata",
                                                                                "read:masterdata"], source="crm")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, api


def entry(ext: str, **overrides) -> dict:
    return {"external_id": ext, "person_external_id": "psa-anna", "project_code": "PRJ-A", "date": "2025-03-10",
            "hours": "2.5", "description": "Workshop", **overrides}


def post(api, path, body, key):
    return api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_upsert_one_time_entry_created_then_unchanged_under_the_service_user(world, psa):
    client, api = psa
    first = post(api, TIME, entry("t1"), "k-1")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["result"] == "created" and body["record"]["status"] == "submitted"
    assert body["record"]["hours"] == "2.50" and body["record"]["project_code"] == "PRJ-A"
    row = TimeEntry.objects.get(source="psa", external_id="t1")
    assert row.history.get().history_user == client.user
    second = post(api, TIME, entry("t1"), "k-2")
    assert second.status_code == 200 and second.json()["result"] == "unchanged"
    assert ImportBatch.objects.count() == 0  # single upserts are not imports


def test_idempotent_replay_and_key_reuse(world, psa):
    _client, api = psa
    first = post(api, TIME, entry("t1"), "same-key")
    replay = post(api, TIME, entry("t1"), "same-key")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    reused = post(api, TIME, entry("t1", hours="3"), "same-key")
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"
    missing = api.post(TIME, entry("t2"), format="json")
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_missing"
    assert TimeEntry.objects.count() == 1


def test_a_refused_record_is_an_error_in_the_one_shape_and_stores_no_key(world, psa):
    _client, api = psa
    bad = post(api, TIME, entry("t1", hours="25"), "k-bad")
    assert bad.status_code == 400
    assert set(bad.json()) == {"code", "message", "field_errors"} and "hours" in bad.json()["field_errors"]
    assert not IdempotencyRecord.objects.exists()
    line = InvoiceLineFactory(invoice__contract=world["project"].contract)
    TimeEntryFactory(person=world["person"], project=world["project"], date=datetime.date(2025, 3, 10),
                     hours=Decimal("2.5"), source="psa", external_id="t9", status="invoiced", invoice_line=line)
    invoiced = api.put(f"{TIME}t9/", entry("t9", hours="4"), format="json")
    assert invoiced.status_code == 409 and invoiced.json()["code"] == "already_invoiced"


def test_put_by_external_id_and_get(world, psa):
    _client, api = psa
    created = api.put(f"{TIME}t5/", {k: v for k, v in entry("t5").items() if k != "external_id"}, format="json")
    assert created.status_code == 201, created.content
    updated = api.put(f"{TIME}t5/", entry("t5", hours="3"), format="json")
    assert updated.status_code == 200 and updated.json()["result"] == "updated"
    got = api.get(f"{TIME}t5/")
    assert got.status_code == 200 and got.json()["hours"] == "3.00"
    assert api.get(f"{TIME}nope/").status_code == 404
    mismatch = api.put(f"{TIME}t5/", entry("other"), format="json")
    assert mismatch.status_code == 400


def test_bulk_all_or_nothing_then_partial(world, psa):
    client, api = psa
    records = [entry("b1"), entry("b2", project_code="NOPE"), entry("b3")]
    failed = post(api, f"{TIME}bulk/", {"records": records}, "bulk-1")
    assert failed.status_code == 200, failed.content
    body = failed.json()
    assert (body["status"], body["saved"], body["summary"]["error"]) == ("failed", False, 1)
    assert [r["result"] for r in body["results"]] == ["created", "error", "created"]
    assert body["results"][1]["field_errors"] == {"project_code": ["Not found."]}
    assert TimeEntry.objects.count() == 0
    batch = ImportBatch.objects.get(pk=body["import_id"])
    assert (batch.kind, batch.integration_client, batch.status) == ("api_bulk", client, "failed")

    kept = post(api, f"{TIME}bulk/?partial=true", {"records": records}, "bulk-2")
    assert kept.json()["status"] == "partial" and kept.json()["saved"] is True
    assert set(TimeEntry.objects.values_list("external_id", flat=True)) == {"b1", "b3"}
    replay = post(api, f"{TIME}bulk/?partial=true", {"records": records}, "bulk-2")
    assert replay["Idempotent-Replayed"] == "true" and ImportBatch.objects.count() == 2


def test_bulk_limits_and_shape(world, psa):
    _client, api = psa
    too_many = post(api, f"{TIME}bulk/", {"records": [entry(str(i)) for i in range(1001)]}, "big")
    assert too_many.status_code == 400 and too_many.json()["code"] == "too_many_records"
    assert post(api, f"{TIME}bulk/", [entry("x")], "shape").status_code == 400


def test_scopes_and_source(world, psa, crm):
    _psa_client, psa_api = psa
    _crm_client, crm_api = crm
    assert post(crm_api, TIME, entry("t1"), "k").status_code == 403  # no write:time
    assert post(psa_api, "/api/v1/clients/", {"external_id": "c1"}, "k").status_code == 403
    other_source = post(psa_api, TIME, {**entry("t1"), "source": "crm"}, "k2")
    assert other_source.status_code == 403 and other_source.json()["code"] == "source_not_allowed"


def test_masterdata_bulk_and_lists_with_bounded_queries(crm, django_assert_max_num_queries):
    _client, api = crm
    records = [{"external_id": f"c{i}", "code": f"CL-{i}", "legal_name": f"Client {i}", "country": "DE",
                "currency": "EUR", "vat_id": "DE274158609"} for i in range(3)]
    response = post(api, "/api/v1/clients/bulk/", {"records": records}, "clients-1")
    assert response.json()["summary"]["created"] == 3, response.content
    assert Client.objects.get(code="CL-1").source == "crm"
    with django_assert_max_num_queries(6):
        small = api.get("/api/v1/clients/?page_size=2")
    assert small.status_code == 200 and len(small.json()["results"]) == 2 and small.json()["next"]
    more = [{**r, "external_id": f"d{i}", "code": f"DL-{i}"} for i, r in enumerate(records * 10)]
    assert post(api, "/api/v1/clients/bulk/", {"records": more}, "clients-2").json()["summary"]["created"] == 30
    with django_assert_max_num_queries(6):
        big = api.get("/api/v1/clients/?page_size=50")
    assert len(big.json()["results"]) == 33
    filtered = api.get("/api/v1/clients/?external_id=c1,c2")
    assert {c["code"] for c in filtered.json()["results"]} == {"CL-1", "CL-2"}


def test_contract_list_queries_do_not_grow_with_rates(crm, django_assert_max_num_queries):
    from tests.factories import ContractFactory, ContractRateFactory

    _client, api = crm
    for i in range(8):
        contract = ContractFactory(code=f"C-L{i}", source="crm", external_id=f"k{i}")
        ContractRateFactory(contract=contract)
        ContractRateFactory(contract=contract, rate=Decimal("130"), effective_from=datetime.date(2025, 1, 1))
    with django_assert_max_num_queries(8):
        response = api.get("/api/v1/contracts/")
    assert response.status_code == 200 and len(response.json()["results"]) == 8
    assert len(response.json()["results"][0]["rates"]) == 2
