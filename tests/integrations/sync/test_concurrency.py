"""Races the inbound sync must win on PostgreSQL: two imports booking the same person's day."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing.models import TimeEntry
from integrations.services.inbound import Result, upsert_records

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _record(ext: str) -> dict:
    return {"external_id": ext, "person_external_id": "psa-anna", "project_code": "PRJ-A", "date": "2025-03-10",
            "hours": "14"}


def test_two_imports_cannot_both_pass_the_24_hour_check(world, psa_user):
    """The first import holds its transaction open; the second waits on the person's row lock, then sees 14 h."""
    first_done, results = threading.Event(), {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = upsert_records(resource="time_entries", records=[_record("a")], user=psa_user,
                                                  source="psa")
                first_done.set()
                time.sleep(0.8)  # the second import starts while this one is not committed yet
        finally:
            first_done.set()
            connection.close()

    def second() -> None:
        try:
            first_done.wait(10)
            results["second"] = upsert_records(resource="time_entries", records=[_record("b")], user=psa_user,
                                               source="psa")
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results["first"].results[0].result == Result.CREATED
    refused = results["second"].results[0]
    assert (refused.result, refused.code) == (Result.ERROR, "daily_hours_exceeded")
    assert list(TimeEntry.objects.values_list("external_id", "hours")) == [("a", Decimal("14.00"))]
