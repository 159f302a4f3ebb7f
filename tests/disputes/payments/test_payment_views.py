"""Payment screens: list with unapplied cash (bounded queries), record, apply, close; the invoice-page panel."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice, InvoiceException, Payment
from billing.services.payments import payment_record
from tests.disputes.payments.factories import finance_user, issued_invoice
from tests.factories import ClientFactory, ContractFactory, UserFactory

pytestmark = pytest.mark.django_db
DAY = datetime.date(2025, 4, 20)


def _pay(user, ref, amount="100.00", quoted="", currency="EUR", client=None):
    return payment_record(amount=amount, currency=currency, date=DAY, external_reference=ref, source="manual",
                          user=user, invoice_reference=quoted, client=client)


@pytest.fixture
def analyst():
    return finance_user()


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


def _many(analyst, n: int, offset: int = 0) -> None:
    for i in range(n):
        invoice = issued_invoice(total="500.00", contract=None)
        _pay(analyst, f"L-{offset + i}-a", "200.00", invoice.number)
        _pay(analyst, f"L-{offset + i}-b", "50.00", "NOPE", client=ClientFactory())
        _pay(analyst, f"L-{offset + i}-c", "10.00", invoice.number, currency="USD")


def test_payment_list_queries_do_not_grow_with_rows(analyst, analyst_client, django_assert_max_num_queries):
    url = reverse("disputes:payment_list")
    _many(analyst, 2)
    with django_assert_max_num_queries(14) as few:
        response = analyst_client.get(url)
    assert response.status_code == 200
    _many(analyst, 8, offset=10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = analyst_client.get(url)
    body = response.content.decode()
    assert "Unapplied cash" in body and "PAYMENT_UNMATCHED" in body and "PAYMENT_CURRENCY_MISMATCH" in body
    # Unapplied cash totals per currency: 10 × 50 EUR and 10 × 10 USD.
    listing = response.context["listing"]
    assert {t.currency: t.amount for t in listing.unapplied_totals} == {"EUR": Decimal("500.00"),
                                                                       "USD": Decimal("100.00")}


def test_payment_list_filters(analyst, analyst_client):
    invoice = issued_invoice(total="500.00")
    _pay(analyst, "F-1", "200.00", invoice.number)
    _pay(analyst, "F-2", "50.00", "NOPE")
    url = reverse("disputes:payment_list")
    refs = lambda r: [p.external_reference for p in r.context["listing"].payments]  # noqa: E731
    assert refs(analyst_client.get(url, {"applied": "no"})) == ["F-2"]
    assert refs(analyst_client.get(url, {"applied": "yes"})) == ["F-1"]
    assert refs(analyst_client.get(url, {"client": invoice.client.code})) == ["F-1"]
    assert refs(analyst_client.get(url, {"reference": invoice.number})) == ["F-1"]
    assert refs(analyst_client.get(url, {"source": "api"})) == []
    assert refs(analyst_client.get(url, {"date_from": "2025-04-21"})) == []


@pytest.mark.parametrize(("role", "status"), [("collections", 200), ("auditor", 200), ("project_manager", 403),
                                              ("consultant", 403)])
def test_who_reads_the_payment_list(client, role, status):
    client.force_login(UserFactory(groups=[role]))
    response = client.get(reverse("disputes:payment_list"))
    assert response.status_code == status
    if status == 200:
        assert "Record a payment" not in response.content.decode()


@pytest.mark.parametrize("role", ["collections", "auditor"])
def test_readers_cannot_record_or_apply(client, analyst, role):
    client.force_login(UserFactory(groups=[role]))
    cash = _pay(analyst, "R-1", "50.00", "NOPE")
    body = {"invoice_number": "X", "amount": "1", "currency": "EUR", "date": "2025-04-20",
            "external_reference": "R-2"}
    assert client.post(reverse("disputes:payment_new"), body).status_code == 403
    assert client.post(reverse("disputes:payment_apply", args=[cash.pk]),
                       {"invoice_number": "X", "reason": "x"}).status_code == 403
    assert client.post(reverse("disputes:payment_exception_resolve", args=[cash.exceptions.get().pk]),
                       {"reason": "x"}).status_code == 403
    assert Payment.objects.count() == 1


def test_finance_records_a_payment_from_the_invoice_page(analyst, analyst_client):
    invoice = issued_invoice(total="1190.00")
    page = reverse("billing:invoice_detail", args=[invoice.pk])
    response = analyst_client.get(page)
    assert 'action="/disputes/payments/new/"' in response.content.decode()
    response = analyst_client.post(reverse("disputes:payment_new"), {
        "invoice_number": invoice.number, "amount": "1190.00", "currency": "EUR", "date": "2025-04-20",
        "external_reference": "BANK-V1", "next": page,
    })
    assert response.status_code == 303 and response["Location"] == page
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == (Invoice.Status.PAID, 0)
    body = analyst_client.get(page).content.decode()
    assert "BANK-V1" in body and "Record payment…" not in body  # nothing left to pay


def test_recording_a_duplicate_reference_with_other_data_shows_the_conflict(analyst, analyst_client):
    invoice = issued_invoice(total="1000.00")
    _pay(analyst, "BANK-D", "100.00", invoice.number)
    response = analyst_client.post(reverse("disputes:payment_new"), {
        "invoice_number": invoice.number, "amount": "200.00", "currency": "EUR", "date": "2025-04-20",
        "external_reference": "BANK-D",
    })
    assert response.status_code == 200
    assert "Already used for another payment" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")


def test_apply_page_lists_candidates_and_applies(analyst, analyst_client):
    invoice = issued_invoice(total="300.00")
    cash = _pay(analyst, "A-1", "300.00", "typo")
    url = reverse("disputes:payment_apply", args=[cash.pk])
    response = analyst_client.get(url)
    assert response.status_code == 200 and invoice.number in response.content.decode()
    response = analyst_client.post(url, {"invoice_number": invoice.number, "reason": "Remittance advice"})
    assert response.status_code == 303
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert InvoiceException.objects.get(payment=cash).state == "resolved"


def test_apply_to_an_unknown_invoice_is_an_error_not_a_crash(analyst, analyst_client):
    cash = _pay(analyst, "A-2", "30.00", "typo")
    response = analyst_client.post(reverse("disputes:payment_apply", args=[cash.pk]),
                                   {"invoice_number": "NOPE", "reason": "x"})
    assert response.status_code == 200
    assert "No invoice with this number" in response.content.decode()


def test_close_a_payment_exception_as_refunded(analyst, analyst_client):
    cash = _pay(analyst, "C-1", "30.00", "typo")
    exception = cash.exceptions.get()
    response = analyst_client.post(reverse("disputes:payment_exception_resolve", args=[exception.pk]),
                                   {"reason": "Refunded on 22 April"})
    assert response.status_code == 303
    exception.refresh_from_db()
    assert (exception.state, exception.resolution_reason) == ("resolved", "Refunded on 22 April")


def test_invoice_panel_is_a_fixed_number_of_queries(analyst, analyst_client, django_assert_max_num_queries):
    invoice = issued_invoice(total="1000.00")
    _pay(analyst, "P-0", "10.00", invoice.number)
    page = reverse("billing:invoice_detail", args=[invoice.pk])
    with django_assert_max_num_queries(60) as few:
        analyst_client.get(page)
    for i in range(1, 8):
        _pay(analyst, f"P-{i}", "10.00", invoice.number)
    _pay(analyst, "P-usd", "10.00", invoice.number, currency="USD")
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = analyst_client.get(page).content.decode()
    assert "P-7" in body and "P-usd" in body and "Balance" in body


def test_apply_candidates_put_the_exact_balance_first_and_choose_prefills(analyst, analyst_client):
    payer = ClientFactory()
    older = issued_invoice(total="900.00", contract=ContractFactory(client=payer))
    exact = issued_invoice(total="300.00", contract=ContractFactory(client=payer),
                           due_date=older.due_date + datetime.timedelta(days=30))
    issued_invoice(total="300.00")  # another client's: not offered for this payer's cash
    cash = _pay(analyst, "A-3", "300.00", "typo", client=payer)
    response = analyst_client.get(reverse("disputes:payment_apply", args=[cash.pk]), {"invoice": exact.number})
    assert [i.number for i in response.context["candidates"]] == [exact.number, older.number]
    assert response.context["form"].initial["invoice_number"] == exact.number


def test_auditor_sees_the_payment_panel_without_the_form(client, analyst):
    invoice = issued_invoice(total="500.00")
    _pay(analyst, "AU-1", "100.00", invoice.number)
    client.force_login(UserFactory(groups=["auditor"]))
    body = client.get(reverse("billing:invoice_detail", args=[invoice.pk])).content.decode()
    assert "AU-1" in body and "Balance" in body and "Record payment…" not in body
