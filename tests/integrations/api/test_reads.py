"""Read endpoints: shapes, filters, cursor pagination, scopes and query counts that do not grow with rows."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Invoice, InvoiceException
from disputes.models import Dispute, DisputeLine
from tests.factories import (
    BillingRunFactory,
    ClientFactory,
    ContractFactory,
    InvoiceExceptionFactory,
    InvoiceFactory,
    LegalEntityFactory,
    PaymentFactory,
    UserFactory,
)

from .factories import posted_invoice, with_payment_and_exception
from .helpers import assert_error

pytestmark = pytest.mark.django_db


def _get_all(api, url, **params):
    """Follow the cursor to the end; returns every row."""
    rows, response = [], api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        rows.extend(body["results"])
        if not body["next"]:
            return rows
        response = api.get(body["next"])


def test_invoice_shape_with_lines_taxes_and_balance(reader):
    invoice = with_payment_and_exception(posted_invoice())
    _c, api = reader
    body = api.get("/api/v1/invoices/").json()
    assert set(body) == {"next", "previous", "results"}
    [row] = body["results"]
    assert row["id"] == invoice.pk and row["number"] == invoice.number and row["status"] == "posted"
    assert row["client"] == invoice.client.code and row["entity"] == invoice.entity.code
    assert row["contract"] == invoice.contract.code
    assert (row["subtotal"], row["tax_total"], row["total"]) == ("1600.00", "304.00", "1904.00")
    assert (row["credited_amount"], row["paid_amount"], row["balance"]) == ("0.00", "0.00", "1904.00")
    assert [line["amount"] for line in row["lines"]] == ["800.00", "800.00"]
    assert row["lines"][0]["role"] == "CONSULTANT"
    assert row["taxes"] == [
        {"category": "S", "rate": "19.0000", "base": "1600.00", "amount": "304.00", "legal_note": ""}
    ]
    assert row["documents"] == {
        "pdf": f"/api/v1/invoices/{invoice.pk}/pdf",
        "ubl": f"/api/v1/invoices/{invoice.pk}/ubl",
    }
    assert api.get(f"/api/v1/invoices/{invoice.pk}/").json() == row


def test_balance_follows_credits_and_payments(reader):
    invoice = posted_invoice()
    Invoice.objects.filter(pk=invoice.pk).update(credited_amount=Decimal("238.00"), paid_amount=Decimal("500.00"))
    _c, api = reader
    row = api.get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert (row["credited_amount"], row["paid_amount"], row["balance"]) == ("238.00", "500.00", "1166.00")


def test_credit_notes_are_their_own_list_and_name_the_credited_invoice(reader):
    original = posted_invoice()
    note = InvoiceFactory(
        contract=original.contract, kind=Invoice.Kind.CREDIT_NOTE, credit_of=original, number="CN-1",
        status=Invoice.Status.APPROVED, total=Decimal("238.00"), subtotal=Decimal("200.00"),
    )
    _c, api = reader
    assert [r["id"] for r in api.get("/api/v1/invoices/").json()["results"]] == [original.pk]
    [row] = api.get("/api/v1/credit-notes/").json()["results"]
    assert row["id"] == note.pk and row["kind"] == "credit_note" and row["credit_of"] == original.number
    assert_error(api.get(f"/api/v1/invoices/{note.pk}/"), 404, "not_found")
    assert api.get(f"/api/v1/credit-notes/{note.pk}/").status_code == 200


def test_invoice_filters(reader):
    acme = ClientFactory(code="ACME")
    other_entity = LegalEntityFactory(code="TLL", country="GB", currency="GBP")
    a = posted_invoice(contract=ContractFactory(client=acme), issue_date=datetime.date(2025, 4, 1))
    b = posted_invoice(contract=ContractFactory(entity=other_entity), issue_date=datetime.date(2025, 5, 1))
    c = posted_invoice(status=Invoice.Status.SENT, issue_date=datetime.date(2025, 6, 1))
    draft = InvoiceFactory(status=Invoice.Status.DRAFT)
    _c, api = reader

    def ids(**params):
        return sorted(r["id"] for r in _get_all(api, "/api/v1/invoices/", **params))

    assert ids() == sorted([a.pk, b.pk, c.pk, draft.pk])
    assert ids(status="sent") == [c.pk]
    assert ids(status=["posted", "sent"]) == sorted([a.pk, b.pk, c.pk])
    assert ids(client="ACME") == [a.pk]
    assert ids(client=f"ACME,{b.client.code}") == sorted([a.pk, b.pk])
    assert ids(entity="TLL") == [b.pk]
    assert ids(issue_date_from="2025-04-15", issue_date_to="2025-05-31") == [b.pk]
    assert ids(number=c.number) == [c.pk]
    later = timezone.now() + datetime.timedelta(seconds=1)
    Invoice.objects.filter(pk=b.pk).update(updated_at=later + datetime.timedelta(minutes=1))
    assert ids(updated_since=later.isoformat()) == [b.pk]
    body = assert_error(api.get("/api/v1/invoices/", {"status": "nonsense"}), 400, "invalid")
    assert "status" in body["field_errors"]
    assert_error(api.get("/api/v1/invoices/", {"issue_date_from": "yesterday"}), 400, "invalid")


def test_cursor_pagination_walks_every_row_once(reader):
    invoices = [posted_invoice(lines=1) for _ in range(7)]
    _c, api = reader
    first = api.get("/api/v1/invoices/", {"page_size": 3}).json()
    assert len(first["results"]) == 3 and first["previous"] is None and "cursor=" in first["next"]
    rows = _get_all(api, "/api/v1/invoices/", page_size=3)
    assert [r["id"] for r in rows] == sorted((i.pk for i in invoices), reverse=True)
    assert_error(api.get("/api/v1/invoices/", {"cursor": "garbage"}), 404, "not_found")
    assert len(api.get("/api/v1/invoices/", {"page_size": 10_000}).json()["results"]) == 7  # capped at 200


def _queries(api, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url",
    ["/api/v1/invoices/", "/api/v1/payments/", "/api/v1/disputes/", "/api/v1/exceptions/", "/api/v1/credit-notes/"],
)
def test_list_queries_do_not_grow_with_rows(reader, url, django_assert_max_num_queries):
    _c, api = reader
    owner = UserFactory()

    def make(n):
        for _ in range(n):
            invoice = with_payment_and_exception(posted_invoice())
            dispute = Dispute.objects.create(
                invoice=invoice, category="rate", disputed_amount=Decimal("10.00"), currency="EUR", owner=owner,
                due_date=datetime.date(2025, 5, 1), opened_by=owner, opened_at=timezone.now(),
            )
            DisputeLine.objects.create(dispute=dispute, invoice_line=invoice.lines.first(), amount=Decimal("10.00"))
            InvoiceFactory(contract=invoice.contract, kind="credit_note", credit_of=invoice, number=f"CN-{invoice.pk}",
                           status="approved")
            PaymentFactory(invoice=None, client=invoice.client, amount=Decimal("5.00"))  # unapplied cash
            InvoiceExceptionFactory(invoice=None, payment=PaymentFactory(invoice=None, client=None),
                                    code="PAYMENT_UNMATCHED", severity="warning")

    make(2)
    api.get("/api/v1/whoami/")  # the token's last-use stamp is written once a minute: not in the counts
    few = _queries(api, url)
    make(8)
    many = _queries(api, url)
    assert many == few, (few, many)
    with django_assert_max_num_queries(5):
        api.get(url)


def test_payments_list_and_filters(reader):
    invoice = posted_invoice()
    applied = PaymentFactory(invoice=invoice, client=invoice.client, amount=Decimal("300.00"), source="webhook")
    unapplied = PaymentFactory(invoice=None, client=invoice.client, amount=Decimal("50.00"))
    _c, api = reader
    rows = {r["id"]: r for r in _get_all(api, "/api/v1/payments/")}
    assert rows[applied.pk]["invoice_number"] == invoice.number and rows[applied.pk]["amount"] == "300.00"
    assert rows[unapplied.pk]["invoice"] is None and rows[unapplied.pk]["client"] == invoice.client.code
    assert [r["id"] for r in _get_all(api, "/api/v1/payments/", unapplied="true")] == [unapplied.pk]
    assert [r["id"] for r in _get_all(api, "/api/v1/payments/", invoice=invoice.number)] == [applied.pk]
    assert [r["id"] for r in _get_all(api, "/api/v1/payments/", source="webhook")] == [applied.pk]
    assert api.get(f"/api/v1/payments/{applied.pk}/").json()["external_reference"] == applied.external_reference


def test_exceptions_are_open_ones_by_default_with_follow_ups(reader):
    draft = InvoiceFactory()
    blocking = InvoiceExceptionFactory(invoice=draft, code="CAP_EXCEEDED", amount=Decimal("120.00"))
    resolved = InvoiceExceptionFactory(invoice=draft, code="MISSING_RATE", state="resolved")
    unmatched = InvoiceExceptionFactory(
        invoice=None, payment=PaymentFactory(invoice=None, client=ClientFactory(code="PAYER")),
        code="PAYMENT_UNMATCHED", severity="warning", message="Unknown invoice reference.",
    )
    _c, api = reader
    rows = {r["id"]: r for r in _get_all(api, "/api/v1/exceptions/")}
    assert set(rows) == {blocking.pk, unmatched.pk}
    assert rows[blocking.pk]["follow_up"] is False and rows[blocking.pk]["amount"] == "120.00"
    assert rows[blocking.pk]["invoice_number"] == f"DRAFT-{draft.pk}"
    assert rows[unmatched.pk]["follow_up"] is True and rows[unmatched.pk]["client"] == "PAYER"
    assert [r["id"] for r in _get_all(api, "/api/v1/exceptions/", follow_up="true")] == [unmatched.pk]
    assert [r["id"] for r in _get_all(api, "/api/v1/exceptions/", state="resolved")] == [resolved.pk]
    assert [r["id"] for r in _get_all(api, "/api/v1/exceptions/", code="CAP_EXCEEDED,X")] == [blocking.pk]
    assert [r["id"] for r in _get_all(api, "/api/v1/exceptions/", client="PAYER")] == [unmatched.pk]
    assert InvoiceException.FOLLOW_UP_CODES  # the follow-up flag follows the model's list


def test_billing_runs_list_and_poll(reader):
    run = BillingRunFactory(contract_codes=["C-1"])
    _c, api = reader
    [row] = api.get("/api/v1/billing-runs/").json()["results"]
    assert row["id"] == run.pk and row["status"] == "queued" and row["contract_codes"] == ["C-1"]
    assert api.get(f"/api/v1/billing-runs/{run.pk}/").json()["period_start"] == "2025-03-01"
    assert api.get("/api/v1/billing-runs/", {"status": "done"}).json()["results"] == []


@pytest.mark.parametrize(
    "url", ["/api/v1/invoices/", "/api/v1/payments/", "/api/v1/disputes/", "/api/v1/exceptions/",
            "/api/v1/credit-notes/", "/api/v1/billing-runs/"],
)
def test_every_billing_read_needs_read_billing(make_client, url):
    from .conftest import bearer

    _c, token = make_client("crm", ("read:masterdata", "write:billing"))
    assert_error(bearer(token).get(url), 403, "insufficient_scope")


@pytest.mark.parametrize(
    "value", ["0543-11-05T09:58:06+20:24", "0001-01-01T00:00:00-05:00", "2025-13-01T00:00:00Z", "9999-12-31T23:59:59Z"]
)
def test_out_of_range_timestamps_are_400_not_a_crash(reader, value):
    """Found by schemathesis: PostgreSQL refuses offsets beyond ±15:59; the filter converts or refuses first."""
    _c, api = reader
    body = assert_error(api.get("/api/v1/invoices/", {"updated_since": value}), 400, "invalid")
    assert "updated_since" in body["field_errors"]


def test_timestamps_with_offsets_are_compared_in_utc(reader):
    invoice = posted_invoice()
    _c, api = reader
    stamp = invoice.updated_at.astimezone(datetime.timezone(datetime.timedelta(hours=14)))
    assert [r["id"] for r in _get_all(api, "/api/v1/invoices/", updated_since=stamp.isoformat())] == [invoice.pk]
