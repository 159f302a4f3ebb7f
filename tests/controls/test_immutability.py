"""Numbered documents are immutable in the database, not only in the code; numbers are gapless; never bill twice.

Each test is one attempt to change, delete or re-use what a numbered invoice froze — through the
services, the ORM (`save()`, `QuerySet.update()`, `delete()`) and raw SQL on PostgreSQL (where triggers
and constraints guard; the SQL attempts are marked `postgres`). Controls: `immutability`,
`gapless-numbering`, `never-bill-twice` in docs/controls.md.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Invoice, InvoiceDocument, InvoiceLine, InvoiceTax, TimeEntry
from billing.services.invoices import invoice_approve, invoice_cancel, invoice_revalidate, invoice_write_down_to_cap
from kernel.roles import FINANCE_ANALYST, FINANCE_CONTROLLER
from tests.controls.conftest import attempt, pending_invoice
from tests.factories import InvoiceFactory, InvoiceLineFactory, InvoiceTaxFactory, TimeEntryFactory, UserFactory

pytestmark = pytest.mark.django_db

FROZEN_CHANGES = {
    "total": Decimal("1.00"),
    "subtotal": Decimal("1.00"),
    "tax_total": Decimal("0.00"),
    "number": "XX-2025-999999",
    "issue_date": datetime.date(2030, 1, 1),
    "due_date": datetime.date(2030, 1, 1),
    "currency": "USD",
    "po_number": "PO-FORGED",
}


@pytest.fixture
def numbered():
    """A posted invoice numbered by the real approval service, with a line and a tax row."""
    preparer = UserFactory(username="imm-preparer", groups=[FINANCE_ANALYST])
    approver = UserFactory(username="imm-approver", groups=[FINANCE_ANALYST])
    invoice = InvoiceFactory(prepared_by=preparer, subtotal=Decimal("800.00"), tax_total=Decimal("152.00"),
                             total=Decimal("952.00"))
    InvoiceLineFactory(invoice=invoice)
    InvoiceTaxFactory(invoice=invoice)
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PENDING_APPROVAL)
    from approvals.services import approval_request_open

    invoice.refresh_from_db()
    approval_request_open(subject=invoice, user=preparer)
    invoice = invoice_approve(invoice=invoice, user=approver, comment="ok")
    assert invoice.number and invoice.status == Invoice.Status.POSTED
    return invoice


def _unchanged(invoice: Invoice, before: dict) -> bool:
    fresh = Invoice.objects.filter(pk=invoice.pk).values(*before).first()
    return fresh == before


def _snapshot(invoice: Invoice) -> dict:
    return Invoice.objects.filter(pk=invoice.pk).values(*FROZEN_CHANGES, "client_id", "contract_id").first()


# --- the services refuse ----------------------------------------------------------------------------


@pytest.mark.control("immutability")
@pytest.mark.parametrize("service", ["revalidate", "cancel", "write_down"])
def test_services_refuse_to_touch_a_numbered_invoice(numbered, service):
    controller = UserFactory(username="imm-controller", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER])
    before = _snapshot(numbered)
    call = {
        "revalidate": lambda: invoice_revalidate(invoice=numbered, user=controller),
        "cancel": lambda: invoice_cancel(invoice=numbered, user=controller, reason="Try"),
        "write_down": lambda: invoice_write_down_to_cap(invoice=numbered, user=controller, reason="Try"),
    }[service]

    assert attempt(call) is not None
    assert _unchanged(numbered, before) and numbered.lines.count() == 1


# --- the ORM and raw SQL: the database refuses (PostgreSQL triggers) ----------------------------------


@pytest.mark.postgres
@pytest.mark.control("immutability")
@pytest.mark.parametrize("field", sorted(FROZEN_CHANGES))
def test_queryset_update_of_a_frozen_field_is_refused_by_the_database(numbered, field):
    before = _snapshot(numbered)

    assert attempt(lambda: Invoice.objects.filter(pk=numbered.pk).update(**{field: FROZEN_CHANGES[field]}))

    assert _unchanged(numbered, before)


@pytest.mark.postgres
@pytest.mark.control("immutability")
def test_saving_a_changed_instance_is_refused_by_the_database(numbered):
    before = _snapshot(numbered)
    numbered.total = Decimal("0.01")

    assert attempt(lambda: numbered.save(update_fields=["total"]))

    assert _unchanged(numbered, before)


@pytest.mark.postgres
@pytest.mark.control("immutability")
@pytest.mark.parametrize("sql", [
    "UPDATE billing_invoice SET total = 0 WHERE id = %s",
    "UPDATE billing_invoice SET number = NULL WHERE id = %s",
    "UPDATE billing_invoice SET client_id = client_id + 0, due_date = due_date + 30 WHERE id = %s",
    "DELETE FROM billing_invoice WHERE id = %s",
    "UPDATE billing_invoiceline SET amount = 0 WHERE invoice_id = %s",
    "DELETE FROM billing_invoiceline WHERE invoice_id = %s",
    "INSERT INTO billing_invoiceline (invoice_id, position, kind, description, quantity, unit_price, amount, "
    "rate_source, rate_source_label) VALUES (%s, 99, 'time', 'forged', 1, 1, 1, '', '')",
    "UPDATE billing_invoicetax SET amount = 0 WHERE invoice_id = %s",
    "DELETE FROM billing_invoicetax WHERE invoice_id = %s",
])
def test_raw_sql_on_a_numbered_invoice_is_refused(numbered, sql):
    before = _snapshot(numbered)
    lines = list(InvoiceLine.objects.filter(invoice=numbered).values_list("amount", flat=True))

    def run():
        with connection.cursor() as cursor:
            cursor.execute(sql, [numbered.pk])

    assert attempt(run) is not None
    assert _unchanged(numbered, before)
    assert list(InvoiceLine.objects.filter(invoice=numbered).values_list("amount", flat=True)) == lines
    assert InvoiceTax.objects.filter(invoice=numbered).count() == 1


@pytest.mark.postgres
@pytest.mark.control("immutability")
def test_a_numbered_invoice_without_lines_cannot_be_deleted_either(numbered):
    """Found by this suite: the trigger fired on UPDATE only, so a numbered invoice without lines could be
    deleted with SQL (a hole in the numbering). Migration billing/0009 makes it fire on DELETE too."""
    bare = InvoiceFactory(status="posted")
    Invoice.objects.filter(pk=bare.pk).update(number="BARE-2025-000001")

    def run():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM billing_invoice WHERE id = %s", [bare.pk])

    assert attempt(run) is not None
    assert attempt(lambda: Invoice.objects.filter(pk=bare.pk).delete()) is not None
    assert Invoice.objects.filter(pk=bare.pk, number="BARE-2025-000001").exists()


@pytest.mark.postgres
@pytest.mark.control("immutability")
@pytest.mark.parametrize("how", ["orm_line_update", "orm_line_create", "orm_line_delete", "orm_tax_update",
                                 "orm_invoice_delete"])
def test_orm_changes_to_lines_and_taxes_are_refused(numbered, how):
    before = _snapshot(numbered)
    call = {
        "orm_line_update": lambda: InvoiceLine.objects.filter(invoice=numbered).update(amount=Decimal("0")),
        "orm_line_create": lambda: InvoiceLineFactory(invoice=numbered, position=50),
        "orm_line_delete": lambda: InvoiceLine.objects.filter(invoice=numbered).delete(),
        "orm_tax_update": lambda: InvoiceTax.objects.filter(invoice=numbered).update(amount=Decimal("0")),
        "orm_invoice_delete": lambda: Invoice.objects.filter(pk=numbered.pk).delete(),
    }[how]

    assert attempt(call) is not None
    assert _unchanged(numbered, before) and numbered.lines.count() == 1


@pytest.mark.postgres
@pytest.mark.control("immutability")
@pytest.mark.parametrize("how", ["update", "delete", "insert_for_draft"])
def test_issued_documents_never_change(numbered, how):
    document = InvoiceDocument.objects.create(invoice=numbered, kind=InvoiceDocument.Kind.UBL, content=b"<Invoice/>",
                                              sha256="0" * 64, size=10)
    original = bytes(document.content)

    if how == "update":
        call = lambda: InvoiceDocument.objects.filter(pk=document.pk).update(content=b"forged")  # noqa: E731
    elif how == "delete":
        call = lambda: InvoiceDocument.objects.filter(pk=document.pk).delete()  # noqa: E731
    else:
        draft = InvoiceFactory()
        call = lambda: InvoiceDocument.objects.create(  # noqa: E731
            invoice=draft, kind=InvoiceDocument.Kind.UBL, content=b"x", sha256="0" * 64, size=1
        )

    assert attempt(call) is not None
    assert bytes(InvoiceDocument.objects.get(pk=document.pk).content) == original


# --- gapless numbering --------------------------------------------------------------------------------


@pytest.mark.control("gapless-numbering")
def test_numbers_are_consecutive_and_a_rejected_or_cancelled_draft_takes_none():
    preparer = UserFactory(username="gap-preparer", groups=[FINANCE_ANALYST])
    approver = UserFactory(username="gap-approver", groups=[FINANCE_ANALYST, FINANCE_CONTROLLER])
    first = pending_invoice(prepared_by=preparer)
    rejected = pending_invoice(prepared_by=preparer, contract=first.contract)
    second = pending_invoice(prepared_by=preparer, contract=first.contract)

    first = invoice_approve(invoice=first, user=approver)
    from billing.services.invoices import invoice_reject

    rejected = invoice_reject(invoice=rejected, user=approver, reason="Wrong period")
    invoice_cancel(invoice=rejected, user=approver, reason="Not needed")
    second = invoice_approve(invoice=second, user=approver)

    rejected.refresh_from_db()
    assert rejected.number is None
    assert int(first.number[-6:]) + 1 == int(second.number[-6:])


@pytest.mark.postgres
@pytest.mark.control("gapless-numbering")
def test_a_number_cannot_be_given_twice(numbered):
    draft = InvoiceFactory(contract=numbered.contract)

    assert attempt(lambda: Invoice.objects.filter(pk=draft.pk).update(number=numbered.number)) is not None
    assert Invoice.objects.filter(number=numbered.number).count() == 1


# --- never bill twice ------------------------------------------------------------------------------------


@pytest.mark.control("never-bill-twice")
@pytest.mark.parametrize("how", ["invoiced_without_line", "line_without_invoiced"])
def test_an_item_is_invoiced_if_and_only_if_it_is_linked(numbered, how):
    entry = TimeEntryFactory(status="approved", project__contract=numbered.contract)
    line = numbered.lines.first()
    if how == "invoiced_without_line":
        call = lambda: TimeEntry.objects.filter(pk=entry.pk).update(status="invoiced")  # noqa: E731
    else:
        call = lambda: TimeEntry.objects.filter(pk=entry.pk).update(invoice_line=line)  # noqa: E731

    assert attempt(call) is not None
    entry.refresh_from_db()
    assert entry.status == "approved" and entry.invoice_line_id is None
