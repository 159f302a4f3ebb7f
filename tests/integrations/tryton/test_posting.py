"""Billable's invoices and credit notes posted to a real Tryton 8.2 through the outbox, checked in Tryton."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Invoice
from integrations.erp.tryton import DEMO_TAXES
from integrations.models import OutboxMessage
from integrations.services.outbox import outbox_deliver, outbox_enqueue_document
from tests.factories import UserFactory
from tests.integrations.tryton.factories import approved_document, client_of, demo_entities

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
Status = OutboxMessage.Status

INVOICE_FIELDS = ["number", "reference", "state", "type", "untaxed_amount", "tax_amount", "total_amount",
                  "amount_to_pay", "currency.code", "company", "party.code", "party.name", "invoice_date",
                  "lines", "taxes", "sequence_type_cache"]


def deliver_all(invoice: Invoice) -> OutboxMessage:
    """Enqueue the document (and its customer when new) and deliver every pending message."""
    message = outbox_enqueue_document(invoice=invoice, user=UserFactory())
    for pending in OutboxMessage.objects.filter(status=Status.PENDING).order_by("pk"):
        assert outbox_deliver(pending.pk) == "delivered", OutboxMessage.objects.get(pk=pending.pk).last_error
    message.refresh_from_db()
    return message


def tryton_invoice(tryton, erp_id: str) -> dict:
    (row,) = tryton.call("model.account.invoice.read", [int(erp_id)], INVOICE_FIELDS)
    return row


def test_invoice_is_posted_in_tryton_with_its_lines_taxes_and_totals(tryton, tryton_settings):
    entities = demo_entities()
    nwb = entities["NWB"]
    client, category, rate = client_of(nwb, 0)
    invoice = approved_document(nwb, client, category=category, rate=rate, lines=[
        ("Senior consultant, October", "7.50", "120.0000"), ("Travel expenses", "1", "85.40"),
        ("Volume discount", "1", "-45.27"),
    ])

    message = deliver_all(invoice)

    invoice.refresh_from_db()
    assert message.status == Status.DELIVERED and invoice.status == Invoice.Status.POSTED
    row = tryton_invoice(tryton, invoice.erp_id)
    assert row["reference"] == invoice.number and row["state"] == "posted" and row["type"] == "out"
    assert row["number"].startswith("NWB-INV-2026-")  # Tryton's own number, in its invoice sequence
    assert (row["untaxed_amount"], row["tax_amount"], row["total_amount"]) == (
        invoice.subtotal, invoice.tax_total, invoice.total) == (Decimal("940.13"), Decimal("178.62"),
                                                               Decimal("1118.75"))
    assert row["amount_to_pay"] == invoice.total
    assert row["currency."]["code"] == "EUR" and row["party."]["code"] == client.code
    assert len(row["lines"]) == 3
    # Tryton books the discount's tax on a line of its own (rounded apart: 187.23 and -8.60 would make 178.63);
    # the adapter moved the cent so the ERP books Billable's 178.62.
    taxes = tryton.call("model.account.invoice.tax.read", row["taxes"], ["description", "base", "amount"])
    assert {t["description"] for t in taxes} == {"VAT 19% (S)"}
    assert sum(t["base"] for t in taxes) == Decimal("940.13") and sum(t["amount"] for t in taxes) == Decimal("178.62")
    client.refresh_from_db()
    (party,) = tryton.call("model.party.party.read", [int(client.erp_id)], ["code", "name", "identifiers"])
    assert party["code"] == client.code and party["name"] == client.legal_name


LINE_SETS = [
    [("Senior consultant", "12.00", "135.0000"), ("Analyst", "6.25", "88.5000")],
    [("Monthly retainer", "1", "4200.00")],
    [("Workshop day", "2.00", "1450.0000"), ("Travel", "1", "312.18"), ("Goodwill discount", "1", "-150.00")],
    [("Milestone 2: design sign-off", "1", "9875.50")],
    [("Consulting, 7.5 h", "7.50", "119.9900")],
    [("Hours", "3.25", "210.0000"), ("Expenses", "1", "47.35"), ("Expenses", "1", "12.99")],
    [("Retainer overage", "4.75", "160.0000")],
]


def test_documents_of_the_three_entities_are_posted_once_each_and_match_in_tryton(tryton, tryton_settings):
    """21 invoices and 3 credit notes of NWB (DE, EUR), TLL (GB, GBP) and HUD (US, USD), checked one by one."""
    import time

    entities = demo_entities()
    documents = []
    for entity in entities.values():
        for i, lines in enumerate(LINE_SETS):
            client, category, rate = client_of(entity, i)
            documents.append(approved_document(entity, client, category=category, rate=rate, lines=lines))
        first = documents[-len(LINE_SETS)]
        documents.append(approved_document(entity, first.client, category=first.taxes.get().category,
                                           rate=str(first.taxes.get().rate), lines=LINE_SETS[0][:1],
                                           kind=Invoice.Kind.CREDIT_NOTE, credit_of=first))
    user = UserFactory()
    for document in documents:
        outbox_enqueue_document(invoice=document, user=user)
    started = time.monotonic()
    for pending in OutboxMessage.objects.filter(status=Status.PENDING).order_by("pk"):
        assert outbox_deliver(pending.pk) == "delivered", OutboxMessage.objects.get(pk=pending.pk).last_error
    elapsed = time.monotonic() - started
    print(f"\n{len(documents)} documents (and their customers) posted to Tryton in {elapsed:.1f}s "
          f"by one in-process worker: {len(documents) / elapsed:.2f} documents/s")

    companies = {c["party."]["name"]: c["id"] for c in tryton.call(
        "model.company.company.search_read", [], 0, None, None, ["party.name"])}
    assert len(documents) >= 20
    for document in documents:
        document.refresh_from_db()
        assert document.status == Invoice.Status.POSTED and document.erp_id
        row = tryton_invoice(tryton, document.erp_id)
        credit = document.kind == Invoice.Kind.CREDIT_NOTE
        sign = -1 if credit else 1
        code = document.entity.code
        assert row["reference"] == document.number and row["state"] == "posted", document.number
        assert row["number"].startswith(f"{code}-{'CRN' if credit else 'INV'}-2026-"), row["number"]
        assert row["sequence_type_cache"] == ("credit_note" if credit else "invoice")
        assert row["company"] == companies[document.entity.name]
        assert row["currency."]["code"] == document.currency == document.entity.currency
        assert row["party."]["code"] == document.client.code
        assert (row["untaxed_amount"], row["tax_amount"], row["total_amount"]) == (
            sign * document.subtotal, sign * document.tax_total, sign * document.total), document.number
        assert row["amount_to_pay"] == sign * document.total
        taxes = tryton.call("model.account.invoice.tax.read", row["taxes"], ["tax.name", "amount"])
        (billable_tax,) = document.taxes.all()
        mapped = {(c, r): n for c, r, n in DEMO_TAXES[code]}
        assert {t["tax."]["name"] for t in taxes} == {mapped[(billable_tax.category, f"{billable_tax.rate:.2f}")]}
        assert sum(t["amount"] for t in taxes) == sign * document.tax_total
    # Exactly once: one Tryton invoice per Billable number.
    references = [r["reference"] for r in tryton.call(
        "model.account.invoice.search_read", [("reference", "in", [d.number for d in documents])], 0, None, None,
        ["reference"])]
    assert sorted(references) == sorted(d.number for d in documents)


def test_a_rounding_tie_books_billables_half_up_tax(tryton, tryton_settings):
    """1.50 at 19 % is 0.285: Billable rounds half up to 0.29, Tryton half to even to 0.28; the ERP books 0.29."""
    nwb = demo_entities()["NWB"]
    client, category, rate = client_of(nwb, 0)
    invoice = approved_document(nwb, client, category=category, rate=rate, lines=[("Small item", "1", "1.50")])
    assert invoice.tax_total == Decimal("0.29")
    deliver_all(invoice)
    invoice.refresh_from_db()
    row = tryton_invoice(tryton, invoice.erp_id)
    assert (row["tax_amount"], row["total_amount"], row["state"]) == (Decimal("0.29"), Decimal("1.79"), "posted")


def test_an_unmapped_tax_is_a_dead_letter_and_nothing_reaches_tryton(tryton, tryton_settings):
    tll = demo_entities()["TLL"]
    client, _category, _rate = client_of(tll, 0)
    invoice = approved_document(tll, client, category="Z", rate="0.00", lines=[("Zero-rated books", "1", "80.00")])
    message = outbox_enqueue_document(invoice=invoice, user=UserFactory())
    for pending in OutboxMessage.objects.filter(status=Status.PENDING).order_by("pk"):
        outbox_deliver(pending.pk)
    message.refresh_from_db()
    assert message.status == Status.DEAD
    assert "no ERP tax mapped for Z 0.00%" in message.last_error
    assert tryton.call("model.account.invoice.search", [("reference", "=", invoice.number)], 0, None, None) == []


def test_a_closed_period_is_rejected_by_tryton_into_the_dead_letter_queue_with_its_message(tryton, tryton_settings):
    import datetime

    hud = demo_entities()["HUD"]
    client, category, rate = client_of(hud, 0)
    companies = tryton.call("model.company.company.search", [("party.name", "=", hud.name)], 0, None, None)
    context = {"company": companies[0], "companies": companies}
    periods = tryton.call("model.account.period.search", [("company", "=", companies[0]),
                                                          ("start_date", "=", datetime.date(2025, 3, 1)),
                                                          ("type", "=", "standard")], 0, None, None, context=context)
    tryton.call("model.account.period.close", periods, context=context)  # the ERP's month-end close
    invoice = approved_document(hud, client, category=category, rate=rate, lines=[("Late fee", "1", "250.00")],
                                issue=datetime.date(2025, 3, 14))
    message = outbox_enqueue_document(invoice=invoice, user=UserFactory())
    for pending in OutboxMessage.objects.filter(status=Status.PENDING).order_by("pk"):
        outbox_deliver(pending.pk)
    message.refresh_from_db()
    invoice.refresh_from_db()
    assert message.status == Status.DEAD and message.attempts == 1
    assert message.last_error.startswith("permanent: Tryton rejected it:")
    assert 'reopen the period "2025-03" of company "Hudson Advisory Inc"' in message.last_error, message.last_error
    assert invoice.status == Invoice.Status.APPROVED and not invoice.erp_id
    # No draft is left behind in Tryton.
    assert tryton.call("model.account.invoice.search", [("reference", "=", invoice.number)], 0, None, None) == []


def test_an_expired_session_logs_in_again(tryton, tryton_settings):
    import base64

    from integrations.erp.base import get_adapter

    nwb = demo_entities()["NWB"]
    client, category, rate = client_of(nwb, 1)
    adapter = get_adapter()
    adapter.company("NWB")  # logged in
    assert adapter.client.logins == 1
    # Tryton forgot the session (timeout): its next answer is HTTP 401.
    bogus = base64.b64encode(f"{adapter.client.user}:{adapter.client.user_id}:expired".encode()).decode()
    adapter.client._auth = f"Session {bogus}"
    invoice = approved_document(nwb, client, category=category, rate=rate, lines=[("Advice", "1", "500.00")])
    message = deliver_all(invoice)
    assert message.status == Status.DELIVERED and adapter.client.logins == 2
