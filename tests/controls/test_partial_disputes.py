"""A partial dispute holds only the disputed amount from collections (issue #12, finding 11; ADR 0038).

A customer disputing 5,950 of a 198,000 invoice stopped every reminder for the whole
balance and showed all of it as disputed in the aging. Only the disputed amount is
held: the rest ages as before, stays dunnable, and the reminder asks for it, naming
the part in dispute. A dispute of the whole balance behaves as before.
"""

from __future__ import annotations

import csv as csv_module
import datetime
import io
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from disputes.models import DunningNotice
from disputes.selectors.collections import aging_invoices, aging_report, dunning_items
from disputes.services import dispute_open, dispute_withdraw
from disputes.services.collections import dunning_run
from tests.disputes.collections.factories import TODAY, issued_invoice, payment
from tests.factories import ClientFactory, LegalEntityFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.control("partial-disputes")]

D = Decimal


@pytest.fixture(autouse=True)
def _no_pdf(settings):
    settings.DUNNING_ATTACH_PDF = False
    settings.DUNNING_DEFAULT_OFFSETS = [7, 21, 45]


@pytest.fixture
def analyst():
    return UserFactory(username="partial-analyst", groups=["finance_analyst"])


@pytest.fixture
def collector():
    return UserFactory(username="partial-collections", groups=["collections"])


def _big_invoice(**kwargs):
    """198,000.00 EUR, 40 days late (the 31–60 bucket, reminder level 2 due)."""
    client = ClientFactory(billing_emails="ap@kunde.example")
    return issued_invoice(client=client, total="198000.00", days_late=40, **kwargs)


def _dispute(invoice, amount: str, user):
    return dispute_open(invoice=invoice, category="hours", disputed_amount=D(amount), user=user)


def test_aging_shows_only_the_disputed_amount_as_disputed_and_the_whole_balance_ages(analyst):
    invoice = _big_invoice()
    _dispute(invoice, "5950.00", analyst)

    (row,) = aging_report(as_of=TODAY).rows
    assert row.disputed == D("5950.00")  # was 198,000.00: the whole balance
    assert row.total == D("198000.00") and row.buckets["31_60"] == D("198000.00")
    assert row.overdue == D("198000.00")
    (drilled,) = aging_invoices(as_of=TODAY, bucket="31_60")
    assert (drilled.open_balance, drilled.held_in_dispute) == (D("198000.00"), D("5950.00"))


def test_the_undisputed_rest_is_reminded_and_the_reminder_asks_for_it_naming_the_disputed_part(analyst):
    invoice = _big_invoice()
    _dispute(invoice, "5950.00", analyst)
    invoice.refresh_from_db()
    assert invoice.status == "disputed"  # the invoice is in dispute; only the amount held changes

    (item,) = dunning_items(today=TODAY)
    assert not item.excluded and item.is_due and item.amount_due == D("192050.00")

    summary = dunning_run(today=TODAY)

    assert summary.sent == 1 and summary.held_back == {}  # was: nothing sent, held back as disputed
    (notice,) = DunningNotice.objects.filter(invoice=invoice, result="sent")
    assert (notice.level, notice.balance, notice.held_in_dispute) == (2, D("192050.00"), D("5950.00"))
    (message,) = mail.outbox
    assert "Amount due:     192,050.00 EUR (the open balance excluding the disputed part)" in message.body
    assert "In dispute:     5,950.00 EUR" in message.body and "Open balance:   198,000.00 EUR" in message.body
    assert "Please transfer 192,050.00 EUR" in message.body
    html = message.alternatives[0][0]
    assert "<strong>192,050.00 EUR</strong>" in html and "5,950.00 EUR" in html
    assert "Please transfer <strong>198,000.00 EUR" not in html


def test_a_dispute_of_the_whole_balance_still_stops_dunning_and_counts_whole(analyst):
    invoice = _big_invoice()
    _dispute(invoice, "198000.00", analyst)

    summary = dunning_run(today=TODAY)

    assert summary.sent == 0 and summary.held_back == {"disputed": 1}
    assert not DunningNotice.objects.filter(invoice=invoice).exists() and mail.outbox == []
    (row,) = aging_report(as_of=TODAY).rows
    assert row.disputed == row.total == D("198000.00")


def test_once_the_undisputed_part_is_paid_only_the_dispute_is_left_and_nothing_is_reminded(analyst):
    invoice = _big_invoice()
    _dispute(invoice, "5950.00", analyst)
    payment(invoice=invoice, amount="192050.00")

    assert dunning_run(today=TODAY).sent == 0
    (row,) = aging_report(as_of=TODAY).rows
    assert row.total == row.disputed == D("5950.00")

    payment(invoice=invoice, amount="2950.00")  # 3,000 left of a 5,950 dispute: it holds at most the balance
    (row,) = aging_report(as_of=TODAY).rows
    assert row.total == row.disputed == D("3000.00")
    assert dunning_run(today=TODAY).sent == 0


def test_a_withdrawn_dispute_holds_nothing(analyst):
    invoice = _big_invoice()
    dispute = _dispute(invoice, "5950.00", analyst)
    dispute_withdraw(dispute=dispute, user=analyst, reason="Customer agreed the hours")

    (row,) = aging_report(as_of=TODAY).rows
    assert row.disputed == D("0")
    dunning_run(today=TODAY)
    (notice,) = DunningNotice.objects.filter(invoice=invoice, result="sent")
    assert (notice.balance, notice.held_in_dispute) == (D("198000.00"), D("0"))
    assert "In dispute" not in mail.outbox[0].body


def test_several_clients_each_hold_only_their_disputed_amount(analyst):
    entity = LegalEntityFactory()
    partial = issued_invoice(entity=entity, total="1000.00", days_late=10)
    whole = issued_invoice(entity=entity, total="500.00", days_late=10)
    clean = issued_invoice(entity=entity, total="300.00", days_late=10)
    _dispute(partial, "100.00", analyst)
    _dispute(whole, "500.00", analyst)

    report = aging_report(as_of=TODAY)
    assert {r.client_id: r.disputed for r in report.rows} == {
        partial.client_id: D("100.00"), whole.client_id: D("500.00"), clean.client_id: D("0"),
    }
    (total,) = report.totals
    assert (total.total, total.disputed) == (D("1800.00"), D("600.00"))
    assert sorted(n.invoice_id for n in dunning_run(today=TODAY).notices) == sorted([partial.pk, clean.pk])


def test_the_screens_say_what_is_held_and_what_is_due(client, analyst, collector):
    invoice = _big_invoice()
    _dispute(invoice, "5950.00", analyst)
    client.force_login(collector)

    with time_machine.travel(datetime.datetime(2026, 6, 30, 12, tzinfo=datetime.UTC)):  # the pages' today is TODAY
        dunning = client.get(reverse("disputes:dunning")).content.decode()
    aging = client.get(
        reverse("disputes:aging"), {"as_of": TODAY.isoformat(), "client": invoice.client_id, "bucket": "all"}
    ).content.decode()
    csv = client.get(reverse("disputes:aging"), {"as_of": TODAY.isoformat(), "format": "csv"}).content.decode()
    client.force_login(analyst)
    page = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()

    assert "192,050.00" in dunning and "5,950.00" in dunning and "in dispute, held" in dunning
    assert "5,950.00" in aging and "in dispute; the rest is due" in aging
    row = next(csv_module.DictReader(io.StringIO(csv)))
    assert (D(row["of_which_disputed"]), D(row["total"])) == (D("5950.00"), D("198000.00"))
    assert "only that is held from dunning" in page and "dunning stopped" not in page
