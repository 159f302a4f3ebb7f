"""Payments: cash received and applied to invoices; what cannot be applied waits for finance (docs/rules/domain.md, §6).

A payment arrives from the payment webhook, the API or finance's own entry, and goes
through `payment_record` whatever the channel. Rules (docs/decisions/0023-payments-and-webhooks.md):

- **Idempotent on the external reference** (the bank's or provider's payment id): the same
  reference with the same data returns the payment already recorded, nothing is applied
  twice; the same reference with other data is a `ConflictError`. Concurrent calls are
  serialized by the row lock on the invoice and, for the rest, by the unique reference.
- **Applied** to a posted, sent or partially paid invoice of the same currency:
  `paid_amount += amount` under a row lock, and the invoice moves to `partially_paid` or
  `paid` (balance = total − credited − paid reaches 0). A **disputed** invoice gets the
  payment too (cash is cash) but keeps its status: the dispute decides what happens next
  (`payment_status_settle` is there for the dispute's end).
- **Never lost, never forced**: a payment that cannot be applied is kept as **unapplied cash**
  (no invoice; its client when known) with an open `InvoiceException` for finance, severity
  warning (these follow-ups never block an invoice): `PAYMENT_UNMATCHED` (no such invoice, or one
  that is not issued), `PAYMENT_CURRENCY_MISMATCH`, `PAYMENT_ON_CLOSED_INVOICE` (credited or
  cancelled). More than the balance is applied up to the balance and the **excess** becomes
  a separate unapplied payment with an `OVERPAYMENT` exception (refund due, or apply it elsewhere).
- A payment split this way keeps one family of rows: the first keeps the external reference,
  the others are `<reference>~<n>`; the family's amounts always add up to the cash received.
- Unapplied cash = payments without an invoice that finance has not settled (every one the service
  keeps has one open exception; closing it without applying the cash — refund made — settles it).
  `payment_apply` applies it later (finance); `payment_exception_resolve` closes it with a
  reason (refunded, returned by the bank, written off).

Invariant, at every step: invoice balance = total − credited − Σ payments applied to it.
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing.models import Client, Invoice, InvoiceException, Payment
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import ZERO, is_valid_currency, round_money
from kernel.roles import is_finance, require_finance
from kernel.workflow import apply_transition, require_reason

Status = Invoice.Status
Source = Payment.Source

PAYMENT_UNMATCHED = "PAYMENT_UNMATCHED"
PAYMENT_CURRENCY_MISMATCH = "PAYMENT_CURRENCY_MISMATCH"
OVERPAYMENT = "OVERPAYMENT"
PAYMENT_ON_CLOSED_INVOICE = "PAYMENT_ON_CLOSED_INVOICE"
PAYMENT_CODES = (PAYMENT_UNMATCHED, PAYMENT_CURRENCY_MISMATCH, OVERPAYMENT, PAYMENT_ON_CLOSED_INVOICE)

FIX_HINTS = {
    PAYMENT_UNMATCHED: "Find the invoice it pays (payer, amount, reference) and apply it, or refund it.",
    PAYMENT_CURRENCY_MISMATCH: "Apply it to an invoice in its currency, or return it and ask for the "
    "invoice's currency.",
    OVERPAYMENT: "Apply the excess to another open invoice of the client, or refund it.",
    PAYMENT_ON_CLOSED_INVOICE: "The invoice was credited or cancelled: apply the cash to the corrected "
    "invoice, or refund it.",
}

#: Invoices a payment is applied to (with a status change where the FSM allows; disputed keeps its status).
PAYABLE = (Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.PAID, Status.DISPUTED)
#: Invoices that take no more cash: the payment stays unapplied.
CLOSED = (Status.CREDITED, Status.CANCELLED)
#: Statuses whose status follows the payments (`partially_paid` / `paid`).
FOLLOWS_PAYMENTS = (Status.POSTED, Status.SENT, Status.PARTIALLY_PAID)

SPLIT_MARK = "~"
MAX_REFERENCE = 90  # room for the "~n" of split rows in the 100-character column
MAX_AMOUNT = Decimal("1e15")


# --- who --------------------------------------------------------------------------------------------


def _integration_client(user: Any) -> Any:
    """The active integration client whose service user this is (API, webhook), or None."""
    client = getattr(user, "integration_client", None) if getattr(user, "pk", None) else None
    return client if client is not None and client.is_active else None


def can_record_payments(user: Any) -> bool:
    return is_finance(user) or _integration_client(user) is not None


def _require_recorder(user: Any) -> None:
    if not can_record_payments(user):
        raise PermissionDeniedError("Only finance analysts and controllers (or the payment integrations) "
                                    "may record payments.")


# --- input ------------------------------------------------------------------------------------------


def clean_payment_input(
    *, amount: Any, currency: Any, date: Any, external_reference: Any
) -> tuple[Decimal, str, datetime.date, str]:
    """Validate and normalise what a channel sent; one ApplicationError with every field's problem."""
    errors: dict[str, list[str]] = {}
    currency = str(currency or "").strip().upper()
    if not is_valid_currency(currency):
        errors["currency"] = ["Use an ISO 4217 code such as EUR."]
    value: Decimal | None = None
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
        if not value.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, TypeError):
        errors["amount"] = ["Enter an amount such as 1190.00."]
        value = None
    if value is not None:
        if value <= 0:
            errors["amount"] = ["A payment is more than zero (refunds are not payments)."]
        elif value >= MAX_AMOUNT:
            errors["amount"] = ["The amount is too large."]
        elif "currency" not in errors and round_money(value, currency) != value:
            errors["amount"] = [f"More decimals than {currency} has."]
    when = date
    if isinstance(when, str):
        try:
            when = datetime.date.fromisoformat(when.strip())
        except ValueError:
            when = None
    if isinstance(when, datetime.datetime) or not isinstance(when, datetime.date):
        errors["date"] = ["Enter the value date as YYYY-MM-DD."]
    reference = str(external_reference or "").strip()
    if not reference:
        errors["external_reference"] = ["The payment's own reference (bank or provider id) is required."]
    elif len(reference) > MAX_REFERENCE:
        errors["external_reference"] = [f"At most {MAX_REFERENCE} characters."]
    elif SPLIT_MARK in reference:
        errors["external_reference"] = [f"'{SPLIT_MARK}' is reserved for split payments."]
    if errors:
        message = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        raise ApplicationError(message, code="invalid", field_errors=errors)
    assert value is not None and isinstance(when, datetime.date)
    return round_money(value, currency), currency, when, reference


# --- reads the service needs ------------------------------------------------------------------------


def payment_family(reference: str):
    """The rows of one received payment: the reference itself and its split rows `<reference>~<n>`."""
    root = reference.split(SPLIT_MARK, 1)[0]
    return Payment.objects.filter(Q(external_reference=root) | Q(external_reference__startswith=root + SPLIT_MARK))


def find_invoice(reference: str) -> Invoice | None:
    """The invoice or credit note a payer quoted (its number, case and spaces ignored)."""
    reference = (reference or "").strip()
    if not reference:
        return None
    return Invoice.objects.filter(number__iexact=reference).first()


def _existing(
    reference: str, *, amount: Decimal, currency: str, date: datetime.date, quoted: str
) -> Payment | None:
    """The payment already recorded under `reference` when the data match; a ConflictError when not."""
    rows = list(payment_family(reference).order_by("id"))
    root = next((p for p in rows if p.external_reference == reference), None)
    if root is None:
        return None
    received = sum((p.amount for p in rows), ZERO)
    same = (
        received == amount
        and root.currency == currency
        and root.date == date
        and root.invoice_reference.strip().lower() == quoted.strip().lower()
    )
    if not same:
        raise ConflictError(
            f"Payment {reference} is already recorded with other data ({received} {root.currency} on "
            f"{root.date}, invoice {root.invoice_reference or '—'}): a reference names one payment.",
            field_errors={"external_reference": ["Already used for another payment."]},
        )
    return root


def _fix_url(payment: Payment) -> str:
    try:
        return reverse("disputes:payment_apply", args=[payment.pk])
    except NoReverseMatch:
        return ""


# --- writes -----------------------------------------------------------------------------------------


def _lock_invoice(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update(of=("self",)).select_related("client").get(pk=invoice.pk)


def _unpayable(invoice: Invoice | None, currency: str, quoted: str) -> tuple[str, str] | None:
    """Why the payment cannot go on `invoice` — (code, message) — or None when it can."""
    if invoice is None:
        named = f"invoice {quoted}" if quoted else "no invoice"
        return PAYMENT_UNMATCHED, f"The payment names {named}, which is not an issued invoice of ours."
    if invoice.kind != Invoice.Kind.INVOICE:
        return PAYMENT_UNMATCHED, f"{invoice.number} is a credit note: a payment cannot go on it."
    if invoice.status in CLOSED:
        return (
            PAYMENT_ON_CLOSED_INVOICE,
            f"{invoice.display_number} is {invoice.get_status_display().lower()}: it takes no more payments.",
        )
    if invoice.status not in PAYABLE:
        return (
            PAYMENT_UNMATCHED,
            f"{invoice.display_number} is not issued yet ({invoice.get_status_display().lower()}).",
        )
    if invoice.currency != currency:
        return (
            PAYMENT_CURRENCY_MISMATCH,
            f"{invoice.number} is in {invoice.currency}; the payment is in {currency}.",
        )
    return None


def _apply_to_invoice(invoice: Invoice, amount: Decimal, *, user: Any, reason: str) -> None:
    """Add to `paid_amount` of the locked invoice and let its status follow (disputed keeps its own)."""
    invoice.paid_amount += amount
    if invoice.status in FOLLOWS_PAYMENTS:
        transition = "record_full_payment" if invoice.balance <= 0 else "record_partial_payment"
        apply_transition(invoice, transition, user=user, reason=reason, label=invoice.display_number)
    save_audited(invoice, user=user, reason=reason)


def payment_status_settle(*, invoice: Invoice, user: Any, reason: str) -> Invoice:
    """Let a locked invoice's status follow its payments (e.g. after its dispute ended, back to `sent`).

    Call inside the caller's transaction. `sent`/`posted` with payments → `partially_paid` or `paid`;
    `partially_paid` with nothing left to pay (a credit note covered the rest) → `paid`.
    """
    if invoice.status not in FOLLOWS_PAYMENTS or invoice.paid_amount <= 0:
        return invoice
    if invoice.balance <= 0:
        apply_transition(invoice, "record_full_payment", user=user, reason=reason, label=invoice.display_number)
    elif invoice.status != Status.PARTIALLY_PAID:
        apply_transition(invoice, "record_partial_payment", user=user, reason=reason, label=invoice.display_number)
    else:
        return invoice
    save_audited(invoice, user=user, reason=reason)
    return invoice


def _open_exception(
    *, code: str, invoice: Invoice | None, payment: Payment, message: str, user: Any
) -> InvoiceException:
    # The amount column is read in the invoice's currency: leave it empty when the payment's differs.
    same_currency = invoice is None or invoice.currency == payment.currency
    exception = InvoiceException(
        invoice=invoice,
        payment=payment,
        code=code,
        severity=InvoiceException.Severity.WARNING,
        message=message,
        fix_hint=FIX_HINTS[code],
        fix_url=_fix_url(payment),
        amount=payment.amount if same_currency else None,
    )
    save_audited(exception, user=user, reason=f"Payment {payment.external_reference}: {code}")
    return exception


def _split_row(origin: Payment, amount: Decimal, *, client: Client | None, user: Any, reason: str) -> Payment:
    """A new unapplied row of `origin`'s family for `amount` (the family still adds up to what was received)."""
    root = origin.external_reference.split(SPLIT_MARK, 1)[0]
    # Lock the family's first row so two splits of one payment do not take the same suffix.
    Payment.objects.select_for_update(of=("self",)).filter(external_reference=root).order_by().first()
    taken = payment_family(root).filter(external_reference__startswith=root + SPLIT_MARK).values_list(
        "external_reference", flat=True
    )
    numbers = [int(ref.rsplit(SPLIT_MARK, 1)[1]) for ref in taken if ref.rsplit(SPLIT_MARK, 1)[1].isdigit()]
    row = Payment(
        invoice=None,
        client=client,
        amount=amount,
        currency=origin.currency,
        date=origin.date,
        external_reference=f"{root}{SPLIT_MARK}{max(numbers, default=0) + 1}",
        source=origin.source,
        invoice_reference=origin.invoice_reference,
        note=origin.note,
        recorded_by=origin.recorded_by,
    )
    save_audited(row, user=user, reason=reason)
    return row


@transaction.atomic
def payment_record(
    *,
    amount: Any,
    currency: str,
    date: Any,
    external_reference: str,
    source: str,
    user: Any,
    invoice: Invoice | None = None,
    invoice_reference: str = "",
    client: Client | None = None,
    note: str = "",
) -> Payment:
    """Record cash received and apply it to the invoice it names; anything odd goes to finance's queue.

    Returns the payment (the family's first row). Idempotent on `external_reference`.
    """
    _require_recorder(user)
    amount, currency, date, reference = clean_payment_input(
        amount=amount, currency=currency, date=date, external_reference=external_reference
    )
    if source not in Source.values:
        raise ApplicationError(f"Unknown payment source {source!r}.", field_errors={"source": ["Unknown."]})
    quoted = (invoice_reference or "").strip()[:100] or ((invoice.number or "") if invoice is not None else "")
    target = invoice if invoice is not None else find_invoice(quoted)
    if target is not None:
        target = _lock_invoice(target)  # concurrent payments of one invoice queue up here
    existing = _existing(reference, amount=amount, currency=currency, date=date, quoted=quoted)
    if existing is not None:
        return existing

    problem = _unpayable(target, currency, quoted)
    payer = target.client if target is not None else client
    balance = target.balance if target is not None and problem is None else ZERO
    applied = min(amount, balance) if balance > 0 else ZERO
    if problem is None and applied <= 0:
        problem = (OVERPAYMENT, f"{target.display_number} has nothing left to pay: the whole payment is excess.")
    actor = user if getattr(user, "pk", None) else None
    payment = Payment(
        invoice=target if applied > 0 else None,
        client=payer,
        amount=applied if applied > 0 else amount,
        currency=currency,
        date=date,
        external_reference=reference,
        source=source,
        invoice_reference=quoted,
        note=(note or "").strip(),
        recorded_by=actor,
    )
    why = f"Payment {reference} received ({Payment.Source(source).label})"
    try:
        with transaction.atomic():
            save_audited(payment, user=user, reason=why)
    except IntegrityError:
        # The same reference was recorded meanwhile by a concurrent call (another invoice or none).
        existing = _existing(reference, amount=amount, currency=currency, date=date, quoted=quoted)
        if existing is None:
            raise
        return existing

    if applied > 0:
        _apply_to_invoice(target, applied, user=user, reason=f"{why}: {applied} {currency} applied")
        excess = amount - applied
        if excess > 0:
            rest = _split_row(payment, excess, client=payer, user=user, reason=f"{why}: excess over the balance")
            _open_exception(
                code=OVERPAYMENT,
                invoice=target,
                payment=rest,
                message=f"Paid {amount} {currency} against a balance of {applied} {currency}: "
                f"{excess} {currency} excess kept as unapplied cash (refund due, or apply it elsewhere).",
                user=user,
            )
    else:
        code, message = problem  # type: ignore[misc]
        _open_exception(code=code, invoice=target, payment=payment, message=f"{message} Kept as unapplied cash.",
                        user=user)
    return payment


def _resolve(exception: InvoiceException, *, user: Any, reason: str, now: datetime.datetime) -> None:
    exception.state = InvoiceException.State.RESOLVED
    exception.resolved_by = user if getattr(user, "pk", None) else None
    exception.resolved_at = now
    exception.resolution_reason = reason
    save_audited(exception, user=user, reason=f"Resolved: {reason}")


@transaction.atomic
def payment_apply(*, payment: Payment, invoice: Invoice, user: Any, reason: str) -> Payment:
    """Apply unapplied cash to an invoice (finance): up to its balance; the rest stays unapplied.

    Resolves the payment's open exception; a remainder gets its own `OVERPAYMENT` exception.
    """
    require_finance(user, "Only finance analysts and controllers may apply payments.")
    reason = require_reason(reason, "apply a payment")
    invoice = _lock_invoice(invoice)
    payment = Payment.objects.select_for_update(of=("self",)).order_by().get(pk=payment.pk)
    if payment.invoice_id:
        raise ApplicationError(
            f"Payment {payment.external_reference} is already applied to an invoice.", code="already_applied"
        )
    problem = _unpayable(invoice, payment.currency, invoice.number or "")
    if problem is not None:
        raise ApplicationError(problem[1], code=problem[0].lower(), field_errors={"invoice": [problem[1]]})
    balance = invoice.balance
    if balance <= 0:
        message = f"{invoice.number} has nothing left to pay."
        raise ApplicationError(message, code="nothing_to_pay", field_errors={"invoice": [message]})
    applied = min(payment.amount, balance)
    rest = payment.amount - applied
    open_exceptions = list(
        InvoiceException.objects.select_for_update(of=("self",))
        .filter(payment=payment, state=InvoiceException.State.OPEN)
        .order_by("id")
    )
    what = f"Applied {applied} {payment.currency} to {invoice.number}: {reason}"
    payment.amount = applied
    payment.invoice = invoice
    payment.client = invoice.client
    save_audited(payment, user=user, reason=what)
    _apply_to_invoice(invoice, applied, user=user, reason=f"Payment {payment.external_reference}: {what}")
    now = timezone.now()
    for exception in open_exceptions:
        _resolve(exception, user=user, reason=what, now=now)
    if rest > 0:
        remainder = _split_row(payment, rest, client=invoice.client, user=user, reason=f"Remainder: {what}")
        _open_exception(
            code=OVERPAYMENT,
            invoice=invoice,
            payment=remainder,
            message=f"{rest} {payment.currency} of payment {payment.external_reference} left after applying "
            f"{applied} {payment.currency} to {invoice.number} (its balance).",
            user=user,
        )
    return payment


@transaction.atomic
def payment_exception_resolve(*, exception: InvoiceException, user: Any, reason: str) -> InvoiceException:
    """Close a payment's exception with a reason (refund made, returned by the bank, written off)."""
    require_finance(user, "Only finance analysts and controllers may resolve payment exceptions.")
    reason = require_reason(reason, "resolve a payment exception")
    exception = InvoiceException.objects.select_for_update(of=("self",)).order_by().get(pk=exception.pk)
    if exception.payment_id is None or exception.code not in PAYMENT_CODES:
        raise ApplicationError("Only payment exceptions are resolved here.", code="not_a_payment_exception")
    if exception.state != InvoiceException.State.OPEN:
        raise ApplicationError(f"This {exception.code} exception is already {exception.get_state_display().lower()}.",
                               code="already_resolved")
    _resolve(exception, user=user, reason=reason, now=timezone.now())
    return exception


def unapplied_total(currency: str | None = None) -> dict[str, Decimal]:
    """Unapplied cash per currency: payments without an invoice that finance has not settled (closed their
    exception without applying them: refunded, returned)."""
    settled = InvoiceException.objects.filter(payment=OuterRef("pk")).exclude(state=InvoiceException.State.OPEN)
    qs = Payment.objects.filter(invoice__isnull=True).exclude(Exists(settled))
    if currency:
        qs = qs.filter(currency=currency)
    return dict(qs.order_by().values("currency").annotate(total=Sum("amount")).values_list("currency", "total"))
