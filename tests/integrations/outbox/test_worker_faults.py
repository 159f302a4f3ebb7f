"""Fault injection with the ERP simulator (real HTTP) and a real django-q2 cluster on PostgreSQL.

(a) 500 invoices while the ERP fails 20 % of calls → exactly 500 documents, none twice, none lost;
(b) the worker is SIGKILLed after the ERP stored the document, before the outbox row was marked
    → one document after recovery;
(c) an outage longer than the retry budget → dead letters, on the monitor; finance's retry delivers
    each once.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import connections, transaction
from django.urls import reverse

from billing.models import Invoice
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_enqueue_document, outbox_retry_dead
from integrations.simulator import ErpSimulator
from tests.factories import ContractFactory, UserFactory
from tests.integrations.outbox.factories import approved_invoices
from tests.integrations.outbox.worker import Cluster, Sweeper, wait_for, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

Status = OutboxMessage.Status
N = int(os.environ.get("OUTBOX_FAULT_TEST_INVOICES", "500"))
SWEEP = {"OUTBOX_SWEEP_GRACE_S": 10, "OUTBOX_LEASE_S": 3, "OUTBOX_MAX_ATTEMPTS": 8}


@pytest.fixture
def simulator():
    erp = ErpSimulator("127.0.0.1", 0, seed=2026, retry_after_s=0.2, timeout_sleep_s=1.5, hang_s=30).start()
    yield erp
    erp.stop()


@pytest.fixture
def cluster_factory(tmp_path, simulator):
    started: list[Cluster] = []

    def start(**overrides: str) -> Cluster:
        cluster = Cluster(worker_env(simulator.url, **overrides), tmp_path / "qcluster.log").start()
        print("cluster log:", tmp_path / "qcluster.log")
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def sweeper():
    thread = Sweeper(SWEEP)
    thread.start()
    yield thread
    thread.stop()
    assert not thread.errors, thread.errors


def _approve_and_enqueue(n: int, *, client_erp_id: str = "") -> list[Invoice]:
    """n approved, numbered invoices and their outbox messages, committed (as the approval would)."""
    user = UserFactory(username="approver")
    with transaction.atomic():
        contract = ContractFactory(client__erp_id=client_erp_id)
        invoices = approved_invoices(n, contract=contract)
        for invoice in invoices:
            outbox_enqueue_document(invoice=invoice, user=user)
    return invoices


def _counts() -> dict[str, int]:
    connections["default"].close_if_unusable_or_obsolete()
    return {
        status: OutboxMessage.objects.filter(status=status).count()
        for status in (Status.PENDING, Status.FAILED, Status.DELIVERED, Status.DEAD)
    }


def test_500_invoices_with_20_percent_erp_failures_are_each_posted_exactly_once(
    simulator, cluster_factory, sweeper
):
    simulator.configure(mode="mixed", fail_rate=0.2)
    started = time.monotonic()
    invoices = _approve_and_enqueue(N)
    made = time.monotonic() - started
    cluster = cluster_factory()

    wait_for(lambda: _counts()[Status.DELIVERED] == N + 1,
             timeout=240, interval=1,
             what=lambda: f"501 deliveries (counts now: {_counts()}); sweeper alive {sweeper.is_alive()} "
             f"{sweeper.errors}; cluster log:\n{cluster.log()}")
    elapsed = time.monotonic() - started

    documents = simulator.documents()
    numbers = [d["number"] for d in documents if d["kind"] == "invoice"]
    assert len(numbers) == N and set(numbers) == {i.number for i in invoices}  # none lost, none twice
    assert len([d for d in documents if d["kind"] == "customer"]) == 1
    stats = simulator.state.stats
    assert sum(stats.faults.values()) >= max(1, N // 20), stats.faults  # the ERP really failed calls
    assert stats.stored == N + 1
    by_number = {d["number"]: d["id"] for d in documents}
    posted = Invoice.objects.filter(pk__in=[i.pk for i in invoices])
    assert {i.status for i in posted} == {Invoice.Status.POSTED}  # (the e-mail step is off in these workers)
    assert all(i.erp_id == by_number[i.number] for i in posted)
    assert _counts()[Status.DEAD] == 0
    print(f"\n{N} invoices made in {made:.1f}s, delivered with their customer in {elapsed:.1f}s; "
          f"faults {stats.faults}; replays {stats.replayed}; look-ups {stats.lookups}")


def test_worker_killed_after_the_erp_stored_the_document_leaves_one_document(simulator, cluster_factory, sweeper):
    simulator.configure(mode="hang", fail_rate=1.0)  # store, then hold the answer back
    invoice = _approve_and_enqueue(1, client_erp_id="CUST-KNOWN")[0]
    message = OutboxMessage.objects.get(invoice=invoice)
    first = cluster_factory()

    wait_for(lambda: len(simulator.documents()) == 1, timeout=30, what=lambda: f"the stored document\n{first.log()}")
    message.refresh_from_db()
    assert message.status == Status.PENDING and message.locked_until is not None  # mid-call, not marked
    first.kill()
    simulator.configure(mode="ok")

    cluster_factory()  # a new worker; the sweep finds the message once the dead worker's lease ran out
    wait_for(lambda: OutboxMessage.objects.get(pk=message.pk).status == Status.DELIVERED, timeout=40,
             what=lambda: "delivery after recovery")

    message.refresh_from_db()
    documents = simulator.documents()
    assert len(documents) == 1 and simulator.state.stats.stored == 1
    assert message.external_id == documents[0]["id"]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.POSTED and invoice.erp_id == documents[0]["id"]


def test_outage_longer_than_the_retry_budget_ends_in_dead_letters_that_finance_retries_once(
    simulator, cluster_factory, sweeper, client
):
    simulator.configure(mode="outage")
    invoices = _approve_and_enqueue(4, client_erp_id="CUST-KNOWN")
    cluster_factory(OUTBOX_MAX_ATTEMPTS="3", ERP_CIRCUIT_FAILURES="3", ERP_CIRCUIT_COOLDOWN_S="0.3")

    wait_for(lambda: _counts()[Status.DEAD] == 4, timeout=60, interval=0.5,
             what=lambda: f"4 dead letters ({_counts()})")
    assert simulator.documents() == []

    analyst = UserFactory(username="fa-retry", groups=["finance_analyst"])
    client.force_login(analyst)
    page = client.get(reverse("integrations:monitor"))
    assert page.status_code == 200
    dead = list(OutboxMessage.objects.filter(status=Status.DEAD))
    body = page.content.decode()
    for message in dead:
        assert message.idempotency_key in body

    simulator.configure(mode="ok")
    for message in dead[:2]:  # from the monitor page
        response = client.post(reverse("integrations:outbox_retry", args=[message.pk]), {"reason": "ERP back"})
        assert response.status_code == 302
    for message in dead[2:]:  # the service, as the admin action calls it
        outbox_retry_dead(message=message, user=analyst, reason="ERP back")

    wait_for(lambda: _counts()[Status.DELIVERED] == 4, timeout=40, what=lambda: f"4 deliveries ({_counts()})")
    documents = simulator.documents()
    assert sorted(d["number"] for d in documents) == sorted(i.number for i in invoices)
    assert simulator.state.stats.stored == 4
