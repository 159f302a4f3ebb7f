"""A real django-q2 cluster (2 workers) posting to a real Tryton: the posting rate, and a worker killed mid-call.

The worker is SIGKILLed after Tryton committed (and posted) the invoice but before the outbox recorded it:
a fault-injecting proxy holds Tryton's answer back. A new cluster picks the message up once the dead
worker's lease ran out, finds the invoice in Tryton by Billable's number, and sends nothing twice.
"""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from billing.models import Invoice
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_enqueue_document
from tests.factories import UserFactory
from tests.integrations.outbox.worker import Cluster, Sweeper, wait_for, worker_env
from tests.integrations.tryton.factories import approved_document, client_of, demo_entities
from tests.integrations.tryton.proxy import TrytonProxy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
Status = OutboxMessage.Status


def _cluster_env(url: str, tryton_server, **overrides: str) -> dict[str, str]:
    return worker_env(url, ERP_ADAPTER="integrations.erp.tryton.TrytonErpAdapter",
                      TRYTON_DATABASE=tryton_server.database, TRYTON_USER=tryton_server.user,
                      TRYTON_PASSWORD=tryton_server.password, ERP_TIMEOUT_S="90", Q_WORKERS="2", Q_TIMEOUT="120",
                      Q_RETRY="150", **overrides)


@pytest.fixture
def clusters(tmp_path):
    started: list[Cluster] = []

    def start(env: dict[str, str]) -> Cluster:
        cluster = Cluster(env, tmp_path / "qcluster.log").start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def _approve(specs: list[tuple[str, int]]) -> list[Invoice]:
    user = UserFactory(username="approver")
    entities = demo_entities()
    invoices = []
    with transaction.atomic():
        for code, variant in specs:
            client, category, rate = client_of(entities[code], variant)
            invoice = approved_document(entities[code], client, category=category, rate=rate,
                                        lines=[("Advisory", "5.00", "220.0000"), ("Expenses", "1", "64.10")])
            outbox_enqueue_document(invoice=invoice, user=user)
            invoices.append(invoice)
    return invoices


def _delivered() -> int:
    return OutboxMessage.objects.filter(status=Status.DELIVERED).count()


def test_two_workers_post_invoices_of_the_three_entities_and_the_rate_is_measured(tryton, tryton_server, clusters):
    specs = [(code, i) for i in range(3) for code in ("NWB", "TLL", "HUD")]  # 9 invoices, 6 customers
    sweeper = Sweeper({"OUTBOX_SWEEP_GRACE_S": 30, "OUTBOX_LEASE_S": 300})
    sweeper.start()
    try:
        invoices = _approve(specs)
        total = OutboxMessage.objects.count()
        started = time.monotonic()
        cluster = clusters(_cluster_env(tryton_server.url, tryton_server, OUTBOX_LEASE_S="300"))
        wait_for(lambda: _delivered() == total, timeout=400, interval=1,
                 what=lambda: f"{total} deliveries ({_delivered()} so far)\n{cluster.log()}")
        elapsed = time.monotonic() - started
    finally:
        sweeper.stop()
    print(f"\n{len(invoices)} invoices and {total - len(invoices)} customers posted to Tryton by 2 django-q2 workers "
          f"in {elapsed:.1f}s (cluster start included): {total / elapsed:.2f} documents/s")
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.status == Invoice.Status.POSTED
        (row,) = tryton.call("model.account.invoice.read", [int(invoice.erp_id)], ["reference", "state"])
        assert (row["reference"], row["state"]) == (invoice.number, "posted")
    assert OutboxMessage.objects.filter(status=Status.DEAD).count() == 0


def test_worker_killed_after_tryton_posted_the_invoice_ends_with_exactly_one_tryton_invoice(
    tryton, tryton_server, clusters
):
    proxy = TrytonProxy(tryton_server.url, hang_s=120).start()
    sweeper = Sweeper({"OUTBOX_SWEEP_GRACE_S": 10, "OUTBOX_LEASE_S": 40})
    sweeper.start()
    try:
        (invoice,) = _approve([("NWB", 1)])
        message = OutboxMessage.objects.get(invoice=invoice)
        proxy.arm("model.account.invoice.post", "hang")  # Tryton posts it; the answer never comes
        first = clusters(_cluster_env(proxy.url, tryton_server, OUTBOX_LEASE_S="40"))
        wait_for(lambda: proxy.faulted == ["hang:model.account.invoice.post"], timeout=180,
                 what=lambda: f"the post held back\n{first.log()}")
        stored = tryton.call("model.account.invoice.search_read", [("reference", "=", invoice.number)], 0, None,
                             None, ["state"])
        assert [s["state"] for s in stored] == ["posted"]
        message.refresh_from_db()
        assert message.status in (Status.PENDING, Status.FAILED)  # mid-call: Tryton has it, the outbox does not know
        first.kill()

        clusters(_cluster_env(proxy.url, tryton_server, OUTBOX_LEASE_S="40"))
        wait_for(lambda: OutboxMessage.objects.get(pk=message.pk).status == Status.DELIVERED, timeout=180,
                 what=lambda: f"delivery after recovery ({OutboxMessage.objects.get(pk=message.pk).last_error})")
    finally:
        sweeper.stop()
        proxy.stop()
    stored = tryton.call("model.account.invoice.search_read", [("reference", "=", invoice.number)], 0, None, None,
                         ["state"])
    assert len(stored) == 1 and stored[0]["state"] == "posted"
    message.refresh_from_db()
    invoice.refresh_from_db()
    assert message.external_id == str(stored[0]["id"]) == invoice.erp_id
    assert invoice.status == Invoice.Status.POSTED
    assert proxy.calls.count("model.account.invoice.create") == 1
