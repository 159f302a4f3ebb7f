"""AR aging: buckets at their exact boundaries, currencies apart, credits and payments, drill-down, CSV, queries."""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice
from disputes.selectors.collections import aging_invoices, aging_report, bucket_of
from disputes.views.collections import AGING_PAGE_SIZE
from tests.disputes.collections.factories import TODAY, credit_note, issued_invoice, payment
from tests.factories import ClientFactory, LegalEntityFactory, UserFactory

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.mark.parametrize(
    ("days_late", "bucket"),
    [
        (-10, "current"),
        (0, "current"),
        (1, "1_30"),
        (30, "1_30"),
        (31, "31_60"),
        (60, "31_60"),
        (61, "61_90"),
        (90, "61_90"),
        (91, "90_plus"),
        (400, "90_plus"),
    ],
)
def test_bucket_boundaries_in_the_database_and_in_python(days_late, bucket):
    invoice = issued_invoice(days_late=days_late, total="123.45")

    report = aging_report(as_of=TODAY)

    (row,) = report.rows
    assert row.buckets[bucket] == D("123.45")
    assert sum(row.buckets.values()) == row.total == D("123.45")
    assert bucket_of(days_late) == bucket
    (listed,) = aging_invoices(as_of=TODAY, bucket=bucket)
    assert listed.pk == invoice.pk and listed.days_past_due == days_late


def test_the_as_of_date_moves_an_invoice_between_buckets_and_leaves_out_later_invoices():
    invoice = issued_invoice(days_late=30)  # due 31 May 2026
    assert aging_report(as_of=TODAY).rows[0].buckets["1_30"] == invoice.total
    assert aging_report(as_of=TODAY + datetime.timedelta(days=1)).rows[0].buckets["31_60"] == invoice.total
    assert aging_report(as_of=invoice.due_date).rows[0].buckets["current"] == invoice.total
    assert aging_report(as_of=invoice.issue_date - datetime.timedelta(days=1)).rows == []


def test_currencies_are_never_added_together_and_totals_go_by_entity_and_currency():
    client = ClientFactory()
    nwb, tll = LegalEntityFactory(code="NWB"), LegalEntityFactory(code="TLL")
    issued_invoice(client=client, entity=nwb, currency="EUR", total="100.00", days_late=5)
    issued_invoice(client=client, entity=nwb, currency="EUR", total="50.00", days_late=45)
    issued_invoice(client=client, entity=nwb, currency="USD", total="70.00", days_late=5)
    issued_invoice(client=client, entity=tll, currency="GBP", total="30.00", days_late=100)

    report = aging_report(as_of=TODAY)

    assert [(b.entity_code, [(t.currency, t.total) for t in b.totals]) for b in report.entities] == [
        ("NWB", [("EUR", D("150.00")), ("USD", D("70.00"))]),
        ("TLL", [("GBP", D("30.00"))]),
    ]
    assert {(r.currency, r.total, r.invoices) for r in report.rows} == {
        ("EUR", D("150.00"), 2),
        ("USD", D("70.00"), 1),
        ("GBP", D("30.00"), 1),
    }
    assert {t.currency: (t.buckets["1_30"], t.buckets["31_60"], t.buckets["90_plus"]) for t in report.totals} == {
        "EUR": (D("100.00"), D("50.00"), D("0")),
        "GBP": (D("0"), D("0"), D("30.00")),
        "USD": (D("70.00"), D("0"), D("0")),
    }
    assert [t.currency for t in aging_report(as_of=TODAY, currency="USD").totals] == ["USD"]
    assert [b.entity_code for b in aging_report(as_of=TODAY, entity="TLL").entities] == ["TLL"]


def test_credit_notes_and_payments_reduce_the_open_balance_and_settled_invoices_leave_the_aging():
    invoice = issued_invoice(total="1000.00", days_late=10)
    settled = issued_invoice(client=invoice.client, entity=invoice.entity, total="200.00", days_late=40)
    credit_note(invoice, "250.00")
    payment(invoice=invoice, amount="300.00")
    payment(invoice=settled, amount="200.00")  # balance 0 (status still partially paid): not open

    (row,) = aging_report(as_of=TODAY).rows

    assert row.total == row.buckets["1_30"] == D("450.00")
    assert row.invoices == 1
    # Credit notes themselves are never receivables.
    assert [i.pk for i in aging_invoices(as_of=TODAY, bucket="all", client_id=invoice.client_id)] == [invoice.pk]


def test_only_issued_open_statuses_count_and_disputed_amounts_are_shown_apart():
    client, entity = ClientFactory(), LegalEntityFactory()
    for status in ("posted", "sent", "partially_paid", "disputed"):
        issued_invoice(client=client, entity=entity, status=status, total="10.00", days_late=3)
    for status in ("paid", "credited"):
        issued_invoice(client=client, entity=entity, status=status, total="99.00", days_late=3)
    Invoice.objects.create(  # a draft has no number and owes nothing yet
        contract=issued_invoice(client=client, entity=entity, status="paid").contract,
        entity=entity,
        client=client,
        currency="EUR",
        issue_date=TODAY,
        due_date=TODAY,
        total=D("500.00"),
    )

    (row,) = aging_report(as_of=TODAY).rows

    assert row.total == D("40.00") and row.invoices == 4
    assert row.disputed == D("10.00")
    assert row.overdue == D("40.00")


def test_unapplied_cash_is_shown_per_client_and_currency_and_reduces_nothing():
    invoice = issued_invoice(total="500.00", days_late=20)
    payment(client=invoice.client, amount="80.00")
    payment(client=invoice.client, amount="20.00", currency="USD")
    payment(client=None, amount="5.00")  # an unknown payer

    report = aging_report(as_of=TODAY)

    (row,) = report.rows
    assert row.total == D("500.00") and row.unapplied == D("80.00")
    assert {(u.client_name, u.currency, u.amount) for u in report.unapplied} == {
        (invoice.client.legal_name, "EUR", D("80.00")),
        (invoice.client.legal_name, "USD", D("20.00")),
        ("Unknown payer", "EUR", D("5.00")),
    }


@pytest.fixture
def collections_client(client):
    client.force_login(UserFactory(groups=["collections"]))
    return client


def test_aging_page_drills_down_from_a_client_cell_to_its_invoices(collections_client):
    first = issued_invoice(total="100.00", days_late=45)
    other_bucket = issued_invoice(client=first.client, entity=first.entity, total="7.00", days_late=2)
    other_client = issued_invoice(total="9.00", days_late=45)
    url = reverse("disputes:aging")

    page = collections_client.get(url, {"as_of": TODAY.isoformat()})
    assert page.status_code == 200
    drill_href = f"client={first.client_id}&amp;bucket=31_60"
    assert drill_href in page.content.decode()

    drill = collections_client.get(url, {"as_of": TODAY.isoformat(), "client": first.client_id, "bucket": "31_60"})
    html = drill.content.decode()
    assert [i.pk for i in drill.context["drill"]["invoices"]] == [first.pk]
    assert reverse("billing:invoice_detail", args=[first.pk]) in html
    assert other_bucket.number not in html.split('id="drill"')[1].split("</section>")[0]
    assert other_client.number not in html


def test_aging_csv_exports_the_table(collections_client):
    issued_invoice(total="100.00", days_late=45, currency="EUR")
    issued_invoice(total="60.00", days_late=0, currency="USD")

    response = collections_client.get(reverse("disputes:aging"), {"as_of": TODAY.isoformat(), "format": "csv"})

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_ccy = {(r["client"], r["currency"]): r for r in rows}
    assert by_ccy[("Total", "EUR")]["31–60"] == "100.00"
    assert by_ccy[("Total", "USD")]["Current"] == "60.00"
    assert len(rows) == 4


def _many(n: int) -> None:
    entities = [LegalEntityFactory() for _ in range(2)]
    clients = [ClientFactory() for _ in range(5)]
    for i in range(n):
        invoice = issued_invoice(
            client=clients[i % 5],
            entity=entities[i % 2],
            currency=("EUR", "USD")[i % 2],
            total="100.00",
            days_late=(i * 7) % 120,
            status=("sent", "posted", "partially_paid", "disputed")[i % 4],
        )
        if i % 3 == 0:
            payment(invoice=invoice, amount="10.00")
        if i % 10 == 0:
            payment(client=invoice.client, amount="1.00")


@pytest.mark.parametrize("n", [10, 200])
def test_aging_page_queries_do_not_grow_with_invoices(collections_client, django_assert_max_num_queries, n):
    _many(n)
    url = reverse("disputes:aging")
    with django_assert_max_num_queries(8):
        response = collections_client.get(url, {"as_of": TODAY.isoformat()})
    assert response.status_code == 200
    assert sum(r.invoices for r in response.context["report"].rows) == n
    with django_assert_max_num_queries(11):
        drill = collections_client.get(url, {"as_of": TODAY.isoformat(), "bucket": "all"})
    assert drill.context["drill"]["page"].paginator.count == n
    assert len(drill.context["drill"]["invoices"]) == min(n, AGING_PAGE_SIZE)


def test_aging_pages_client_rows_and_keeps_the_totals_of_every_client(collections_client):
    entity = LegalEntityFactory()
    size = AGING_PAGE_SIZE
    clients = [ClientFactory(legal_name=f"Client {i:03d}") for i in range(size + 3)]
    for c in clients:
        issued_invoice(client=c, entity=entity, total="10.00", days_late=5, currency="EUR")
    url = reverse("disputes:aging")

    first = collections_client.get(url, {"as_of": TODAY.isoformat()})
    second = collections_client.get(url, {"as_of": TODAY.isoformat(), "page": 2})

    first_rows = [r.client_name for b in first.context["blocks"] for r in b.rows]
    second_rows = [r.client_name for b in second.context["blocks"] for r in b.rows]
    assert len(first_rows) == size and second_rows == [f"Client {i:03d}" for i in range(size, size + 3)]
    whole = D("10.00") * (size + 3)
    for page in (first, second):
        (total,) = page.context["report"].totals
        assert total.total == whole and total.invoices == size + 3
        assert f"{whole:,}" in page.content.decode()
    assert f"Client {size + 1:03d}" not in first.content.decode()


def test_aging_client_search_narrows_rows_totals_and_csv(collections_client):
    wanted = issued_invoice(client=ClientFactory(code="ACME", legal_name="Acme Widgets"), total="40.00", days_late=3)
    issued_invoice(client=ClientFactory(code="GLOBX", legal_name="Globex"), total="60.00", days_late=3)
    url = reverse("disputes:aging")

    page = collections_client.get(url, {"as_of": TODAY.isoformat(), "q": "acme"})

    assert [r.client_id for r in page.context["report"].rows] == [wanted.client_id]
    assert [t.total for t in page.context["report"].totals] == [D("40.00")]
    csv_rows = list(
        csv.DictReader(
            io.StringIO(
                collections_client.get(url, {"as_of": TODAY.isoformat(), "q": "acme", "format": "csv"}).content.decode()
            )
        )
    )
    assert {r["client"] for r in csv_rows} == {"Acme Widgets", "Total"}
