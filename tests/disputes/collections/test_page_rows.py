"""The AR aging, its drill-down and the client statement render their rows in Python (collections_tables tags).

Every cell, link and badge of the former template loops is still there, escaped; and each page costs the
same number of queries whatever the number of rows.
"""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from disputes.models import CollectionsHandoff, DunningNotice
from disputes.views.collections import AGING_PAGE_SIZE
from tests.disputes.collections.factories import TODAY, credit_note, issued_invoice, live_dispute, payment
from tests.factories import ClientFactory, LegalEntityFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = TODAY.isoformat()


@pytest.fixture
def collector():
    return UserFactory(groups=["collections"])


@pytest.fixture
def collections_client(client, collector):
    client.force_login(collector)
    return client


def _queries(http_client, url: str, params: dict) -> tuple[int, str]:
    http_client.get(url, params)  # warm: session, role and content-type caches
    with CaptureQueriesContext(connection) as queries:
        response = http_client.get(url, params)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def _clients_with_open_invoices(entity, n: int, *, start: int = 0) -> None:
    for i in range(start, start + n):
        client = ClientFactory(code=f"C{i:03d}", legal_name=f"Client {i:03d}")
        issued_invoice(client=client, entity=entity, total="10.00", days_late=5)


def test_aging_rows_show_every_cell_escaped_and_the_queries_do_not_grow_with_rows(collections_client):
    entity = LegalEntityFactory(code="NWB")
    odd = ClientFactory(code="A&S", legal_name="Abel & <Sons>")  # first by name: on page 1
    issued_invoice(client=odd, entity=entity, total="100.00", days_late=45)
    issued_invoice(client=odd, entity=entity, total="7.50", days_late=0)
    live_dispute(issued_invoice(client=odd, entity=entity, total="20.00", days_late=100), amount="5.00")
    payment(client=odd, amount="3.00")
    payment(client=None, amount="4.00")
    _clients_with_open_invoices(entity, 2)
    url = reverse("disputes:aging")

    few, _ = _queries(collections_client, url, {"as_of": AS_OF})
    _clients_with_open_invoices(entity, AGING_PAGE_SIZE + 5, start=2)
    many, html = _queries(collections_client, url, {"as_of": AS_OF})

    assert many == few <= 8  # session, user, roles, entities, rows, unapplied cash, navigation (+1 spare)
    statement = reverse("disputes:client_statement", args=[odd.pk])
    drill = f"?as_of={AS_OF}&amp;client={odd.pk}&amp;bucket="
    row = html.split(f'<a href="{statement}?as_of={AS_OF}">')[1].split("</tr>")[0]
    assert row.startswith('Abel &amp; &lt;Sons&gt;</a> <span class="muted small">A&amp;S</span></th><td>EUR</td>')
    assert f'class="cell-link" href="{drill}current#drill"><span class="money">7.50 <span class="money-ccy">EUR<' in row
    assert f'href="{drill}31_60#drill"><span class="money">100.00 <' in row
    assert f'href="{drill}90_plus#drill"><span class="money">20.00 <' in row
    assert '<td class="num"><span class="zero">–</span></td>' in row  # nothing 1–30 or 61–90
    assert f'href="{drill}all#drill"><strong><span class="money">127.50 <' in row
    assert '<td class="num"><span class="money">5.00 <span class="money-ccy">EUR</span></span></td>' in row  # disputed
    assert '<td class="num"><span class="money">3.00 <' in row  # unapplied cash
    assert row.endswith('<td class="num">3</td>')
    assert html.count('<tr class="subtotal-row"><th scope="row">NWB total</th><td>EUR</td>') == 1
    assert '<tr class="grand-row"><th scope="row">All entities</th><td>EUR</td>' in html
    assert "Client 006" in html and f"Client {AGING_PAGE_SIZE + 4:03d}" not in html  # one page of rows
    unapplied = html.split('id="unapplied-title"')[1]
    assert (
        f'<tr><th scope="row"><a href="{statement}">Abel &amp; &lt;Sons&gt;</a> '
        '<span class="muted small">A&amp;S</span></th><td class="num">1</td><td class="num"><span class="money">3.00 <'
    ) in unapplied
    assert '<tr><th scope="row">Unknown payer</th><td class="num">1</td><td class="num"><span class="money">4.00 <' in (
        unapplied
    )


def _reminded(invoice, level: int) -> None:
    DunningNotice.objects.create(
        invoice=invoice, level=level, days_overdue=10, balance=invoice.balance, to="ap@example.com",
        sent_at=datetime.datetime(2026, 6, 12, 9, tzinfo=datetime.UTC),
    )


def _handed_off(invoice, user) -> None:
    CollectionsHandoff.objects.create(
        invoice=invoice, reason="Agency", handed_off_by=user,
        handed_off_at=datetime.datetime(2026, 6, 20, tzinfo=datetime.UTC),
    )


def test_aging_drill_down_rows_keep_badges_reminders_and_hand_off_links(collections_client, collector):
    client = ClientFactory(code="ACME", legal_name="Acme & Co")
    entity = LegalEntityFactory(code="TLL")
    disputed = issued_invoice(client=client, entity=entity, total="1000.00", days_late=40)
    live_dispute(disputed, amount="100.00")
    reminded = issued_invoice(client=client, entity=entity, total="50.00", days_late=30)
    _reminded(reminded, 1)
    _reminded(reminded, 2)
    handed = issued_invoice(client=client, entity=entity, total="70.00", days_late=20, status="partially_paid")
    _handed_off(handed, collector)
    not_due = issued_invoice(client=client, entity=entity, total="9.00", days_late=-3)
    url = reverse("disputes:aging")
    params = {"as_of": AS_OF, "bucket": "all"}

    few, html = _queries(collections_client, url, params)
    for _ in range(AGING_PAGE_SIZE + 2):
        issued_invoice(client=client, entity=entity, total="1.00", days_late=200)
    many, _ = _queries(collections_client, url, params)

    assert many == few <= 10  # the aging's, plus the drill-down's count and page (+1 spare)
    drill = html.split('id="drill"')[1].split("</section>")[0]
    here = f"/disputes/collections/aging/%3Fas_of%3D{AS_OF}%26bucket%3Dall"
    row = drill.split(f'<a href="{reverse("billing:invoice_detail", args=[disputed.pk])}">{disputed.number}</a>')[1]
    row = row.split("</tr>")[0]
    assert '<td>Acme &amp; Co<div class="muted small">ACME</div></td><td>TLL</td>' in row  # client column: all clients
    assert f"<td>{disputed.issue_date.day} {disputed.issue_date:%b %Y}</td>" in row
    assert '<td class="num">40</td>' in row
    assert '<span class="badge badge-success">Sent</span>' in row
    assert '<span class="badge badge-todo">Dispute open</span>' in row
    assert '<div class="muted small partial-dispute"><span class="money">100.00 <' in row
    assert '<span class="muted">none</span>' in row  # no reminder
    handoff = reverse("disputes:handoff_new", args=[disputed.pk])
    assert f'<a class="btn btn-sm" href="{handoff}?next={here}">Hand off</a>' in row
    reminded_row = drill.split(f">{reminded.number}</a>")[1].split("</tr>")[0]
    assert 'Level 2 <span class="muted small">12 Jun</span>' in reminded_row
    handed_row = drill.split(f">{handed.number}</a>")[1].split("</tr>")[0]
    assert '<span class="badge badge-info">Handed off</span>' in handed_row and "Hand off</a>" not in handed_row
    assert '<span class="badge badge-success">Partially paid</span>' in handed_row
    assert '<span class="muted">not due</span>' in drill.split(f">{not_due.number}</a>")[1].split("</tr>")[0]

    one_client = collections_client.get(url, {"as_of": AS_OF, "client": client.pk, "bucket": "31_60"}).content.decode()
    drill = one_client.split('id="drill"')[1].split("</section>")[0]
    assert f">{disputed.number}</a></th><td>TLL</td>" in drill  # no client column in one client's drill-down


def test_statement_rows_keep_every_entry_and_the_queries_do_not_grow_with_rows(client, collector):
    first = issued_invoice(total="1000.00", days_late=40)
    acme, entity = first.client, first.entity
    _reminded(first, 1)
    paid = issued_invoice(client=acme, entity=entity, total="500.00", days_late=5, status="partially_paid")
    payment(invoice=paid, amount="200.00", on=datetime.date(2026, 6, 10))
    handed = issued_invoice(client=acme, entity=entity, total="80.00", days_late=20)
    _handed_off(handed, collector)
    credit_note(first, "100.00", on=datetime.date(2026, 6, 1))
    payment(client=acme, amount="50.00", on=datetime.date(2026, 6, 20))  # unapplied
    client.force_login(collector)
    url = reverse("disputes:client_statement", args=[acme.pk])
    params = {"as_of": AS_OF, "since": "2026-01-01"}

    few, html = _queries(client, url, params)
    for i in range(30):
        more = issued_invoice(client=acme, entity=entity, total="10.00", days_late=i)
        payment(invoice=more, amount="1.00", on=datetime.date(2026, 6, 15))
    many, _ = _queries(client, url, params)

    # session, user, roles, client with profile, open items, opening documents, payment sums, documents,
    # payments, navigation (+1 spare)
    assert many == few <= 11
    here = f"/disputes/collections/clients/{acme.pk}/statement/%3Fas_of%3D{AS_OF}%26since%3D2026-01-01"
    open_items = html.split('id="open-title"')[1].split("</section>")[0]
    row = open_items.split(f'<a href="{reverse("billing:invoice_detail", args=[first.pk])}">{first.number}</a>')[1]
    row = row.split("</tr>")[0]
    assert '<td class="num">40</td><td><span class="badge badge-success">Sent</span>' in row
    assert '<span class="small muted">reminder 1</span>' in row
    assert '<td class="num"><span class="money">100.00 <' in row  # credited
    assert '<td class="num"><span class="muted">–</span></td>' in row  # nothing paid
    assert '<strong><span class="money">900.00 <' in row
    assert f'href="{reverse("disputes:handoff_new", args=[first.pk])}?next={here}">Hand off</a>' in row
    handed_row = open_items.split(f">{handed.number}</a>")[1].split("</tr>")[0]
    assert '<span class="badge badge-info">Handed off</span>' in handed_row and "Hand off</a>" not in handed_row
    ledger = html.split('id="ledger-EUR"')[1].split("</section>")[0]
    assert '<span class="badge badge-info">Credit note</span>' in ledger
    assert f"Credit note on {first.number}" in ledger
    assert '<tr class="ledger-row-unapplied"><td>20 Jun 2026</td>' in ledger
    assert '<span class="badge badge-success">Payment</span></td><td>Payment, not applied yet</td>' in ledger
    assert f"<td>Payment on {paid.number}</td>" in ledger
    assert f"Invoice, due {paid.due_date:%d %b %Y}" in ledger


def test_statement_of_an_auditor_offers_no_hand_off(client):
    invoice = issued_invoice(days_late=10)
    client.force_login(UserFactory(groups=["auditor"]))

    html = client.get(reverse("disputes:client_statement", args=[invoice.client_id])).content.decode()

    assert invoice.number in html and "Hand off</a>" not in html
