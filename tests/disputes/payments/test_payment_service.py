"""billing.services.payments: recording, applying, unapplied cash and its exceptions, on PostgreSQL."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django_fsm_log.models import StateLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from billing.models import Invoice, InvoiceException, Payment
from billing.services.payments import (
    OVERPAYMENT,
    PAYMENT_CURRENCY_MISMATCH,
    PAYMENT_ON_CLOSED_INVOICE,
    PAYMENT_UNMATCHED,
    payment_apply,
    payment_exception_resolve,
    payment_family,
    payment_record,
    payment_status_settle,
    unapplied_total,
)
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from tests.disputes.payments.factories import finance_user, issued_invoice
from tests.factories import ClientFactory, UserFactory

pytestmark = pytest.mark.django_db
DAY = datetime.date(2025, 4, 20)
Status = Invoice.Status


def record(quoted=None, amount="100.00", ref="BANK-1", *, user, currency="EUR", **kwargs) -> Payment:
    """Record a payment quoting invoice `quoted` (by its number), or as given in kwargs."""
    if quoted is not None:
        kwargs.setdefault("invoice_reference", quoted.number)
    return payment_record(
        amount=amount, currency=currency, date=kwargs.pop("date", DAY), external_reference=ref,
        source=kwargs.pop("source", Payment.Source.MANUAL), user=user, **kwargs,
    )


def open_exceptions(**filters) -> list[InvoiceException]:
    return list(InvoiceException.objects.filter(state="open", **filters).order_by("id"))


@pytest.fixture
def analyst():
    return finance_user()


def test_partial_then_full_payment_moves_sent_to_partially_paid_to_paid(analyst):
    invoice = issued_invoice(total="1190.00")
    first = record(invoice, "400.00", "BANK-1", user=analyst)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.balance) == (Status.PARTIALLY_PAID, Decimal("400.00"),
                                                                      Decimal("790.00"))
    assert first.invoice == invoice and first.client == invoice.client and first.recorded_by == analyst
    record(invoice, "790.00", "BANK-2", user=analyst)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == (Status.PAID, Decimal("0.00"))
    transitions = list(StateLog.objects.for_(invoice).order_by("id").values_list("transition", "by"))
    assert transitions == [("record_partial_payment", analyst.pk), ("record_full_payment", analyst.pk)]
    assert invoice.history.first().history_user == analyst  # saved with who and why
    assert not open_exceptions()


def test_a_posted_not_yet_sent_invoice_can_be_paid(analyst):
    invoice = issued_invoice(total="500.00", status=Status.POSTED)
    record(invoice, "500.00", user=analyst)
    invoice.refresh_from_db()
    assert invoice.status == Status.PAID


def test_same_reference_same_data_is_returned_not_applied_twice(analyst):
    invoice = issued_invoice(total="1000.00")
    first = record(invoice, "300.00", "BANK-7", user=analyst)
    again = record(invoice, "300.00", "BANK-7", user=analyst, source=Payment.Source.WEBHOOK)
    assert again.pk == first.pk
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("300.00")
    assert Payment.objects.count() == 1


def test_same_reference_other_data_is_a_conflict(analyst):
    invoice = issued_invoice(total="1000.00")
    record(invoice, "300.00", "BANK-8", user=analyst)
    with pytest.raises(ConflictError) as caught:
        record(invoice, "301.00", "BANK-8", user=analyst)
    assert caught.value.code == "conflict" and "external_reference" in caught.value.field_errors
    with pytest.raises(ConflictError):
        record(invoice, "300.00", "BANK-8", user=analyst, date=DAY + datetime.timedelta(days=1))
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("300.00")


def test_overpayment_applies_up_to_the_balance_and_keeps_the_excess_unapplied(analyst):
    invoice = issued_invoice(total="1000.00")
    payment = record(invoice, "1250.00", "BANK-9", user=analyst)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.balance) == (Status.PAID, Decimal("1000.00"), Decimal("0"))
    assert payment.amount == Decimal("1000.00") and payment.invoice == invoice
    excess = Payment.objects.get(external_reference="BANK-9~1")
    assert (excess.invoice, excess.client, excess.amount) == (None, invoice.client, Decimal("250.00"))
    [exception] = open_exceptions()
    assert (exception.code, exception.invoice, exception.payment, exception.amount, exception.severity) == (
        OVERPAYMENT, invoice, excess, Decimal("250.00"), "warning")
    assert exception.fix_url.endswith(f"/payments/{excess.pk}/apply/")
    assert unapplied_total() == {"EUR": Decimal("250.00")}
    # The whole payment, replayed, is recognised: its family adds up to what was received.
    assert record(invoice, "1250.00", "BANK-9", user=analyst).pk == payment.pk
    assert sum(p.amount for p in payment_family("BANK-9")) == Decimal("1250.00")


def test_a_payment_on_a_paid_invoice_is_all_excess(analyst):
    invoice = issued_invoice(total="100.00")
    record(invoice, "100.00", "BANK-10", user=analyst)
    late = record(invoice, "100.00", "BANK-11", user=analyst)
    assert late.invoice is None
    assert [e.code for e in open_exceptions()] == [OVERPAYMENT]
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("100.00")


def test_unknown_invoice_is_unapplied_cash_with_its_client_when_known(analyst):
    client = ClientFactory()
    payment = record(None, "99.00", "BANK-12", user=analyst, invoice_reference="NOPE-1", client=client)
    assert (payment.invoice, payment.client, payment.invoice_reference) == (None, client, "NOPE-1")
    [exception] = open_exceptions()
    assert (exception.code, exception.invoice, exception.payment) == (PAYMENT_UNMATCHED, None, payment)
    assert "NOPE-1" in exception.message


def test_currency_mismatch_is_unapplied_and_names_the_invoice(analyst):
    invoice = issued_invoice(total="100.00")
    payment = record(invoice, "100.00", "BANK-13", user=analyst, currency="USD")
    assert payment.invoice is None and payment.client == invoice.client
    [exception] = open_exceptions()
    assert (exception.code, exception.invoice, exception.amount) == (PAYMENT_CURRENCY_MISMATCH, invoice, None)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Status.SENT, Decimal("0"))


@pytest.mark.parametrize("status", [Status.CREDITED, Status.CANCELLED])
def test_payment_on_a_closed_invoice_is_unapplied(analyst, status):
    kwargs = {"number": None} if status == Status.CANCELLED else {}
    invoice = issued_invoice(total="100.00", status=status, **kwargs)
    payment = record(None, "100.00", "BANK-14", user=analyst, invoice=invoice)
    assert payment.invoice is None
    assert [e.code for e in open_exceptions(invoice=invoice)] == [PAYMENT_ON_CLOSED_INVOICE]


@pytest.mark.parametrize("status", [Status.APPROVED, Status.DRAFT])
def test_payment_on_an_invoice_not_issued_yet_is_unmatched(analyst, status):
    kwargs = {"number": None} if status == Status.DRAFT else {}
    invoice = issued_invoice(total="100.00", status=status, **kwargs)
    payment = record(None, "100.00", "BANK-15", user=analyst, invoice=invoice)
    assert payment.invoice is None
    assert [e.code for e in open_exceptions()] == [PAYMENT_UNMATCHED]


def test_disputed_invoice_takes_the_payment_but_keeps_its_status(analyst):
    invoice = issued_invoice(total="1000.00", status=Status.DISPUTED)
    record(invoice, "1000.00", "BANK-16", user=analyst)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.balance) == (Status.DISPUTED, Decimal("1000.00"), 0)
    assert not open_exceptions()


def test_settle_after_a_dispute_lets_the_status_follow_the_payments(analyst):
    invoice = issued_invoice(total="1000.00", status=Status.DISPUTED)
    record(invoice, "400.00", "BANK-17", user=analyst)
    invoice.refresh_from_db()
    invoice.mark_sent(by=analyst, description="Dispute withdrawn")
    invoice.save()
    payment_status_settle(invoice=invoice, user=analyst, reason="Dispute withdrawn")
    invoice.refresh_from_db()
    assert invoice.status == Status.PARTIALLY_PAID


def test_apply_unapplied_cash_later_resolves_its_exception(analyst):
    invoice = issued_invoice(total="500.00")
    cash = record(None, "300.00", "BANK-18", user=analyst, invoice_reference="typo")
    applied = payment_apply(payment=cash, invoice=invoice, user=analyst, reason="Payer confirmed by phone")
    invoice.refresh_from_db()
    assert (applied.invoice, invoice.status, invoice.paid_amount) == (invoice, Status.PARTIALLY_PAID, Decimal("300"))
    exception = InvoiceException.objects.get(payment=cash)
    assert exception.state == "resolved" and exception.resolved_by == analyst
    assert "Payer confirmed by phone" in exception.resolution_reason
    assert unapplied_total() == {}


def test_apply_more_than_the_balance_leaves_the_rest_unapplied(analyst):
    invoice = issued_invoice(total="100.00")
    cash = record(None, "250.00", "BANK-19", user=analyst)
    payment_apply(payment=cash, invoice=invoice, user=analyst, reason="Matched")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == (Status.PAID, 0)
    rest = Payment.objects.get(external_reference="BANK-19~1")
    assert (rest.invoice, rest.amount) == (None, Decimal("150.00"))
    assert [e.code for e in open_exceptions()] == [OVERPAYMENT]
    assert sum(p.amount for p in payment_family("BANK-19")) == Decimal("250.00")


def test_apply_refuses_other_currency_closed_or_applied(analyst):
    usd = issued_invoice(total="100.00", currency="USD")
    cash = record(None, "50.00", "BANK-20", user=analyst)
    with pytest.raises(ApplicationError, match="USD"):
        payment_apply(payment=cash, invoice=usd, user=analyst, reason="x")
    with pytest.raises(ApplicationError, match="credited"):
        payment_apply(payment=cash, invoice=issued_invoice(status=Status.CREDITED), user=analyst, reason="x")
    payment_apply(payment=cash, invoice=issued_invoice(total="100.00"), user=analyst, reason="ok")
    with pytest.raises(ApplicationError, match="already applied"):
        payment_apply(payment=cash, invoice=issued_invoice(total="100.00"), user=analyst, reason="again")
    with pytest.raises(ApplicationError, match="reason"):
        payment_apply(payment=cash, invoice=issued_invoice(total="100.00"), user=analyst, reason=" ")


def test_resolve_a_payment_exception_with_a_reason(analyst):
    cash = record(None, "50.00", "BANK-21", user=analyst)
    exception = InvoiceException.objects.get(payment=cash)
    payment_exception_resolve(exception=exception, user=analyst, reason="Refunded to the payer on 22 April")
    exception.refresh_from_db()
    assert (exception.state, exception.resolved_by) == ("resolved", analyst)
    assert unapplied_total() == {}
    with pytest.raises(ApplicationError, match="already resolved"):
        payment_exception_resolve(exception=exception, user=analyst, reason="again")


@pytest.mark.parametrize("role", ["collections", "auditor", "project_manager", None])
def test_only_finance_and_integrations_record_payments(role):
    user = UserFactory(groups=[role] if role else [])
    with pytest.raises(PermissionDeniedError):
        record(issued_invoice(), user=user)
    cash = record(None, "10.00", "BANK-22", user=finance_user())
    with pytest.raises(PermissionDeniedError):
        payment_apply(payment=cash, invoice=issued_invoice(), user=user, reason="x")
    with pytest.raises(PermissionDeniedError):
        payment_exception_resolve(exception=cash.exceptions.get(), user=user, reason="x")


@pytest.mark.parametrize(
    ("amount", "currency", "date", "ref", "field"),
    [
        ("0", "EUR", DAY, "R", "amount"),
        ("-5", "EUR", DAY, "R", "amount"),
        ("1.005", "EUR", DAY, "R", "amount"),
        ("10.5", "JPY", DAY, "R", "amount"),
        ("abc", "EUR", DAY, "R", "amount"),
        ("NaN", "EUR", DAY, "R", "amount"),
        ("10", "EURO", DAY, "R", "currency"),
        ("10", "EUR", "2025-13-01", "R", "date"),
        ("10", "EUR", DAY, "", "external_reference"),
        ("10", "EUR", DAY, "A~1", "external_reference"),
        ("10", "EUR", DAY, "X" * 91, "external_reference"),
    ],
)
def test_bad_input_is_refused_with_field_errors(analyst, amount, currency, date, ref, field):
    with pytest.raises(ApplicationError) as caught:
        payment_record(amount=amount, currency=currency, date=date, external_reference=ref,
                       source="manual", user=analyst)
    assert field in caught.value.field_errors
    assert not Payment.objects.exists()


# --- the balance invariant over random sequences ---------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["pay", "pay", "pay", "usd", "unknown", "replay", "apply", "resolve"]),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("900.00"), places=2),
    ),
    min_size=1,
    max_size=12,
)


class TestBalanceInvariant(HypothesisTestCase):
    """Whatever arrives in whatever order: balance = total − credited − Σ payments applied, never below 0,
    the status follows the balance, and all cash received is either applied or unapplied (nothing lost)."""

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=OPS, credited=st.sampled_from([Decimal("0"), Decimal("100.00")]))
    def test_balance_invariant(self, ops, credited):
        analyst = finance_user("inv-analyst")
        invoice = issued_invoice(total="1000.00")
        if credited:
            Invoice.objects.filter(pk=invoice.pk).update(credited_amount=credited)
        received = Decimal("0")
        last_ref = None
        for n, (op, amount) in enumerate(ops):
            ref = f"H-{n}"
            invoice.refresh_from_db()
            if op in ("pay", "usd", "unknown"):
                if op == "pay":
                    record(invoice, amount, ref, user=analyst)
                elif op == "usd":
                    record(invoice, amount, ref, user=analyst, currency="USD")
                else:
                    record(None, amount, ref, user=analyst, invoice_reference="UNKNOWN")
                received += amount
                last_ref = ref
            elif op == "replay" and last_ref:
                first = Payment.objects.get(external_reference=last_ref)
                family = sum(p.amount for p in payment_family(last_ref))
                record(None, family, last_ref, user=analyst, currency=first.currency,
                       invoice_reference=first.invoice_reference)
            elif op in ("apply", "resolve"):
                cash = Payment.objects.filter(invoice__isnull=True, currency="EUR",
                                              exceptions__state="open").order_by("id").first()
                if cash is not None and op == "apply" and invoice.balance > 0:
                    payment_apply(payment=cash, invoice=invoice, user=analyst, reason="matched")
                elif cash is not None and op == "resolve":
                    payment_exception_resolve(exception=cash.exceptions.get(state="open"), user=analyst,
                                              reason="refunded")

            invoice.refresh_from_db()
            applied = sum(p.amount for p in Payment.objects.filter(invoice=invoice))
            assert invoice.paid_amount == applied
            assert invoice.balance == invoice.total - invoice.credited_amount - applied
            assert invoice.balance >= 0
            expected = Status.SENT if applied == 0 else (Status.PAID if invoice.balance == 0
                                                         else Status.PARTIALLY_PAID)
            assert invoice.status == expected
            assert sum(p.amount for p in Payment.objects.all()) == received
            # Every unapplied row has exactly one exception explaining it.
            for cash in Payment.objects.filter(invoice__isnull=True):
                assert cash.exceptions.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_payments_of_one_invoice_never_overpay_it():
    """Six payments of 100 against a balance of 500 at once (own connections): 500 applied, 100 excess."""
    import threading

    from django.db import connection

    analyst = finance_user("race-analyst")
    invoice = issued_invoice(total="500.00")
    barrier = threading.Barrier(6)
    errors: list[Exception] = []

    def pay(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            record(invoice, "100.00", f"RACE-{n}", user=analyst)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.balance) == (Status.PAID, Decimal("500.00"), 0)
    assert sum(p.amount for p in Payment.objects.filter(invoice=invoice)) == Decimal("500.00")
    assert [e.code for e in open_exceptions()] == [OVERPAYMENT]
    assert unapplied_total() == {"EUR": Decimal("100.00")}


def test_settle_moves_a_partly_paid_invoice_to_paid_once_a_credit_covers_the_rest(analyst):
    invoice = issued_invoice(total="1000.00")
    record(invoice, "600.00", "BANK-30", user=analyst)
    Invoice.objects.filter(pk=invoice.pk).update(credited_amount=Decimal("400.00"))  # as the credit-note service
    invoice.refresh_from_db()
    payment_status_settle(invoice=invoice, user=analyst, reason="Credit note CN-1 approved")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.balance) == (Status.PAID, 0)


def test_a_payment_without_an_exception_is_unapplied_until_applied(analyst):
    """History imported without the service (no exception row) still shows as unapplied cash."""
    from tests.factories import PaymentFactory

    PaymentFactory(invoice=None, currency="EUR", amount=Decimal("70.00"), external_reference="IMPORTED-1")
    assert unapplied_total() == {"EUR": Decimal("70.00")}
    payment_apply(payment=Payment.objects.get(external_reference="IMPORTED-1"),
                  invoice=issued_invoice(total="100.00"), user=analyst, reason="Imported history matched")
    assert unapplied_total() == {}
