"""Purchase orders with a value: drawdown in runs and revalidation, the PO codes, credit notes and
cancellations giving balance back, the PO page (docs/rules/billing.md §13, ADR 0068)."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice
from billing.services.billing_run import bill_period
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import invoice_cancel, invoice_override, invoice_reject, invoice_revalidate
from billing.services.purchase_orders import committed_drawdown, po_figures, purchase_order_save
from kernel.errors import ApplicationError
from tests.billing.po_helpers import END, RUN_DATE, START, bill_hours, client, po_contract, purchase_order
from tests.disputes.factories import approve_fully
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _run(**kwargs):
    return bill_period(period_start=START, period_end=END, run_date=kwargs.pop("run_date", RUN_DATE), **kwargs)


def _invoice(contract) -> Invoice:
    return Invoice.objects.get(contract=contract, kind=Invoice.Kind.INVOICE)


def _codes(invoice: Invoice) -> set[str]:
    return set(invoice.exceptions.filter(state="open", severity="blocking").values_list("code", flat=True))


def test_drafts_draw_in_contract_order_and_the_one_that_does_not_fit_is_blocked_naming_the_balance():
    po = purchase_order(client(), amount="1500.00", raised_by="Jane Roe, procurement")
    first, second = po_contract("C-PO-A", po), po_contract("C-PO-B", po)
    bill_hours(first, "10.00")  # 1000.00
    bill_hours(second, "6.00")  # 600.00 > the 500.00 left
    _run()
    a, b = _invoice(first), _invoice(second)
    assert a.status == Invoice.Status.PENDING_APPROVAL and a.purchase_order == po
    assert b.status == Invoice.Status.EXCEPTION and _codes(b) == {"PO_EXCEEDED"}
    exception = b.exceptions.get(code="PO_EXCEEDED")
    assert "500.00 EUR left" in exception.message and exception.amount == Decimal("100.00")
    # The fix hint says how much is left and who can raise the PO.
    assert "500.00 EUR left on PO PO-4711" in exception.fix_hint and "Jane Roe, procurement" in exception.fix_hint
    assert a.po_number == b.po_number == "PO-4711"


def test_landing_exactly_on_the_balance_passes():
    po = purchase_order(client(), amount="1000.00")
    contract = po_contract("C-PO-EXACT", po)
    bill_hours(contract, "10.00")
    _run()
    assert _invoice(contract).status == Invoice.Status.PENDING_APPROVAL
    assert committed_drawdown([po.pk])[po.pk] == Decimal("1000.00")


def test_raising_the_po_then_revalidating_clears_po_exceeded():
    po = purchase_order(client(), amount="500.00")
    contract = po_contract("C-PO-RAISE", po)
    bill_hours(contract, "8.00")
    _run()
    invoice = _invoice(contract)
    assert _codes(invoice) == {"PO_EXCEEDED"}
    analyst = UserFactory(groups=["finance_analyst"])
    # Revalidating without a fix keeps it blocked (its own draft is not counted against itself).
    invoice = invoice_revalidate(invoice=invoice, user=analyst)
    assert invoice.status == Invoice.Status.EXCEPTION
    po.amount = Decimal("800.00")
    purchase_order_save(po=po, user=UserFactory(groups=["billing_admin"]), reason="Client raised the PO")
    invoice = invoice_revalidate(invoice=invoice, user=analyst)
    assert invoice.status == Invoice.Status.PENDING_APPROVAL and not _codes(invoice)


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "expired"),
    [
        (datetime.date(2025, 4, 3), None, True),  # not valid yet on the issue date
        (datetime.date(2025, 1, 1), datetime.date(2025, 4, 1), True),  # ended the day before
        (datetime.date(2025, 4, 2), datetime.date(2025, 4, 2), False),  # bounds inclusive
        (datetime.date(2025, 1, 1), None, False),  # open-ended
    ],
)
def test_po_expired_outside_the_validity(valid_from, valid_to, expired):
    po = purchase_order(client(), amount="5000.00", valid_from=valid_from, valid_to=valid_to)
    contract = po_contract("C-PO-VALID", po)
    bill_hours(contract, "1.00")
    _run()
    assert ("PO_EXPIRED" in _codes(_invoice(contract))) is expired


def test_an_invoice_in_another_currency_gets_a_mismatch_and_draws_nothing():
    the_client = client()
    po = purchase_order(the_client, amount="500.00", currency="EUR")
    usd = po_contract("C-PO-A-USD", po, currency="USD")
    eur = po_contract("C-PO-B-EUR", po)
    bill_hours(usd, "9.00")  # 900 USD: more than the PO, but never PO_EXCEEDED
    bill_hours(eur, "5.00")  # 500 EUR: the whole balance is still there
    _run()
    assert _codes(_invoice(usd)) == {"PO_CURRENCY_MISMATCH"}
    assert _invoice(eur).status == Invoice.Status.PENDING_APPROVAL


def test_a_contracts_po_must_belong_to_its_client():
    po = purchase_order(client())
    with pytest.raises(ApplicationError, match="another client"):
        po_contract("C-PO-FOREIGN", po, client=client())


def test_no_override_lets_a_po_exception_through():
    po = purchase_order(client(), amount="100.00")
    contract = po_contract("C-PO-OVR", po)
    bill_hours(contract, "2.00")
    _run()
    invoice = _invoice(contract)
    with pytest.raises(ApplicationError, match="no override lets through"):
        invoice_override(invoice=invoice, user=UserFactory(groups=["finance_controller"]), reason="Urgent")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.EXCEPTION


def test_cancelling_a_blocked_draft_gives_its_balance_back():
    po = purchase_order(client(), amount="1000.00")
    first, second = po_contract("C-PO-A", po), po_contract("C-PO-B", po)
    bill_hours(first, "8.00")
    bill_hours(second, "4.00")
    _run()
    assert _codes(_invoice(second)) == {"PO_EXCEEDED"}  # 800 + 400 > 1000
    analyst = UserFactory(groups=["finance_analyst"])
    rejected = invoice_reject(invoice=_invoice(first), user=analyst, reason="Billed by mistake")
    assert rejected.status == Invoice.Status.DRAFT
    invoice_cancel(invoice=rejected, user=analyst, reason="Billed by mistake")
    assert po_figures(po).remaining == Decimal("600.00")  # the blocked draft still holds its 400
    second_invoice = invoice_revalidate(invoice=_invoice(second), user=analyst)
    assert second_invoice.status == Invoice.Status.PENDING_APPROVAL


def test_an_issued_credit_note_gives_balance_back_and_the_po_amount_cannot_drop_below_what_is_invoiced():
    po = purchase_order(client(), amount="1000.00")
    contract = po_contract("C-PO-CN", po)
    bill_hours(contract, "10.00")
    _run()
    invoice = approve_fully(_invoice(contract), UserFactory(groups=["finance_analyst"]))
    assert invoice.number and committed_drawdown([po.pk])[po.pk] == Decimal("1000.00")
    admin = UserFactory(groups=["billing_admin"])
    po.amount = Decimal("999.99")
    with pytest.raises(ApplicationError):
        purchase_order_save(po=po, user=admin)
    po.refresh_from_db()

    preparer = UserFactory(groups=["finance_analyst"])
    note = credit_note_create(invoice=invoice, user=preparer, reason="Workshop not held", amount=Decimal("357.00"))
    assert note.purchase_order == po and note.subtotal == Decimal("300.00")
    assert po_figures(po).credited == Decimal("0")  # not issued yet: nothing given back
    approve_fully(note, UserFactory(groups=["finance_controller"]))
    figures = po_figures(po)
    assert (figures.invoiced, figures.credited, figures.remaining) == (
        Decimal("1000.00"), Decimal("300.00"), Decimal("300.00"),
    )
    po.amount = Decimal("700.00")  # exactly what is left invoiced
    purchase_order_save(po=po, user=admin, reason="Client reduced the PO")


def test_the_po_page_shows_the_figures_and_the_invoices_behind_it(client):
    from tests.factories import ClientFactory  # `client` here is Django's test client

    po = purchase_order(ClientFactory(), amount="2000.00")
    contract = po_contract("C-PO-PAGE", po)
    bill_hours(contract, "5.00")
    _run()
    client.force_login(UserFactory(groups=["finance_analyst"]))
    page = client.get(reverse("billing:purchase_order", args=[po.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "PO-4711" in html and _invoice(contract).display_number in html
    assert "1,500.00" in html or "1 500,00" in html or "1500.00" in html  # remaining, in the page's money format
