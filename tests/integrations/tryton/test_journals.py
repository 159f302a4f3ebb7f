"""The revenue close's journals posted to a real Tryton 8.2 as `account.move`, exactly once.

Each test closes its own month: the session shares one Tryton database while each test's Billable data is
rolled back, and a journal's reference (REV-<entity>-<month>) is how the adapter finds a move again.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.erp.base import get_adapter
from integrations.erp.tryton import DEMO_REVENUE_ACCOUNTS
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_deliver
from revenue.models import EntityAccounts, JournalEntry
from revenue.services.close import revenue_close
from tests.integrations.tryton.factories import demo_entities
from tests.revenue.helpers import contract, controller, issue, work

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
Status = OutboxMessage.Status
D = datetime.date

# Billable's revenue accounts of NWB, as codes of Tryton's universal chart (what the Tryton demo enters).
TRYTON_ACCOUNTS = DEMO_REVENUE_ACCOUNTS


def _close(month: int, **accounts: str) -> tuple[JournalEntry, OutboxMessage]:
    """NWB closes 2025-<month>: one T&M contract with 8 h (800.00) and 300.00 invoiced, one billed 1000 ahead."""
    nwb = demo_entities()["NWB"]
    EntityAccounts.objects.update_or_create(entity=nwb, defaults={**TRYTON_ACCOUNTS, **accounts})
    delivered, project = contract(entity=nwb, currency="EUR")
    work(project, D(2025, month, 3), "8")
    issue(delivered, D(2025, month, 20), "300.00")
    ahead, _ = contract(entity=nwb, currency="EUR")
    issue(ahead, D(2025, month, 21), "1000.00")
    revenue_close(period=f"2025-{month:02d}", user=controller(), lock=True)
    journal = JournalEntry.objects.get(period__start=D(2025, month, 1), entity=nwb)
    return journal, OutboxMessage.objects.get(
        kind=OutboxMessage.Kind.POST_JOURNAL, idempotency_key__endswith=journal.reference
    )


def _moves(tryton, reference: str) -> list[dict]:
    return tryton.call(
        "model.account.move.search_read",
        [("description", "=", reference)],
        0,
        None,
        None,
        ["state", "number", "date", "period.start_date", "period.end_date", "journal.code", "company", "lines"],
    )


def _lines(tryton, ids: list[int]) -> dict[str, tuple[Decimal, Decimal]]:
    rows = tryton.call("model.account.move.line.read", ids, ["account.code", "debit", "credit", "party"])
    assert all(row["party"] is None for row in rows)
    return {row["account."]["code"]: (row["debit"], row["credit"]) for row in rows}


def test_a_closed_month_is_one_posted_move_in_tryton_with_the_journal_lines(tryton, tryton_settings):
    journal, message = _close(3)
    assert journal.erp_status == JournalEntry.ErpStatus.QUEUED

    assert outbox_deliver(message.pk) == "delivered", OutboxMessage.objects.get(pk=message.pk).last_error

    journal.refresh_from_db()
    (move,) = _moves(tryton, journal.reference)
    assert journal.erp_status == JournalEntry.ErpStatus.POSTED and journal.erp_id == str(move["id"])
    assert move["state"] == "posted" and move["number"]  # numbered by Tryton's move sequence on posting
    assert move["date"] == D(2025, 3, 31) and move["period."]["start_date"] == D(2025, 3, 1)
    assert move["journal."]["code"] == "MISC"
    assert _lines(tryton, move["lines"]) == {
        "4.2.2": (Decimal("0"), Decimal("800.00")),  # revenue recognised
        "4.3.3": (Decimal("1300.00"), Decimal("0")),  # invoiced revenue reclassified
        "1.4.2": (Decimal("500.00"), Decimal("0")),  # WIP (contract asset)
        "2.2.2": (Decimal("0"), Decimal("1000.00")),  # deferred revenue (contract liability)
    }

    # A re-delivery (the dead letter retried by finance, a second worker) finds the move and creates none.
    OutboxMessage.objects.filter(pk=message.pk).update(status=Status.PENDING)
    assert outbox_deliver(message.pk) == "delivered"
    assert [m["id"] for m in _moves(tryton, journal.reference)] == [move["id"]]
    replay = get_adapter().post_journal(message.payload, idempotency_key=message.idempotency_key)
    assert replay.replayed and replay.erp_id == str(move["id"])
    assert len(_moves(tryton, journal.reference)) == 1


@pytest.mark.parametrize(("month", "dropped"), [(4, "model.account.move.post"), (5, "model.account.move.create")])
def test_a_connection_dropped_after_tryton_committed_ends_with_one_posted_move(tryton, tryton_proxy, month, dropped):
    journal, message = _close(month)
    tryton_proxy.arm(dropped, "drop")

    assert outbox_deliver(message.pk) == "failed"
    message.refresh_from_db()
    assert message.last_error.startswith("unclear: No answer from Tryton"), message.last_error
    (stored,) = _moves(tryton, journal.reference)  # Tryton has it: posted, or a draft the next attempt posts
    assert stored["state"] == ("posted" if dropped.endswith("post") else "draft")

    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - datetime.timedelta(seconds=1))
    assert outbox_deliver(message.pk) == "delivered"
    (move,) = _moves(tryton, journal.reference)
    assert move["id"] == stored["id"] and move["state"] == "posted"
    journal.refresh_from_db()
    assert journal.erp_id == str(move["id"]) and journal.erp_status == JournalEntry.ErpStatus.POSTED


def test_an_account_tryton_books_only_with_a_party_is_a_dead_letter_naming_it(tryton, tryton_settings):
    journal, message = _close(6, wip="1.2.2")  # "Contracts": a receivable, party required in Tryton

    assert outbox_deliver(message.pk) == "dead"
    message.refresh_from_db()
    assert "account 1.2.2 needs a party" in message.last_error
    assert _moves(tryton, journal.reference) == []  # nothing half-booked
    journal.refresh_from_db()
    assert journal.erp_status == JournalEntry.ErpStatus.QUEUED
