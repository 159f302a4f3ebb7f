"""Credit notes: full or partial corrections of an issued invoice (docs/rules/domain.md, §6; ADR 0024).

A credit note is an `Invoice(kind=credit_note, credit_of=invoice)` with positive amounts (the UBL
CreditNote convention; the billing engine counts it as negative in "previously invoiced"). It is
made in `pending_approval` and routed through the approval engine (default policy: a controller).

Never more credited than invoiced, whatever runs concurrently: creation locks the original invoice
and adds the credit note's total to `invoice.credited_amount` in the same transaction; the check
constraint `credited_amount <= total` refuses any excess in the database. A rejected credit note (back
in draft) or a withdrawn one (cancelled) gives its amount back.

On approval (`invoice_approve` numbers it in the `{prefix}-CN-{year}-…` series and calls
`credit_note_issued`):
- when the issued credit notes now cover the invoice total, the invoice goes `credited` and all its
  billed items (time, expenses, milestones) are released (back to `approved`, StateLog "release");
- a `credit_and_reissue` credit note of lines releases the items of the lines it credits in full;
- any other partial credit releases nothing (it is a price correction: the work stays billed).
Releasing locks the contract row first, as the billing run does, so a run racing the approval
either bills nothing of these items (it waits, then finds them released only after commit) or
finished before; the items' `invoice_line` link (one per item) keeps them from being billed twice.
`invoice_reissue` bills the released items at once (a run of the invoice's contract and period).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.hooks import credit_note_listener
from billing.models import Contract, Expense, Invoice, InvoiceLine, InvoiceTax, Milestone, TimeEntry
from billing.services.work import open_approval
from kernel.audit import save_audited
from kernel.errors import ApplicationError
from kernel.money import HUNDRED, ZERO, quantum, round_money
from kernel.roles import require_finance
from kernel.workflow import apply_transition, require_reason

#: Invoices a credit note may correct: issued ones (numbered and posted onwards).
CREDITABLE = (
    Invoice.Status.POSTED,
    Invoice.Status.SENT,
    Invoice.Status.PARTIALLY_PAID,
    Invoice.Status.PAID,
    Invoice.Status.DISPUTED,
)


#: A credit note counts (reserves its amount) while awaiting approval and once issued; a rejected one
#: (back in draft: credit notes are never revised) or a withdrawn one (cancelled) does not.
NOT_COUNTING = (Invoice.Status.DRAFT, Invoice.Status.CANCELLED)


def live_credit_notes(invoice: Invoice):
    """Credit notes of `invoice` that count: pending approval or issued."""
    return Invoice.objects.filter(credit_of=invoice, kind=Invoice.Kind.CREDIT_NOTE).exclude(status__in=NOT_COUNTING)


def credited_per_line(line_ids: Sequence[int]) -> dict[int, Decimal]:
    """Σ credited (net) per original line over live credit notes."""
    rows = (
        InvoiceLine.objects.filter(credited_line_id__in=list(line_ids), invoice__kind=Invoice.Kind.CREDIT_NOTE)
        .exclude(invoice__status__in=NOT_COUNTING)
        .values("credited_line_id")
        .annotate(total=Sum("amount"))
    )
    return {row["credited_line_id"]: row["total"] or ZERO for row in rows}


def _allocate(total: Decimal, weights: list[Decimal], currency: str) -> list[Decimal]:
    """Split `total` over `weights` proportionally, rounded, the remainder on the last share."""
    weight_sum = sum(weights, ZERO)
    if not weights:
        return []
    if weight_sum == ZERO:
        return [total] + [ZERO] * (len(weights) - 1)
    shares = [round_money(total * w / weight_sum, currency) for w in weights[:-1]]
    return [*shares, total - sum(shares, ZERO)]


def _lock_invoice(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("entity", "contract", "client")
        .get(pk=invoice.pk)
    )


@transaction.atomic
def credit_note_create(
    *,
    invoice: Invoice,
    user: Any,
    reason: str,
    lines: Sequence[tuple[InvoiceLine, Decimal]] | None = None,
    amount: Decimal | None = None,
    dispute: Any = None,
) -> Invoice:
    """Make a credit note of `invoice` awaiting approval: full, by lines (net amounts) or by a gross amount.

    Full (no `lines`, no `amount`) mirrors every line and tax row; it needs an invoice not credited yet.
    By lines: one `credit` line per original line (`credited_line` set), tax at the invoice's rates.
    By amount (gross, tax included): one line, the tax split like the original's categories.
    """
    require_finance(user, "Only finance may create credit notes.")
    reason = require_reason(reason, "create a credit note")
    if lines and amount is not None:
        raise ApplicationError("Credit either lines or an amount, not both.", field_errors={"amount": ["Or lines."]})
    invoice = _lock_invoice(invoice)
    label = invoice.display_number
    if invoice.kind != Invoice.Kind.INVOICE:
        raise ApplicationError("A credit note cannot be credited.", code="not_creditable")
    if not invoice.number or invoice.status not in CREDITABLE:
        raise ApplicationError(
            f"Only issued invoices can be credited; {label} is {invoice.get_status_display().lower()}.",
            code="not_creditable",
        )
    currency = invoice.currency
    left = invoice.total - invoice.credited_amount
    if left <= ZERO:
        raise ApplicationError(f"{label} is fully credited already (or by credit notes awaiting approval).",
                               code="nothing_left_to_credit")
    original_taxes = list(invoice.taxes.order_by("category", "rate"))
    credit_lines: list[InvoiceLine] = []
    taxes: list[InvoiceTax] = []

    if amount is None and not lines:
        if invoice.credited_amount != ZERO:
            raise ApplicationError(
                f"{label} is partly credited already; credit the {left} {currency} left by amount.",
                code="partly_credited",
            )
        for original in invoice.lines.order_by("position", "id"):
            credit_lines.append(_credit_line(original, original.amount, quantity=original.quantity,
                                             unit_price=original.unit_price))
        taxes = [
            InvoiceTax(category=t.category, rate=t.rate, base=t.base, amount=t.amount, legal_note=t.legal_note)
            for t in original_taxes
        ]
        subtotal, tax_total = invoice.subtotal, invoice.tax_total
    elif amount is not None:
        gross = round_money(Decimal(str(amount)), currency)
        if gross <= ZERO:
            raise ApplicationError("The credit amount must be positive.", field_errors={"amount": ["> 0."]})
        if gross > left:
            raise ApplicationError(
                f"{gross} {currency} is more than the {left} {currency} left to credit on {label}.",
                code="over_credit", field_errors={"amount": [f"At most {left}."]},
            )
        nets = []
        if original_taxes:
            grosses = _allocate(gross, [t.base + t.amount for t in original_taxes], currency)
            for t, part in zip(original_taxes, grosses, strict=True):
                net = round_money(part / (1 + t.rate / HUNDRED), currency)
                nets.append(net)
                taxes.append(InvoiceTax(category=t.category, rate=t.rate, base=net, amount=part - net,
                                        legal_note=t.legal_note))
        else:
            nets.append(gross)
        subtotal = sum(nets, ZERO)
        tax_total = gross - subtotal
        credit_lines.append(InvoiceLine(
            kind=InvoiceLine.Kind.CREDIT, quantity=Decimal("1.00"), unit_price=subtotal, amount=subtotal,
            description=f"Credit on invoice {label}: {reason}"[:500],
        ))
    else:
        originals = [line for line, _ in lines]
        if len({line.pk for line in originals}) != len(originals):
            raise ApplicationError("A line is credited twice.", field_errors={"lines": ["Duplicate line."]})
        already = credited_per_line([line.pk for line in originals])
        for original, value in lines:
            value = round_money(Decimal(str(value)), currency)
            if original.invoice_id != invoice.pk:
                raise ApplicationError(f"Line {original.pk} is not a line of {label}.",
                                       field_errors={"lines": ["A line of another invoice."]})
            room = original.amount - already.get(original.pk, ZERO)
            if value <= ZERO or value > room:
                raise ApplicationError(
                    f"Line {original.position} ({original.description or original.get_kind_display()}): "
                    f"the credit must be positive and at most the {room} {currency} left on it.",
                    code="over_credit", field_errors={"lines": [f"Line {original.position}: at most {room}."]},
                )
            full_line = value == original.amount
            credit_lines.append(_credit_line(
                original, value,
                quantity=original.quantity if full_line else Decimal("1.00"),
                unit_price=original.unit_price if full_line else value,
            ))
        subtotal = sum((line.amount for line in credit_lines), ZERO)
        bases = _allocate(subtotal, [t.base for t in original_taxes], currency)
        for t, base in zip(original_taxes, bases, strict=True):
            taxes.append(InvoiceTax(category=t.category, rate=t.rate, base=base,
                                    amount=round_money(base * t.rate / HUNDRED, currency), legal_note=t.legal_note))
        tax_total = sum((t.amount for t in taxes), ZERO)
        excess = subtotal + tax_total - left
        if ZERO < excess <= quantum(currency) * max(len(taxes), 1) and taxes:
            # Tax rounding of the last lines to credit: land exactly on what is left.
            taxes[-1].amount -= excess
            tax_total -= excess
        if subtotal + tax_total > left:
            raise ApplicationError(
                f"These lines come to {subtotal + tax_total} {currency} with tax, more than the {left} {currency} "
                f"left to credit on {label}.",
                code="over_credit",
            )

    today = timezone.now().date()
    credit_note = Invoice(
        kind=Invoice.Kind.CREDIT_NOTE,
        credit_of=invoice,
        entity=invoice.entity,
        client=invoice.client,
        contract=invoice.contract,
        project=invoice.project,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        # The credit note covers the service period of the lines it credits (docs/rules/billing.md §13).
        service_start=min((line.service_start for line in credit_lines if line.service_start), default=None),
        service_end=max((line.service_end for line in credit_lines if line.service_end), default=None),
        issue_date=today,
        due_date=today,
        currency=currency,
        po_number=invoice.po_number,
        purchase_order_id=invoice.purchase_order_id,  # an issued credit note gives its amount back to the PO
        consolidated=invoice.consolidated,
        subtotal=subtotal,
        tax_total=tax_total,
        total=subtotal + tax_total,
        prepared_by=user,
        notes=reason,
    )
    why = f"Credit note of {label}: {reason}"
    save_audited(credit_note, user=user, reason=why)
    for position, line in enumerate(credit_lines, start=1):
        line.invoice = credit_note
        line.position = position
        save_audited(line, user=user, reason=why)
    for tax in taxes:
        tax.invoice = credit_note
        save_audited(tax, user=user, reason=why)

    invoice.credited_amount += credit_note.total
    try:
        with transaction.atomic():
            save_audited(invoice, user=user, reason=f"Credit note pending: {credit_note.total} {currency}")
    except IntegrityError as exc:  # the database's last word: never more credited than invoiced
        raise ApplicationError(
            f"{label} cannot be credited beyond its total {invoice.total} {currency}.", code="over_credit"
        ) from exc
    apply_transition(credit_note, "submit_for_approval", user=user, reason=why[:200], label="credit note")
    save_audited(credit_note, user=user, reason="Awaiting approval")
    open_approval(credit_note, user=user)
    return credit_note


def _credit_line(original: InvoiceLine, value: Decimal, *, quantity: Decimal, unit_price: Decimal) -> InvoiceLine:
    what = original.description or original.get_kind_display()
    return InvoiceLine(
        kind=InvoiceLine.Kind.CREDIT,
        contract_id=original.contract_id,
        project=original.project,
        role=original.role,
        quantity=quantity,
        unit_price=unit_price,
        amount=value,
        credited_line=original,
        description=f"Credit: {what}"[:500],
        service_start=original.service_start,
        service_end=original.service_end,
    )


def _issued_credit_total(invoice: Invoice) -> Decimal:
    return (
        live_credit_notes(invoice).filter(number__isnull=False).aggregate(total=Sum("total"))["total"] or ZERO
    )


def is_reissue(credit_note: Invoice) -> bool:
    """Made by a dispute resolved with `credit_and_reissue` (asked through the credit-note hook, ADR 0080)."""
    return credit_note_listener().is_reissue(credit_note)


def release_lines(lines: Sequence[int], *, invoice: Invoice, user: Any, reason: str) -> int:
    """Return the items billed by the given lines of `invoice` to `approved` (StateLog "release" rows)."""
    actor = user if getattr(user, "pk", None) else None
    released = 0
    now = timezone.now()
    logs = []
    for model in (TimeEntry, Expense, Milestone):
        ids = list(
            model.objects.select_for_update()
            .filter(invoice_line__invoice=invoice, invoice_line_id__in=list(lines))
            .values_list("id", flat=True)
        )
        if not ids:
            continue
        model.objects.filter(id__in=ids).update(invoice_line=None, status="approved")
        content_type = ContentType.objects.get_for_model(model)
        logs += [
            StateLog(timestamp=now, by=actor, source_state="invoiced", state="approved", transition="release",
                     content_type=content_type, object_id=item_id,
                     description=f"{reason} (invoice {invoice.display_number})")
            for item_id in ids
        ]
        released += len(ids)
    StateLog.objects.bulk_create(logs, batch_size=5000)
    return released


def credit_note_issued(*, credit_note: Invoice, user: Any) -> None:
    """A credit note was approved and numbered: apply it to the invoice it credits.

    Runs in the approval transaction. Locks the contract row (like a billing run) and then the invoice.
    """
    from billing.services.invoices import release_items

    Contract.objects.select_for_update().filter(pk=credit_note.contract_id).first()
    invoice = _lock_invoice(credit_note.credit_of)
    issued = _issued_credit_total(invoice)
    reason = f"Credit note {credit_note.number}"
    if issued >= invoice.total:
        why = f"{reason}: fully credited"
        apply_transition(invoice, "mark_credited", user=user, reason=why, label=invoice.display_number)
        save_audited(invoice, user=user, reason=why)
        release_items(invoice, user=user, reason=f"Fully credited by {credit_note.number}")
        credit_note_listener().fully_credited(invoice, credit_note=credit_note, user=user)
    elif is_reissue(credit_note):
        credited = credited_per_line(list(invoice.lines.values_list("id", flat=True)))
        full_lines = [
            line.pk for line in invoice.lines.filter(pk__in=credit_note.lines.values("credited_line_id"))
            if line.amount > ZERO and credited.get(line.pk, ZERO) >= line.amount
        ]
        release_lines(full_lines, invoice=invoice, user=user, reason=f"Credited for reissue by {credit_note.number}")
    if invoice.status != Invoice.Status.CREDITED:
        from billing.services.payments import payment_status_settle

        # Payments and credits may now cover the whole total: partially paid → paid.
        payment_status_settle(invoice=invoice, user=user, reason=f"{reason}: payments and credits cover the total")
    approved = f"Credit note {credit_note.number} approved ({credit_note.total} {credit_note.currency})."
    credit_note_listener().decided(credit_note, user=user, text=approved)


def credit_note_rejected(*, credit_note: Invoice, user: Any, reason: str) -> None:
    """A rejected credit note no longer counts: give its amount back to what is left to credit.

    Called by `invoice_reject` after `pending_approval → draft`, in the same transaction. The draft stays
    for the record (credit notes are never revised: a new one is made if the claim stands).
    """
    invoice = _lock_invoice(credit_note.credit_of)
    # Never below zero: a credit note that did not come through `credit_note_create` (an import) reserved nothing.
    invoice.credited_amount = max(ZERO, invoice.credited_amount - credit_note.total)
    save_audited(invoice, user=user, reason=f"Credit note draft {credit_note.pk} rejected: amount given back")
    credit_note_listener().decided(
        credit_note, user=user, text=f"Credit note draft {credit_note.pk} was rejected: {reason}. "
        "Open a new dispute or credit note if the customer's claim stands."
    )


@transaction.atomic
def credit_note_cancel(*, credit_note: Invoice, user: Any, reason: str) -> Invoice:
    """Finance withdraws a credit note still awaiting approval (its approval request is cancelled)."""
    from approvals.models import ApprovalRequest
    from approvals.services import approval_request_cancel

    require_finance(user, "Only finance may create credit notes.")
    reason = require_reason(reason, "cancel a credit note")
    credit_note = _lock_invoice(credit_note)
    if credit_note.kind != Invoice.Kind.CREDIT_NOTE or credit_note.status != Invoice.Status.PENDING_APPROVAL:
        raise ApplicationError("Only a credit note awaiting approval can be withdrawn.", code="invalid_transition")
    apply_transition(credit_note, "reject", user=user, reason=f"Withdrawn: {reason}", label="credit note")
    apply_transition(credit_note, "cancel", user=user, reason=f"Withdrawn: {reason}", label="credit note")
    save_audited(credit_note, user=user, reason=f"Withdrawn: {reason}")
    # The subject first, then its route: a request is never cancelled while its subject still awaits approval.
    request = ApprovalRequest.objects.filter(
        content_type=ContentType.objects.get_for_model(Invoice), object_id=credit_note.pk,
        status=ApprovalRequest.Status.PENDING,
    ).first()
    if request is not None:
        approval_request_cancel(request=request, user=user, reason=f"Credit note withdrawn: {reason}")
    credit_note_rejected(credit_note=credit_note, user=user, reason=f"withdrawn by finance: {reason}")
    return credit_note


def invoice_reissue(*, invoice: Invoice, user: Any) -> list[Invoice]:
    """Bill the released items of a credited invoice now: a run of its contract over its period.

    Returns the new draft invoice(s) (in `pending_approval` or `exception`, as any run's). The run also
    bills any other approved, unbilled work of the contract up to the period end, as the next run would.
    """
    from billing.services.billing_run import bill_period

    require_finance(user, "Only finance may create credit notes.")
    if invoice.kind != Invoice.Kind.INVOICE or not invoice.number:
        raise ApplicationError("Only an issued invoice can be reissued.", code="not_reissuable")
    if not live_credit_notes(invoice).filter(number__isnull=False).exists():
        raise ApplicationError(
            f"{invoice.display_number} has no approved credit note: nothing was released to bill again.",
            code="not_reissuable",
        )
    today = timezone.now().date()
    period_start = invoice.period_start or invoice.issue_date
    period_end = invoice.period_end or invoice.issue_date
    run = bill_period(
        period_start=period_start, period_end=period_end, run_date=max(today, period_start), user=user,
        contracts=_reissue_contracts(invoice),
    )
    drafts = list(Invoice.objects.filter(billing_run=run, contract_id=invoice.contract_id).order_by("id"))
    if not drafts:
        skipped = "; ".join(run.summary.get("skipped", [])) if isinstance(run.summary, dict) else ""
        raise ApplicationError(
            f"Nothing to reissue for {invoice.display_number}: no released or unbilled work on contract "
            f"{invoice.contract.code} up to {period_end}." + (f" {skipped}" if skipped else ""),
            code="nothing_to_reissue",
        )
    return drafts


def _reissue_contracts(invoice: Invoice) -> list[str]:
    """The contracts a reissue bills: the invoice's, or every contract on a consolidated invoice (§13)."""
    if not invoice.consolidated:
        return [invoice.contract.code]
    codes = set(invoice.lines.filter(contract__isnull=False).values_list("contract__code", flat=True))
    return sorted(codes | {invoice.contract.code})
