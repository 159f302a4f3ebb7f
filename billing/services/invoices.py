"""Invoice use cases after a run: revalidate, override, write down, approve, reject, cancel.

Each is one transaction under a row lock on the invoice (and its contract where
pricing is redone), goes through the FSM, and leaves history and StateLog rows.

Approvals go through the one engine (`approvals.services`), as for every other
subject: an invoice reaching `pending_approval` gets its ApprovalRequest in the
same transaction, and `invoice_approve` / `invoice_reject` decide through it
(`billing.services.work.route_decision`: the engine records the step, and on
the last step calls `invoice_approve` back, which then numbers the invoice).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm_log.models import StateLog

from billing.hooks import score_invoices
from billing.models import (
    Contract,
    Expense,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceTax,
    Milestone,
    TimeEntry,
)
from billing.services.billing_engine import Code, price_contract
from billing.services.consolidation import consolidate
from billing.services.credit_notes import credit_note_issued, credit_note_rejected
from billing.services.posting import request_posting
from billing.services.pricing import FxResolver, RateResolver
from billing.services.purchase_orders import PO_CODES, apply_po_rules, lock_purchase_orders
from billing.services.run_loading import load_contexts
from billing.services.run_persistence import write_invoice_contents
from billing.services.tax_recordings import tax_engine_recording_open
from billing.services.vat_checks import attach_vat_checks
from billing.services.work import Route, open_approval, route_decision
from billing.tax_engine import get_tax_engine
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError, SegregationOfDutiesError
from kernel.money import HUNDRED, ZERO, round_money
from kernel.roles import FINANCE_CONTROLLER, has_role, require_finance
from kernel.workflow import apply_transition, require_reason

Status = Invoice.Status


def _lock(invoice: Invoice) -> Invoice:
    locked = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("contract", "contract__client", "contract__entity", "entity")
        .get(pk=invoice.pk)
    )
    return locked


def _require_controller(user: Any, action: str) -> None:
    if not has_role(user, FINANCE_CONTROLLER) and not getattr(user, "is_superuser", False):
        raise PermissionDeniedError(f"Only a finance controller may {action}.")


def _require_editable(invoice: Invoice) -> None:
    if invoice.number:
        raise ApplicationError(
            f"Invoice {invoice.number} is numbered and immutable; correct it with a credit note.", code="immutable"
        )


# --- releasing items ------------------------------------------------------------------------------


def release_items(invoice: Invoice, *, user: Any, reason: str) -> int:
    """Return the items billed by `invoice` to `approved` so they can be billed again."""
    actor = user if getattr(user, "pk", None) else None
    released = 0
    now = timezone.now()
    logs = []
    for model in (TimeEntry, Expense, Milestone):
        ids = list(model.objects.select_for_update().filter(invoice_line__invoice=invoice).values_list("id", flat=True))
        if not ids:
            continue
        model.objects.filter(id__in=ids).update(invoice_line=None, status="approved")
        content_type = ContentType.objects.get_for_model(model)
        logs += [
            StateLog(
                timestamp=now,
                by=actor,
                source_state="invoiced",
                state="approved",
                transition="release",
                content_type=content_type,
                object_id=item_id,
                description=f"{reason} (invoice {invoice.display_number})",
            )
            for item_id in ids
        ]
        released += len(ids)
    StateLog.objects.bulk_create(logs, batch_size=5000)
    return released


# --- revalidation ----------------------------------------------------------------------------------


@transaction.atomic
def invoice_revalidate(*, invoice: Invoice, user: Any) -> Invoice:
    """Re-price and re-check a draft after upstream data was fixed (`exception → draft → …`)."""
    require_finance(user, "Only finance may revalidate invoices.")
    # A consolidated invoice is re-priced over every contract it bills (§13); contracts are locked in id order.
    contract_ids = sorted(
        {invoice.contract_id}
        | set(InvoiceLine.objects.filter(invoice=invoice, contract__isnull=False).values_list("contract_id", flat=True))
        if invoice.consolidated
        else {invoice.contract_id}
    )
    list(Contract.objects.select_for_update().filter(pk__in=contract_ids).order_by("pk").values_list("pk"))
    invoice = _lock(invoice)
    _require_editable(invoice)
    if invoice.kind != Invoice.Kind.INVOICE:
        raise ApplicationError("Credit notes are not re-priced; reject and redo them instead.")
    if invoice.status == Status.EXCEPTION:
        apply_transition(invoice, "reopen_draft", user=user, reason="Revalidate", label=invoice.display_number)
    elif invoice.status != Status.DRAFT:
        raise ApplicationError(
            f"Only draft or exception invoices can be revalidated; {invoice.display_number} is "
            f"{invoice.get_status_display().lower()}.",
            code="invalid_transition",
        )
    reason = "Revalidated"
    release_items(invoice, user=user, reason=reason)
    InvoiceLine.objects.filter(invoice=invoice).delete()
    InvoiceTax.objects.filter(invoice=invoice).delete()
    invoice.exceptions.filter(state=InvoiceException.State.OPEN).update(
        state=InvoiceException.State.RESOLVED, resolved_by=user, resolved_at=timezone.now(), resolution_reason=reason
    )

    period_start = invoice.period_start or invoice.issue_date
    period_end = invoice.period_end or invoice.issue_date
    contexts, _open = load_contexts(contract_ids, period_start, period_end, rebuilding=invoice)
    if not invoice.consolidated:
        ctx = contexts[0]
        if invoice.contract.billing_model == Contract.BillingModel.RETAINER:
            ctx.retainer_fee_due = invoice.retainer_period is not None
            ctx.existing_fee_line_id = None
    taxes = get_tax_engine()
    attach_vat_checks(ctx.contract for ctx in contexts)
    drafts = []
    for ctx in contexts:
        drafts += price_contract(
            ctx,
            period_start=period_start,
            period_end=period_end,
            run_date=invoice.issue_date,
            rates=RateResolver([ctx.contract]),
            fx=FxResolver({(e.currency, ctx.contract.currency) for e in ctx.expense_items}, up_to=period_end),
            taxes=taxes,
        )
    project_codes = {pid: p.code for ctx in contexts for pid, p in ctx.projects.items()}
    if invoice.consolidated:
        drafts = [d for d in consolidate(drafts, taxes=taxes, project_codes=project_codes) if d.consolidated]
        draft = drafts[0] if drafts else None
    else:
        draft = next((d for d in drafts if d.project_id == invoice.project_id), None)
    if draft is not None and draft.purchase_order is not None:
        lock_purchase_orders([draft.purchase_order.pk])
        apply_po_rules([draft], project_codes=project_codes, exclude_invoice_id=invoice.pk)
    if draft is None:
        # Nothing left to bill (items were un-approved meanwhile): the draft has no purpose.
        apply_transition(invoice, "cancel", user=user, reason="Nothing left to bill", label=invoice.display_number)
        save_audited(invoice, user=user, reason="Revalidated: nothing left to bill; cancelled")
        return invoice
    invoice.subtotal, invoice.tax_total, invoice.total = draft.subtotal, draft.tax_total, draft.total
    invoice.due_date = draft.due_date
    invoice.service_start, invoice.service_end = draft.service_start, draft.service_end
    invoice.po_number = invoice.contract.po_number
    invoice.purchase_order = draft.purchase_order
    write_invoice_contents([(invoice, draft)], actor=user, reason=reason, run=None)
    _score_draft(invoice)
    if draft.is_blocked:
        codes = ", ".join(sorted(draft.blocking_codes))
        apply_transition(invoice, "flag_exception", user=user, reason=f"Still blocked: {codes}")
    else:
        apply_transition(invoice, "submit_for_approval", user=user, reason="Revalidated: no blocking exception")
    save_audited(invoice, user=user, reason=reason)
    if invoice.status == Status.PENDING_APPROVAL:
        open_approval(invoice, user=user)
    return invoice


def _score_draft(invoice: Invoice) -> None:
    """Re-score against the client's history (docs/rules/assistive.md); an ANOMALY warning then routes the approval."""
    score_invoices([invoice])


# --- exceptions: override and write-down ------------------------------------------------------------


@transaction.atomic
def invoice_override(*, invoice: Invoice, user: Any, reason: str) -> Invoice:
    """A controller lets a blocked invoice go to approval, with a reason that is kept."""
    reason = require_reason(reason, "override a blocking exception")
    _require_controller(user, "override blocking exceptions")
    invoice = _lock(invoice)
    if invoice.prepared_by_id and invoice.prepared_by_id == user.pk:
        raise SegregationOfDutiesError("You prepared this invoice; another controller must override it.")
    po_blocks = sorted(
        invoice.exceptions.filter(state=InvoiceException.State.OPEN, code__in=PO_CODES).values_list("code", flat=True)
    )
    if po_blocks:
        # No invoice beyond, outside or beside its PO (ADR 0068): the client's AP would reject it anyway.
        raise ApplicationError(
            f"{invoice.display_number} is blocked by {', '.join(po_blocks)}, which no override lets through: "
            "have the PO raised, extended or corrected, then revalidate.",
            code="po_not_overridable",
        )
    if invoice.exceptions.filter(state=InvoiceException.State.OPEN, code=Code.TAX_ENGINE_UNAVAILABLE).exists():
        # Never an untaxed invoice because the engine was down (ADR 0076): revalidate once it answers.
        raise ApplicationError(
            f"{invoice.display_number} has no tax quote ({Code.TAX_ENGINE_UNAVAILABLE}), which no override lets "
            "through: revalidate once the tax engine answers.",
            code="tax_not_overridable",
        )
    apply_transition(invoice, "override", user=user, reason=f"Override: {reason}", label=invoice.display_number)
    invoice.exceptions.filter(state=InvoiceException.State.OPEN, severity=InvoiceException.Severity.BLOCKING).update(
        state=InvoiceException.State.OVERRIDDEN, resolved_by=user, resolved_at=timezone.now(), resolution_reason=reason
    )
    save_audited(invoice, user=user, reason=f"Override: {reason}")
    open_approval(invoice, user=user)
    return invoice


@transaction.atomic
def invoice_write_down_to_cap(*, invoice: Invoice, user: Any, reason: str) -> Invoice:
    """Add a negative line that brings the invoice exactly to the contract cap (§3.8)."""
    reason = require_reason(reason, "write an invoice down to the cap")
    _require_controller(user, "write invoices down")
    Contract.objects.select_for_update().filter(pk=invoice.contract_id).first()
    invoice = _lock(invoice)
    _require_editable(invoice)
    cap_exception = invoice.exceptions.filter(code=Code.CAP_EXCEEDED, state=InvoiceException.State.OPEN).first()
    if cap_exception is None or not cap_exception.amount:
        raise ApplicationError(f"{invoice.display_number} has no open cap excess to write down.")
    excess = round_money(cap_exception.amount, invoice.currency)
    if excess >= invoice.subtotal:
        raise ApplicationError(
            f"The excess {excess} {invoice.currency} is the whole invoice or more; cancel the draft instead.",
        )
    position = (invoice.lines.order_by("-position").values_list("position", flat=True).first() or 0) + 1
    line = InvoiceLine(
        invoice=invoice,
        position=position,
        kind=InvoiceLine.Kind.WRITE_DOWN,
        quantity=Decimal("1.00"),
        unit_price=-excess,
        amount=-excess,
        description=f"Write-down to contract cap: {reason}"[:500],
    )
    save_audited(line, user=user, reason="Write-down to cap")
    _recompute_totals(invoice)
    cap_exception.state = InvoiceException.State.RESOLVED
    cap_exception.resolved_by = user
    cap_exception.resolved_at = timezone.now()
    cap_exception.resolution_reason = f"Written down by {excess} {invoice.currency}: {reason}"
    save_audited(cap_exception, user=user, reason="Written down to cap")
    still_blocked = invoice.exceptions.filter(
        state=InvoiceException.State.OPEN, severity=InvoiceException.Severity.BLOCKING
    ).exists()
    if invoice.status == Status.EXCEPTION and not still_blocked:
        apply_transition(invoice, "reopen_draft", user=user, reason="Written down to cap")
        apply_transition(invoice, "submit_for_approval", user=user, reason="Written down to cap; no blocking exception")
    save_audited(invoice, user=user, reason=f"Written down to cap: {reason}")
    if invoice.status == Status.PENDING_APPROVAL:
        open_approval(invoice, user=user)
    return invoice


def _recompute_totals(invoice: Invoice) -> None:
    """Subtotal from lines, tax per category from the tax rows' rates (rounding per §3.9)."""
    subtotal = sum((line.amount for line in invoice.lines.all()), ZERO)
    tax_total = ZERO
    for tax in invoice.taxes.all():
        tax.base = subtotal
        tax.amount = round_money(subtotal * tax.rate / HUNDRED, invoice.currency)
        tax.save(update_fields=["base", "amount"])
        tax_total += tax.amount
    invoice.subtotal, invoice.tax_total, invoice.total = subtotal, tax_total, subtotal + tax_total


# --- approval, rejection, cancellation --------------------------------------------------------------


def next_number(*, entity_id: int, entity_prefix: str, year: int, kind: str) -> str:
    """Take the next gapless number of (entity, year, series) under a row lock on its counter.

    The counter is locked straight away; only the first number of a series creates it (in a
    savepoint, as a concurrent approval may create it first) and then locks it.
    """
    counters = InvoiceNumberSequence.objects.select_for_update().filter(entity_id=entity_id, year=year, series=kind)
    sequence = counters.first()
    if sequence is None:
        try:
            with transaction.atomic():
                InvoiceNumberSequence.objects.get_or_create(entity_id=entity_id, year=year, series=kind)
        except IntegrityError:
            pass  # created by a concurrent approval; lock it below
        sequence = counters.get()
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    series = "" if kind == Invoice.Kind.INVOICE else "CN-"
    return f"{entity_prefix}-{series}{year}-{sequence.last_number:06d}"


@transaction.atomic
def invoice_approve(*, invoice: Invoice, user: Any, comment: str = "") -> Invoice:
    """Approve through the approval route; the last step numbers, freezes and posts the invoice.

    Posting goes through the ERP outbox, or happens at once when no ERP is configured (docs/rules/domain.md);
    an approved credit note also updates what it credits (`credit_note_issued`).
    """
    invoice = _lock(invoice)
    if invoice.prepared_by_id and invoice.prepared_by_id == user.pk:
        raise SegregationOfDutiesError("You prepared this invoice; someone else must approve it.")
    route, _request = route_decision(invoice, user=user, decision="approve", comment=comment)
    if route == Route.ENGINE:
        invoice.refresh_from_db()
        return invoice  # an earlier step, or the engine has called back and approved it
    require_finance(user, "Only finance may approve invoices.")
    apply_transition(invoice, "approve", user=user, reason=comment or "Approved", label=invoice.display_number)
    invoice.number = next_number(
        entity_id=invoice.entity_id,
        entity_prefix=invoice.entity.number_prefix,
        year=invoice.issue_date.year,
        kind=invoice.kind,
    )
    invoice.approved_by = user
    invoice.approved_at = timezone.now()
    save_audited(invoice, user=user, reason=f"Approved as {invoice.number}")
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        credit_note_issued(credit_note=invoice, user=user)
    request_posting(invoice=invoice, user=user)
    tax_engine_recording_open(invoice=invoice)
    return invoice


@transaction.atomic
def invoice_reject(*, invoice: Invoice, user: Any, reason: str) -> Invoice:
    """Send an invoice awaiting approval back to draft, with the reason."""
    reason = require_reason(reason, "reject an invoice")
    invoice = _lock(invoice)
    route, _request = route_decision(invoice, user=user, decision="reject", comment=reason)
    if route == Route.ENGINE:
        invoice.refresh_from_db()
        return invoice  # the engine recorded the rejection and called back
    require_finance(user, "Only finance may reject invoices.")
    apply_transition(invoice, "reject", user=user, reason=reason, label=invoice.display_number)
    save_audited(invoice, user=user, reason=f"Rejected: {reason}")
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        credit_note_rejected(credit_note=invoice, user=user, reason=reason)  # no longer counts: amount given back
    return invoice


@transaction.atomic
def invoice_cancel(*, invoice: Invoice, user: Any, reason: str) -> Invoice:
    """Cancel a draft: its items become billable again (nothing is lost)."""
    reason = require_reason(reason, "cancel a draft invoice")
    require_finance(user, "Only finance may cancel invoices.")
    Contract.objects.select_for_update().filter(pk=invoice.contract_id).first()
    invoice = _lock(invoice)
    _require_editable(invoice)
    apply_transition(invoice, "cancel", user=user, reason=reason, label=invoice.display_number)
    release_items(invoice, user=user, reason=f"Draft cancelled: {reason}")
    save_audited(invoice, user=user, reason=f"Cancelled: {reason}")
    return invoice
