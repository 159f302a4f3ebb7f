"""Delivering outbox messages to the ERP simulator over real HTTP, in-process (the worker tests are separate)."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.models import Invoice
from integrations.models import EndpointCircuit, OutboxMessage
from integrations.services.outbox import (
    backoff_delay,
    outbox_deliver,
    outbox_enqueue_document,
    outbox_retry_dead,
    outbox_sweep,
)
from kernel.errors import PermissionDeniedError
from tests.factories import UserFactory
from tests.integrations.outbox.factories import approved_invoices

pytestmark = pytest.mark.django_db
Status = OutboxMessage.Status


def _message(n: int = 1) -> list[OutboxMessage]:
    user = UserFactory()
    return [outbox_enqueue_document(invoice=inv, user=user) for inv in approved_invoices(n)]


def _make_due(message: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - datetime.timedelta(seconds=1))


def test_delivery_posts_the_invoice_with_the_erp_id_and_opens_the_customer(erp, erp_settings):
    message = _message()[0]
    customer = OutboxMessage.objects.get(kind=OutboxMessage.Kind.UPSERT_CUSTOMER)

    assert outbox_deliver(customer.pk) == "delivered"
    assert outbox_deliver(message.pk) == "delivered"

    message.refresh_from_db()
    invoice = Invoice.objects.get(pk=message.invoice_id)
    assert message.status == Status.DELIVERED and message.external_id.startswith("INV-")
    assert invoice.status == Invoice.Status.POSTED and invoice.erp_id == message.external_id
    assert invoice.client.erp_id.startswith("CUST-")
    assert [d["idempotency_key"] for d in erp.documents()] == [customer.idempotency_key, message.idempotency_key]
    log = StateLog.objects.for_(message).get(transition="mark_delivered")
    assert log.by is None and message.external_id in log.description
    assert outbox_deliver(message.pk) == "skipped"  # delivered: a second task does nothing
    assert len(erp.documents()) == 2


def test_5xx_schedules_a_retry_with_backoff_then_delivers_once(erp, erp_settings):
    message = _message()[0]
    erp.configure(mode="error", fail_rate=1.0)
    assert outbox_deliver(message.pk) == "failed"
    message.refresh_from_db()
    assert message.status == Status.FAILED and message.attempts == 1 and message.last_status_code in (500, 502, 503)
    assert message.next_attempt_at is not None and message.locked_until is None
    assert outbox_deliver(message.pk) in ("skipped", "failed")  # not due yet (or due: the backoff is tiny)

    erp.configure(mode="ok")
    _make_due(message)
    assert outbox_deliver(message.pk) == "delivered"
    assert len(erp.documents()) == 1


def test_429_honours_retry_after(erp, erp_settings):
    message = _message()[0]
    erp.configure(mode="throttle", fail_rate=1.0, retry_after_s=120)
    before = timezone.now()
    assert outbox_deliver(message.pk) == "failed"
    message.refresh_from_db()
    assert message.last_status_code == 429
    assert message.next_attempt_at >= before + datetime.timedelta(seconds=119)
    assert EndpointCircuit.objects.filter(consecutive_failures__gt=0).count() == 0  # a throttle is no outage


@pytest.mark.parametrize("fault", ["drop", "timeout"])
def test_unclear_outcome_is_looked_up_before_resending(erp, erp_settings, fault):
    """The ERP stored the document but the answer never came: the next attempt finds it, sends nothing."""
    message = _message()[0]
    erp.configure(mode=fault, fail_rate=1.0)
    assert outbox_deliver(message.pk) == "failed"
    message.refresh_from_db()
    assert message.last_error.startswith("unclear")
    assert len(erp.documents()) == 1

    erp.configure(mode="ok")
    stored_before = erp.state.stats.stored
    _make_due(message)
    assert outbox_deliver(message.pk) == "delivered"
    message.refresh_from_db()
    assert message.external_id == erp.documents()[0]["id"]
    assert erp.state.stats.stored == stored_before and erp.state.stats.replayed == 0  # found by look-up


def test_4xx_is_a_dead_letter_at_once(erp, erp_settings):
    message = _message()[0]
    OutboxMessage.objects.filter(pk=message.pk).update(payload="not a document")  # the ERP refuses it
    assert outbox_deliver(message.pk) == "dead"
    message.refresh_from_db()
    assert (message.status, message.last_status_code, message.attempts) == (Status.DEAD, 422, 1)
    assert message.last_error.startswith("permanent") and erp.documents() == []


def test_max_attempts_then_dead_letter_then_finance_retries_once(erp, erp_settings):
    message = _message()[0]
    erp.configure(mode="outage")
    erp_settings.ERP_CIRCUIT_FAILURES = 100  # this test is about attempts, not the circuit
    for expected in ("failed", "failed", "dead"):
        _make_due(message)
        assert outbox_deliver(message.pk) == expected
    message.refresh_from_db()
    assert message.status == Status.DEAD and message.attempts == 3

    with pytest.raises(PermissionDeniedError):
        outbox_retry_dead(message=message, user=UserFactory(groups=["auditor"]), reason="Try again")
    analyst = UserFactory(groups=["finance_analyst"])
    erp.configure(mode="ok")
    outbox_retry_dead(message=message, user=analyst, reason="ERP back after the outage")
    message.refresh_from_db()
    assert message.status == Status.PENDING and message.attempts == 0
    assert StateLog.objects.for_(message).get(transition="retry").by == analyst
    assert outbox_deliver(message.pk) == "delivered"
    assert len(erp.documents()) == 1


def test_circuit_opens_postpones_without_counting_then_half_open_probe_closes_it(erp, erp_settings):
    messages = _message(5)
    erp.configure(mode="outage")
    for m in messages[:3]:
        assert outbox_deliver(m.pk) == "failed"
    circuit = EndpointCircuit.objects.get(endpoint="erp")
    assert circuit.state == EndpointCircuit.State.OPEN and circuit.open_until > timezone.now()

    requests_before = erp.state.stats.requests
    assert outbox_deliver(messages[3].pk) == "postponed"
    messages[3].refresh_from_db()
    assert messages[3].attempts == 0 and messages[3].status == Status.PENDING
    assert messages[3].next_attempt_at >= circuit.open_until
    assert erp.state.stats.requests == requests_before  # nothing went out

    erp.configure(mode="ok")
    EndpointCircuit.objects.update(open_until=timezone.now() - datetime.timedelta(seconds=1))  # cool-down over
    assert outbox_deliver(messages[4].pk) == "delivered"  # the probe
    assert EndpointCircuit.objects.get().state == EndpointCircuit.State.CLOSED


def test_lease_keeps_a_second_worker_off_until_it_expires(erp, erp_settings):
    message = _message()[0]
    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=timezone.now() + datetime.timedelta(seconds=60))
    assert outbox_deliver(message.pk) == "skipped"
    OutboxMessage.objects.filter(pk=message.pk).update(locked_until=timezone.now() - datetime.timedelta(seconds=1))
    assert outbox_deliver(message.pk) == "delivered"  # the worker holding it died: taken over (after a look-up)
    assert len(erp.documents()) == 1


def test_sweep_queues_due_and_lost_messages_once_with_a_token(erp, erp_settings, monkeypatch):
    queued = []
    monkeypatch.setattr(
        "integrations.services.outbox.enqueue_delivery", lambda pk, token=None: queued.append((pk, token))
    )
    fresh, lost, failed, later = _message(4)
    old = timezone.now() - datetime.timedelta(minutes=5)
    OutboxMessage.objects.filter(pk=lost.pk).update(created_at=old)
    OutboxMessage.objects.filter(pk=failed.pk).update(status=Status.FAILED, attempts=1, next_attempt_at=old)
    OutboxMessage.objects.filter(pk=later.pk).update(
        status=Status.FAILED, attempts=1, next_attempt_at=timezone.now() + datetime.timedelta(minutes=5))
    OutboxMessage.objects.exclude(pk__in=[m.pk for m in (fresh, lost, failed, later)]).delete()

    assert outbox_sweep() == 2
    assert sorted(pk for pk, _ in queued) == sorted([lost.pk, failed.pk])
    assert outbox_sweep() == 0  # queued: not again within the grace period
    # The sweep's token lets its task claim the message now; an older task without it cannot.
    pk, token = queued[0]
    assert outbox_deliver(pk) == "skipped"
    assert outbox_deliver(pk, token) == "delivered"


def test_backoff_is_full_jitter_under_the_cap(settings):
    settings.OUTBOX_BACKOFF_BASE_S, settings.OUTBOX_BACKOFF_CAP_S = 10, 60
    samples = [backoff_delay(6) for _ in range(200)]
    assert all(0 <= s <= 60 for s in samples) and max(samples) > 30 and min(samples) < 30
    assert all(0 <= backoff_delay(1) <= 10 for _ in range(50))


def test_bearer_token_is_sent_and_required(erp, erp_settings):
    erp.configure(token="s3cret-token")
    message = _message()[0]
    erp_settings.ERP_AUTH, erp_settings.ERP_TOKEN = "bearer", "wrong"
    assert outbox_deliver(message.pk) == "dead"  # 401: refused for good, nothing stored
    assert erp.documents() == []
    erp_settings.ERP_TOKEN = "s3cret-token"
    other = _message()[0]
    assert outbox_deliver(other.pk) == "delivered"


def test_oauth2_client_credentials_token_is_fetched_once_and_reused(erp, erp_settings):
    erp.configure(oauth_client_id="billable", oauth_client_secret="cs-123")
    erp_settings.ERP_AUTH = "oauth2"
    erp_settings.ERP_OAUTH_CLIENT_ID, erp_settings.ERP_OAUTH_CLIENT_SECRET = "billable", "cs-123"
    messages = _message(3)
    for m in messages:
        assert outbox_deliver(m.pk) == "delivered"
    assert len(erp.state.tokens) == 1  # one token for every call until it expires
    erp.state.tokens.clear()  # revoked on the ERP side: a 401 fetches a new one once
    last = _message(1)[0]
    assert outbox_deliver(last.pk) == "delivered" and len(erp.state.tokens) == 1


def test_approval_with_erp_posting_writes_the_message_and_keeps_the_invoice_approved(erp, erp_settings):
    """The real approval path: numbered, message in the same transaction, posted only on acknowledgement."""
    from approvals.services.defaults import ensure_approval_defaults
    from billing.services.invoices import invoice_approve
    from tests.factories import InvoiceFactory, InvoiceLineFactory

    invoice = InvoiceFactory(status=Invoice.Status.PENDING_APPROVAL, subtotal="800.00", total="800.00",
                             prepared_by=UserFactory())
    InvoiceLineFactory(invoice=invoice)
    approver = UserFactory(groups=["finance_analyst"])  # the policy under 10,000: one analyst step
    ensure_approval_defaults()
    invoice = invoice_approve(invoice=invoice, user=approver)
    assert invoice.status == Invoice.Status.APPROVED and invoice.number
    message = OutboxMessage.objects.get(invoice=invoice)
    assert message.idempotency_key == f"post_invoice:{invoice.number}"
    assert message.payload["totals"]["total"] == "800.00"

    OutboxMessage.objects.filter(kind=OutboxMessage.Kind.UPSERT_CUSTOMER).delete()
    assert outbox_deliver(message.pk) == "delivered"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.POSTED and invoice.erp_id == erp.documents()[0]["id"]
