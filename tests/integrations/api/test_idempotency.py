"""Idempotency-Key on POST: replay, 409 on reuse, 409 while in progress, and never a double effect."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import DatabaseError, connections, transaction

from billing.models import BillingRun
from integrations.api.idempotency import lock_key
from integrations.models import IdempotencyRecord
from tests.factories import ContractFactory

from .helpers import assert_error

pytestmark = pytest.mark.django_db
RUNS = "/api/v1/billing-runs/"
BODY = {"period": "2025-03", "run_date": "2025-04-01"}


@pytest.fixture
def enqueue():
    with mock.patch("billing.services.billing_run.async_task") as patched:
        yield patched


def post(api, body=BODY, key="key-0001", path=RUNS, **extra):
    return api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def test_same_key_and_body_replays_the_first_answer_without_a_second_run(
    writer, enqueue, django_capture_on_commit_callbacks
):
    client, api = writer
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api)
        second = post(api, body={"run_date": "2025-04-01", "period": "2025-03"})  # same JSON, other key order
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert BillingRun.objects.count() == 1
    enqueue.assert_called_once()
    record = IdempotencyRecord.objects.get(client=client, key="key-0001")
    assert record.status_code == 202 and record.path == RUNS and record.completed_at


def test_same_key_with_another_body_is_409_and_changes_nothing(writer, enqueue):
    _client, api = writer
    assert post(api).status_code == 202
    body = assert_error(post(api, body={**BODY, "run_date": "2025-04-02"}), 409, "idempotency_key_reused")
    assert "another request" in body["message"]
    assert BillingRun.objects.count() == 1


def test_keys_are_per_client(writer, make_client, enqueue):
    from .conftest import bearer

    _c, api = writer
    _other, token = make_client("other", ("write:billing",))
    assert post(api).status_code == 202
    assert post(bearer(token)).status_code == 202  # the same key of another client is another operation
    assert BillingRun.objects.count() == 2


def test_a_post_without_a_key_is_refused_and_does_nothing(writer, enqueue):
    _c, api = writer
    response = api.post(RUNS, BODY, format="json")
    body = assert_error(response, 400, "idempotency_key_missing")
    assert "Idempotency-Key" in body["field_errors"]
    assert_error(post(api, key="has spaces in it"), 400, "idempotency_key_invalid")
    assert not BillingRun.objects.exists()


def test_a_refused_request_stores_nothing_so_the_key_can_be_retried_fixed(writer, enqueue):
    ContractFactory(code="C-REAL")
    _c, api = writer
    refused = post(api, body={**BODY, "contract_codes": ["C-NOPE"]}, key="retry-me")
    body = assert_error(refused, 400, "invalid")
    assert body["field_errors"] == {"contract_codes": ["Unknown contract(s): C-NOPE."]}
    assert not IdempotencyRecord.objects.exists()
    accepted = post(api, body={**BODY, "contract_codes": ["C-REAL"]}, key="retry-me")
    assert accepted.status_code == 202
    assert BillingRun.objects.get().contract_codes == ["C-REAL"]


def test_the_record_and_the_change_commit_together_or_not_at_all(writer, enqueue, django_capture_on_commit_callbacks):
    """If storing the answer fails, the billing run it made is rolled back and no task is queued."""
    _c, api = writer
    with (
        mock.patch.object(IdempotencyRecord.objects, "create", side_effect=DatabaseError("disk full")),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        response = post(api)
    assert_error(response, 500, "server_error")
    assert not BillingRun.objects.exists()
    assert callbacks == []
    enqueue.assert_not_called()


@pytest.mark.postgres
def test_a_concurrent_request_with_the_same_key_is_told_in_progress(writer, enqueue):
    client, api = writer
    locked, release = threading.Event(), threading.Event()

    def first_request_holding_the_key():
        connection = connections["default"]
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(client.pk, "busy-key")])
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=first_request_holding_the_key)
    worker.start()
    try:
        assert locked.wait(10)
        body = assert_error(post(api, key="busy-key"), 409, "in_progress")
        assert "retry" in body["message"]
        assert not BillingRun.objects.exists()
    finally:
        release.set()
        worker.join(10)
    assert post(api, key="busy-key").status_code == 202  # once the first is done, the key works
