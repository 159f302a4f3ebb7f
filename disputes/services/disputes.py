"""Dispute use cases: open, investigate, note, withdraw, resolve (docs/rules/disputes-and-collections.md, ADR 0024).

Each service is one transaction: it locks the invoice (then the dispute) row,
moves both through their FSM transitions (django-fsm-log StateLog rows) and saves
them with `save_audited` (simple-history rows with who and why).

Opening a dispute marks the invoice `disputed` and holds the disputed amount from
collections: a dispute of the whole balance stops dunning; a partial one holds only
its amount, and the rest stays due, ages and is reminded (ADR 0038). Resolving it
gives the invoice back to the customer's account (`sent`, or `partially_paid` when
it has payments); a resolution with a credit also makes a draft credit note that
goes through approval
(`billing.services.credit_notes`): it is the credit note's approval, not the
dispute, that credits the invoice and releases its billed items.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import Invoice, InvoiceLine
from disputes.models import Dispute, DisputeLine, DisputeNote
from kernel.audit import save_audited
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError
from kernel.money import ZERO, round_money
from kernel.roles import COLLECTIONS, FINANCE_ANALYST, FINANCE_CONTROLLER, FINANCE_ROLES, has_any_role
from kernel.workflow import apply_transition, require_reason

#: Who opens and works disputes (auditors read only).
DISPUTE_ROLES = (FINANCE_ANALYST, FINANCE_CONTROLLER, COLLECTIONS)
#: Who may resolve with a credit (a credit note is finance's document).
CREDIT_ROLES = FINANCE_ROLES
#: Invoice states a customer can dispute.
DISPUTABLE = (Invoice.Status.POSTED, Invoice.Status.SENT, Invoice.Status.PARTIALLY_PAID)
DEFAULT_SLA_DAYS = 14

Outcome = Dispute.Outcome


def dispute_sla_days() -> int:
    """Days a dispute may take before it is overdue (`DISPUTE_SLA_DAYS`, default 14)."""
    return int(getattr(settings, "DISPUTE_SLA_DAYS", DEFAULT_SLA_DAYS))


def can_work_disputes(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or has_any_role(user, DISPUTE_ROLES)


def can_credit(user: Any) -> bool:
    return bool(getattr(user, "is_superuser", False)) or has_any_role(user, CREDIT_ROLES)


def _require_worker(user: Any, action: str) -> None:
    if not can_work_disputes(user):
        raise PermissionDeniedError(f"Only finance and collections may {action}.")


def _lock_invoice(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)


def _lock_dispute(dispute: Dispute) -> Dispute:
    return Dispute.objects.select_for_update(of=("self",)).select_related("invoice").get(pk=dispute.pk)


def _amount(value: Any, field: str) -> Decimal:
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ApplicationError(f"{field} must be a number.", field_errors={field: ["Enter a number."]}) from exc


def _label(invoice: Invoice) -> str:
    return invoice.display_number


@transaction.atomic
def dispute_open(
    *,
    invoice: Invoice,
    category: str,
    disputed_amount: Decimal,
    user: Any,
    owner: Any = None,
    due_date: date | None = None,
    customer_reference: str = "",
    description: str = "",
    lines: list[tuple[InvoiceLine, Decimal]] | None = None,
    source: str = "portal",
) -> Dispute:
    """Record a customer's objection and mark the invoice `disputed` (its amount is held from dunning).

    `lines`: the disputed invoice lines with the (net) part of each disputed; none = the whole invoice.
    From the API (`source="api"`) the caller's token scopes were checked by the API layer; `user` is then
    the integration's service user and `owner` should be given.
    """
    if source == "portal":
        _require_worker(user, "open disputes")
    if not getattr(user, "pk", None):
        raise ApplicationError("A dispute needs the user who opens it.", code="user_required")
    if category not in Dispute.Category.values:
        raise ApplicationError(
            f"Unknown dispute category '{category}'.", field_errors={"category": ["Choose a valid category."]}
        )
    invoice = _lock_invoice(invoice)
    if invoice.kind != Invoice.Kind.INVOICE:
        raise ApplicationError("Credit notes cannot be disputed; dispute the invoice.", code="not_disputable")
    if Dispute.objects.filter(invoice=invoice, status__in=[Dispute.Status.OPEN, Dispute.Status.INVESTIGATING]).exists():
        raise ConflictError(
            f"Invoice {_label(invoice)} already has an open dispute; add a note to it instead.", code="dispute_open"
        )
    if invoice.status not in DISPUTABLE:
        raise ApplicationError(
            f"Only posted, sent or partially paid invoices can be disputed; {_label(invoice)} is "
            f"{invoice.get_status_display().lower()}.",
            code="invalid_transition",
        )
    amount = round_money(_amount(disputed_amount, "disputed_amount"), invoice.currency)
    balance = invoice.balance
    if amount <= ZERO:
        raise ApplicationError("The disputed amount must be positive.", field_errors={"disputed_amount": ["> 0."]})
    if amount > balance:
        raise ApplicationError(
            f"The disputed amount {amount} {invoice.currency} exceeds the open balance {balance} {invoice.currency}.",
            field_errors={"disputed_amount": [f"At most {balance}."]},
        )
    checked_lines: list[tuple[InvoiceLine, Decimal]] = []
    seen: set[int] = set()
    for line, line_amount in lines or []:
        if line.invoice_id != invoice.pk:
            raise ApplicationError(f"Line {line.pk} is not a line of invoice {_label(invoice)}.", field_errors={
                "lines": ["A line of another invoice."]})
        if line.pk in seen:
            raise ApplicationError(f"Line {line.pk} is disputed twice.", field_errors={"lines": ["Duplicate line."]})
        seen.add(line.pk)
        value = round_money(_amount(line_amount, "lines"), invoice.currency)
        if value <= ZERO or line.amount <= ZERO or value > line.amount:
            raise ApplicationError(
                f"The disputed part of line {line.position} ({value}) must be positive and at most the line's "
                f"amount {line.amount}.",
                field_errors={"lines": [f"Line {line.position}: between 0 and {line.amount}."]},
            )
        checked_lines.append((line, value))

    owner = owner or user
    now = timezone.now()
    dispute = Dispute(
        invoice=invoice,
        category=category,
        disputed_amount=amount,
        currency=invoice.currency,
        customer_reference=(customer_reference or "").strip()[:100],
        description=(description or "").strip(),
        owner=owner,
        due_date=due_date or (now.date() + timedelta(days=dispute_sla_days())),
        opened_by=user,
        opened_at=now,
        source=source,
    )
    reason = f"Dispute opened ({dispute.get_category_display().lower()}, {amount} {invoice.currency})"
    try:
        with transaction.atomic():
            save_audited(dispute, user=user, reason=reason)
    except IntegrityError as exc:  # a concurrent opening won the one-live-dispute constraint
        raise ConflictError(f"Invoice {_label(invoice)} already has an open dispute.", code="dispute_open") from exc
    DisputeLine.objects.bulk_create(
        [DisputeLine(dispute=dispute, invoice_line=line, amount=value) for line, value in checked_lines]
    )
    apply_transition(invoice, "dispute", user=user, reason=reason, label=_label(invoice))
    save_audited(invoice, user=user, reason=reason)
    return dispute


@transaction.atomic
def dispute_investigate(*, dispute: Dispute, user: Any, note: str = "") -> Dispute:
    """`open → investigating`: someone is on it."""
    _require_worker(user, "work disputes")
    dispute = _lock_dispute(dispute)
    reason = note.strip() or "Investigation started"
    apply_transition(dispute, "investigate", user=user, reason=reason, label=f"dispute {dispute.pk}")
    save_audited(dispute, user=user, reason=reason)
    return dispute


@transaction.atomic
def dispute_add_note(
    *, dispute: Dispute, user: Any, text: str, attachment: UploadedFile | None = None, source: str = "portal"
) -> DisputeNote:
    """A note (call log, customer e-mail, evidence) with an optional attachment; also on closed disputes.

    `source="customer"`: the client's own contact writes it from the customer portal, which checked
    that the dispute is on their company's invoice (docs/rules/customers.md).
    """
    if source == "portal":
        _require_worker(user, "add notes to disputes")
    text = require_reason(text, "add a note")
    dispute = _lock_dispute(dispute)
    note = DisputeNote(dispute=dispute, author=user, text=text)
    if attachment is not None:
        note.attachment = attachment
    save_audited(note, user=user, reason="Note added" + (" with attachment" if attachment else ""))
    return note


@transaction.atomic
def dispute_reassign(*, dispute: Dispute, user: Any, owner: Any, due_date: date | None = None) -> Dispute:
    """Hand the dispute to another owner and/or move its due date."""
    _require_worker(user, "reassign disputes")
    dispute = _lock_dispute(dispute)
    if not dispute.is_live:
        raise ApplicationError("Only a live dispute can be reassigned.", code="invalid_transition")
    dispute.owner = owner
    if due_date:
        dispute.due_date = due_date
    save_audited(dispute, user=user, reason=f"Owner {owner.get_username()}, due {dispute.due_date}")
    return dispute


def _end_invoice_dispute(invoice: Invoice, *, user: Any, reason: str) -> None:
    """The invoice goes back to the customer's account: sent, partially paid, or paid."""
    if invoice.status != Invoice.Status.DISPUTED:
        return
    label = _label(invoice)
    if invoice.paid_amount > ZERO and invoice.balance > ZERO:
        apply_transition(invoice, "resume_partially_paid", user=user, reason=reason, label=label)
    else:
        apply_transition(invoice, "mark_sent", user=user, reason=reason, label=label)
        if invoice.paid_amount > ZERO:  # paid in full while disputed
            apply_transition(invoice, "record_full_payment", user=user, reason=reason, label=label)
    save_audited(invoice, user=user, reason=reason)


@transaction.atomic
def dispute_withdraw(*, dispute: Dispute, user: Any, reason: str) -> Dispute:
    """The customer withdrew the objection: the invoice stands as issued."""
    _require_worker(user, "withdraw disputes")
    reason = require_reason(reason, "withdraw a dispute")
    invoice = _lock_invoice(dispute.invoice)
    dispute = _lock_dispute(dispute)
    apply_transition(dispute, "withdraw", user=user, reason=reason, label=f"dispute {dispute.pk}")
    dispute.resolution_note = reason
    dispute.resolved_by = user
    dispute.resolved_at = timezone.now()
    save_audited(dispute, user=user, reason=f"Withdrawn: {reason}")
    _end_invoice_dispute(invoice, user=user, reason=f"Dispute {dispute.pk} withdrawn: {reason}")
    return dispute


@transaction.atomic
def dispute_resolve(
    *,
    dispute: Dispute,
    outcome: str,
    user: Any,
    note: str,
    credit_amount: Decimal | None = None,
    lines: list[tuple[InvoiceLine, Decimal]] | None = None,
) -> Dispute:
    """Close the dispute with its outcome.

    - `upheld`: the invoice stands; back to `sent` (or `partially_paid`).
    - `credit`: a draft credit note of `credit_amount` (gross) or of `lines` (net amounts) goes to approval;
      none of both = the whole invoice.
    - `credit_and_reissue`: a credit note of whole `lines` (each for its full amount) or of the whole invoice;
      its approval releases those lines' billed items so the corrected invoice can be billed.
    The invoice leaves `disputed` at once; the credit note's approval is what credits it.
    """
    from billing.services.credit_notes import credit_note_create

    _require_worker(user, "resolve disputes")
    note = require_reason(note, "resolve a dispute")
    if outcome not in (Outcome.UPHELD, Outcome.CREDIT, Outcome.CREDIT_AND_REISSUE):
        raise ApplicationError(f"Unknown outcome '{outcome}'.", field_errors={"outcome": ["Choose an outcome."]})
    invoice = _lock_invoice(dispute.invoice)
    dispute = _lock_dispute(dispute)
    if not dispute.is_live:
        raise ApplicationError(
            f"Dispute {dispute.pk} is {dispute.get_status_display().lower()}; it cannot be resolved again.",
            code="invalid_transition",
        )
    label = Outcome(outcome).label
    reason = f"Resolved: {label.lower()}. {note}"
    if outcome != Outcome.UPHELD:
        if not can_credit(user):
            raise PermissionDeniedError("Only finance may resolve a dispute with a credit note.")
        if outcome == Outcome.CREDIT_AND_REISSUE:
            if credit_amount is not None:
                raise ApplicationError(
                    "Credit and reissue credits whole lines or the whole invoice, not an amount: the credited "
                    "lines' items are billed again.",
                    field_errors={"credit_amount": ["Not with credit and reissue."]},
                )
            for line, value in lines or []:
                if value != line.amount:
                    raise ApplicationError(
                        f"Credit and reissue credits line {line.position} in full ({line.amount}).",
                        field_errors={"lines": [f"Line {line.position}: {line.amount}."]},
                    )
        # The invoice returns to the account first: a credit note is made on an issued invoice.
        _end_invoice_dispute(invoice, user=user, reason=f"Dispute {dispute.pk} {label.lower()}")
        credit_note = credit_note_create(
            invoice=invoice,
            user=user,
            reason=f"Dispute {dispute.pk} ({dispute.get_category_display().lower()}): {note}",
            lines=lines or None,
            amount=credit_amount,
            dispute=dispute,
        )
        dispute.credit_note = credit_note
        reason += f" Credit note draft {credit_note.display_number} awaits approval."
    else:
        _end_invoice_dispute(invoice, user=user, reason=f"Dispute {dispute.pk} resolved: invoice upheld")
    apply_transition(dispute, "resolve", user=user, reason=reason, label=f"dispute {dispute.pk}")
    dispute.outcome = outcome
    dispute.resolution_note = note
    dispute.resolved_by = user
    dispute.resolved_at = timezone.now()
    save_audited(dispute, user=user, reason=reason[:100])
    return dispute


# --- what the credit-note services tell disputes (billing.hooks.CreditNoteListener, ADR 0080) --------------


def credit_note_is_reissue(credit_note: Invoice) -> bool:
    """Made by a dispute resolved with `credit_and_reissue`."""
    return Dispute.objects.filter(credit_note=credit_note, outcome=Dispute.Outcome.CREDIT_AND_REISSUE).exists()


def disputes_close_on_full_credit(invoice: Invoice, *, credit_note: Invoice, user: Any) -> None:
    """A full credit settles whatever the customer still disputed: resolve the live dispute with `credit`."""
    live = Dispute.objects.select_for_update().filter(
        invoice=invoice, status__in=[Dispute.Status.OPEN, Dispute.Status.INVESTIGATING]
    )
    for dispute in live:
        why = f"Resolved by the full credit note {credit_note.number}"
        apply_transition(dispute, "resolve", user=user, reason=why, label=f"dispute {dispute.pk}")
        dispute.outcome = Dispute.Outcome.CREDIT
        dispute.credit_note = dispute.credit_note or credit_note
        dispute.resolution_note = why
        dispute.resolved_by = user if getattr(user, "pk", None) else dispute.owner
        dispute.resolved_at = timezone.now()
        save_audited(dispute, user=user, reason=why)


def dispute_note_credit_note_decided(credit_note: Invoice, *, user: Any, text: str) -> None:
    """Note a credit note's approval or rejection on the dispute that asked for it."""
    for dispute in Dispute.objects.filter(credit_note=credit_note):
        note = DisputeNote(dispute=dispute, author=user, text=text)
        save_audited(note, user=user, reason="Credit note decided")


class CreditNoteListener:
    """Registered into `billing.hooks` by `DisputesConfig.ready()`."""

    is_reissue = staticmethod(credit_note_is_reissue)
    fully_credited = staticmethod(disputes_close_on_full_credit)
    decided = staticmethod(dispute_note_credit_note_decided)
