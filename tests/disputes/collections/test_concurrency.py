"""Races dunning must win (PostgreSQL): parallel runs, and a dispute opened while a reminder is being decided."""

from __future__ import annotations

import threading

import pytest
from django.core import mail
from django.db import connection, transaction

from billing.models import Invoice
from disputes.models import DunningNotice
from disputes.services.collections import dunning_run
from tests.disputes.collections.factories import TODAY, issued_invoice

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_parallel(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_three_runs_at_the_same_moment_send_each_reminder_once(settings):
    settings.DUNNING_ATTACH_PDF = False
    invoices = [issued_invoice(days_late=8 + i) for i in range(6)]

    results = _in_parallel(3, lambda _i: dunning_run(today=TODAY))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.sent for r in results) == 6
    assert DunningNotice.objects.filter(result="sent").count() == 6 == len(mail.outbox)
    assert sorted(DunningNotice.objects.values_list("invoice_id", flat=True)) == sorted(i.pk for i in invoices)


def test_a_dispute_committed_while_the_run_waits_for_the_lock_stops_the_reminder(settings):
    """The dispute service locks the invoice and marks it disputed; the run decides again under the same lock."""
    settings.DUNNING_ATTACH_PDF = False
    invoice = issued_invoice(days_late=8)
    locked, release = threading.Event(), threading.Event()

    def dispute(_index: int) -> None:
        with transaction.atomic():
            Invoice.objects.select_for_update().get(pk=invoice.pk)
            locked.set()
            release.wait(timeout=30)
            Invoice.objects.filter(pk=invoice.pk).update(status="disputed")

    def run(_index: int):
        locked.wait(timeout=30)
        threading.Timer(0.5, release.set).start()  # the run is planned, then blocks on the row lock
        return dunning_run(today=TODAY)

    workers = [dispute, run]
    results = _in_parallel(2, lambda i: workers[i](i))

    assert not [r for r in results if isinstance(r, Exception)], results
    summary = results[1]
    assert [i.invoice.pk for i in summary.planned] == [invoice.pk]  # it was due when the run started
    assert summary.notices == [] and mail.outbox == []
    assert not DunningNotice.objects.exists()
