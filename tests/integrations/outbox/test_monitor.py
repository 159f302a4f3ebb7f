"""The integration monitor page: who sees it, what it shows, the retry, bounded queries."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_fsm_log.models import StateLog

from integrations.models import EndpointCircuit, OutboxMessage
from integrations.services.outbox import outbox_enqueue_document
from tests.factories import UserFactory
from tests.integrations.outbox.factories import approved_invoices

pytestmark = pytest.mark.django_db
Status = OutboxMessage.Status


def _dead_letters(n: int) -> list[OutboxMessage]:
    user = UserFactory()
    messages = [outbox_enqueue_document(invoice=inv, user=user) for inv in approved_invoices(n)]
    for m in messages:
        m.attempts, m.last_error, m.last_status_code, m.correlation_id = 8, "retryable: HTTP 503", 503, f"cid-{m.pk}"
        m.mark_dead(by=None, description="Attempt 8: retryable, HTTP 503")
        m.save()
    return messages


@pytest.mark.parametrize(("role", "status"), [
    ("finance_analyst", 200), ("finance_controller", 200), ("billing_admin", 200), ("auditor", 200),
    ("collections", 403), ("project_manager", 403), ("consultant", 403),
])
def test_who_sees_the_monitor(client, role, status):
    client.force_login(UserFactory(groups=[role]))
    assert client.get(reverse("integrations:monitor")).status_code == status


def test_monitor_shows_counts_dead_letters_failures_and_circuits(client):
    dead = _dead_letters(2)
    EndpointCircuit.objects.update_or_create(
        endpoint="erp", defaults={"state": EndpointCircuit.State.OPEN, "consecutive_failures": 5,
                                  "last_failure": "HTTP 503"})
    client.force_login(UserFactory(groups=["finance_analyst"]))
    body = client.get(reverse("integrations:monitor")).content.decode()
    for message in dead:
        assert message.idempotency_key in body and f"cid-{message.pk}" in body
    assert "Open" in body and "Retry</button>" in body
    assert "Attempt 8: retryable, HTTP 503" in body  # recent failures, from the transition log


def test_auditor_reads_without_retry_buttons_and_cannot_post(client):
    message = _dead_letters(1)[0]
    client.force_login(UserFactory(groups=["auditor"]))
    body = client.get(reverse("integrations:monitor")).content.decode()
    assert message.idempotency_key in body and "Retry</button>" not in body
    response = client.post(reverse("integrations:outbox_retry", args=[message.pk]), {"reason": "x"})
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == Status.DEAD


def test_finance_retry_needs_a_reason_and_is_audited(client, django_capture_on_commit_callbacks):
    message = _dead_letters(1)[0]
    analyst = UserFactory(groups=["finance_analyst"])
    client.force_login(analyst)
    url = reverse("integrations:outbox_retry", args=[message.pk])
    client.post(url, {"reason": " "})
    message.refresh_from_db()
    assert message.status == Status.DEAD
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {"reason": "ERP back after maintenance"})
    assert response.status_code == 302 and response["Location"] == reverse("integrations:monitor")
    message.refresh_from_db()
    assert message.status == Status.PENDING and message.attempts == 0
    log = StateLog.objects.for_(message).get(transition="retry")
    assert log.by == analyst and log.description == "ERP back after maintenance"
    assert len(callbacks) == 1  # its delivery task is queued after commit


def test_monitor_queries_do_not_grow_with_rows(client, django_assert_max_num_queries):
    client.force_login(UserFactory(groups=["finance_controller"]))
    _dead_letters(1)
    with django_assert_max_num_queries(30) as few:
        client.get(reverse("integrations:monitor"))
    _dead_letters(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("integrations:monitor"))
    assert response.status_code == 200
