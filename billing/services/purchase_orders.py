"""Purchase orders with a value: the drawdown rules and the PO's own changes (docs/rules/billing.md §13).

Two balances, both derived from the invoices that carry the PO (never stored twice):

- what the **engine** sees when it prices a run or a revalidation: amount − Σ subtotals of the
  PO's invoices that are not cancelled (drafts and blocked ones included) + Σ subtotals of its
  issued credit notes − the drafts of the same run that come earlier (`apply_po_rules`);
- what is **committed** (the control, ADR 0068): Σ subtotals of the PO's invoices that passed
  validation or an override (`pending_approval` onwards) − its issued credit notes. It never
  exceeds the PO amount: the engine's balance is the stricter of the two, the PO exceptions
  cannot be overridden, and a database trigger refuses any write that would overdraw.

A cancelled draft gives its balance back at once (it no longer counts); a credit note gives
its subtotal back once it is issued (approved).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Case, DecimalField, F, Q, Sum, When

from billing.models import Invoice, PurchaseOrder
from billing.services.billing_engine import BLOCKING, Code, InvoiceDraft
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.money import ZERO
from kernel.roles import BILLING_ADMIN, FINANCE_ROLES, has_any_role

#: An invoice in one of these has passed validation (or an override): it draws on its PO for good.
COMMITTED_STATUSES = (
    Invoice.Status.PENDING_APPROVAL,
    Invoice.Status.APPROVED,
    Invoice.Status.POSTED,
    Invoice.Status.SENT,
    Invoice.Status.PARTIALLY_PAID,
    Invoice.Status.PAID,
    Invoice.Status.DISPUTED,
    Invoice.Status.CREDITED,
)
#: A credit note in one of these is issued: it gives its subtotal back to the PO.
ISSUED_STATUSES = tuple(s for s in COMMITTED_STATUSES if s != Invoice.Status.PENDING_APPROVAL)
#: Codes no override lets through: the client's AP department would reject the invoice anyway.
PO_CODES = (Code.PO_EXCEEDED, Code.PO_EXPIRED, Code.PO_CURRENCY_MISMATCH)
PO_EDITOR_ROLES = FINANCE_ROLES | {BILLING_ADMIN}


# --- balances ---------------------------------------------------------------------------------------


def _po_invoices(po_ids: Iterable[int]):
    return Invoice.objects.filter(purchase_order_id__in=list(po_ids), currency=F("purchase_order__currency"))


def engine_drawn(po_ids: Iterable[int], *, exclude_invoice_id: int | None = None) -> dict[int, Decimal]:
    """Per PO: Σ invoices not cancelled − Σ issued credit notes (what a run or revalidation must leave room for)."""
    ids = list(po_ids)
    if not ids:
        return {}
    rows = (
        _po_invoices(ids)
        .filter(
            Q(kind=Invoice.Kind.INVOICE) & ~Q(status=Invoice.Status.CANCELLED)
            | Q(kind=Invoice.Kind.CREDIT_NOTE, status__in=ISSUED_STATUSES)
        )
        .exclude(pk=exclude_invoice_id or 0)
        .values("purchase_order_id")
        .annotate(drawn=Sum(_signed_subtotal()))
        .values_list("purchase_order_id", "drawn")
    )
    found = {po_id: value or ZERO for po_id, value in rows}
    return {po_id: found.get(po_id, ZERO) for po_id in ids}


def _signed_subtotal() -> Case:
    return Case(
        When(kind=Invoice.Kind.INVOICE, then=F("subtotal")),
        default=-F("subtotal"),
        output_field=DecimalField(max_digits=18, decimal_places=2),
    )


@dataclass
class PoFigures:
    """The PO page's figures (all in the PO's currency, before tax)."""

    amount: Decimal
    invoiced: Decimal  # committed invoices (pending approval onwards)
    in_drafts: Decimal  # drafts and blocked invoices that already hold part of the balance
    credited: Decimal  # issued credit notes
    committed: Decimal  # invoiced − credited
    remaining: Decimal  # amount − committed − in_drafts: what the next invoice may draw

    @property
    def used_pct(self) -> Decimal:
        if not self.amount:
            return ZERO
        return (self.committed * 100 / self.amount).quantize(Decimal("0.1"))


def po_figures(po: PurchaseOrder) -> PoFigures:
    sums = _po_invoices([po.pk]).aggregate(
        invoiced=Sum("subtotal", filter=Q(kind=Invoice.Kind.INVOICE, status__in=COMMITTED_STATUSES)),
        drafts=Sum(
            "subtotal",
            filter=Q(kind=Invoice.Kind.INVOICE, status__in=[Invoice.Status.DRAFT, Invoice.Status.EXCEPTION]),
        ),
        credited=Sum("subtotal", filter=Q(kind=Invoice.Kind.CREDIT_NOTE, status__in=ISSUED_STATUSES)),
    )
    invoiced, drafts, credited = (sums[k] or ZERO for k in ("invoiced", "drafts", "credited"))
    committed = invoiced - credited
    return PoFigures(po.amount, invoiced, drafts, credited, committed, po.amount - committed - drafts)


def committed_drawdown(po_ids: Iterable[int]) -> dict[int, Decimal]:
    """Per PO: Σ committed invoices − Σ issued credit notes (the invariant: never above the amount)."""
    ids = list(po_ids)
    rows = (
        _po_invoices(ids)
        .filter(
            Q(kind=Invoice.Kind.INVOICE, status__in=COMMITTED_STATUSES)
            | Q(kind=Invoice.Kind.CREDIT_NOTE, status__in=ISSUED_STATUSES)
        )
        .values("purchase_order_id")
        .annotate(drawn=Sum(_signed_subtotal()))
        .values_list("purchase_order_id", "drawn")
    )
    found = {po_id: value or ZERO for po_id, value in rows}
    return {po_id: found.get(po_id, ZERO) for po_id in ids}


# --- the rules the engine applies -------------------------------------------------------------------


def lock_purchase_orders(po_ids: Iterable[int]) -> None:
    """Row locks (id order) on the POs a run or revalidation draws on: writers drawing on one PO take turns."""
    ids = sorted(set(po_ids))
    if ids:
        list(PurchaseOrder.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))


def draw_order_key(draft: InvoiceDraft, project_codes: dict[int, str]) -> tuple[str, str]:
    """Drafts of one run draw in contract-code order, per-project drafts by project code (§13)."""
    return (draft.contract.code, project_codes.get(draft.project_id, "") if draft.project_id else "")


def apply_po_rules(
    drafts: Sequence[InvoiceDraft],
    *,
    project_codes: dict[int, str] | None = None,
    exclude_invoice_id: int | None = None,
) -> None:
    """PO_EXPIRED, PO_CURRENCY_MISMATCH and PO_EXCEEDED on drafts whose contract draws on a PO (§13).

    `drafts` are those of one run (or the one draft being revalidated); each takes what the
    earlier ones left. Sets `draft.purchase_order` (None when no PO is linked).
    """
    with_po = [d for d in drafts if d.purchase_order is not None]
    if not with_po:
        return
    drawn = engine_drawn({d.purchase_order.pk for d in with_po}, exclude_invoice_id=exclude_invoice_id)
    for draft in sorted(with_po, key=lambda d: draw_order_key(d, project_codes or {})):
        po = draft.purchase_order
        if not po.is_valid_on(draft.issue_date):
            draft.add(
                Code.PO_EXPIRED,
                BLOCKING,
                f"PO {po.number} is valid {po.validity_label()}; the issue date {draft.issue_date:%Y-%m-%d} is "
                "outside it.",
                hint=_hint(po, "extend its validity"),
            )
        if draft.currency != po.currency:
            draft.add(
                Code.PO_CURRENCY_MISMATCH,
                BLOCKING,
                f"PO {po.number} is in {po.currency}; this invoice is in {draft.currency}.",
                hint=_hint(po, f"issue a PO in {draft.currency}"),
            )
            continue  # draws nothing, so it cannot exceed
        remaining = po.amount - drawn[po.pk]
        if draft.subtotal > remaining:
            excess = draft.subtotal - remaining
            draft.add(
                Code.PO_EXCEEDED,
                BLOCKING,
                f"PO {po.number}: {max(remaining, ZERO)} {po.currency} left of {po.amount}; this invoice "
                f"({draft.subtotal} {po.currency}) exceeds it by {excess} {po.currency}.",
                amount=excess,
                hint=_hint(po, f"raise it by at least {excess} {po.currency}", remaining=max(remaining, ZERO)),
            )
        drawn[po.pk] += draft.subtotal  # a blocked draft still draws


def _hint(po: PurchaseOrder, what: str, *, remaining: Decimal | None = None) -> str:
    who = po.raised_by or f"the client's purchasing contact ({po.client.code})"
    left = f"{remaining} {po.currency} left on PO {po.number}. " if remaining is not None else ""
    return f"{left}Ask {who} to {what}, update the PO in Billable, then revalidate."[:300]


# --- changing a PO (admin, API): never below what is drawn ---------------------------------------------


def _require_editor(user: Any) -> None:
    if user is None:  # integrations authenticate as a service account upstream
        return
    if not (has_any_role(user, PO_EDITOR_ROLES) or getattr(user, "is_superuser", False)):
        raise PermissionDeniedError("Only billing admins and finance maintain purchase orders.")


@transaction.atomic
def purchase_order_save(*, po: PurchaseOrder, user: Any, reason: str = "") -> PurchaseOrder:
    """Create or change a PO (admin form, portal): billing admins and finance only; see `purchase_order_check`."""
    _require_editor(user)
    purchase_order_check(po)
    save_audited(po, user=user, reason=reason or ("PO changed" if po.pk else "PO created"))
    return po


def purchase_order_check(po: PurchaseOrder) -> None:
    """Refuse a change that would let invoices exceed the PO (the API upsert calls it too).

    Under a row lock on the PO: a run drawing on it at the same moment waits, then sees the new
    amount. The amount never drops below what is committed; the number, client and currency of a
    PO that contracts or invoices use stay (issue a new PO instead).
    """
    if po.valid_to and po.valid_from and po.valid_to < po.valid_from:
        raise ApplicationError("The PO ends before it starts.", field_errors={"valid_to": ["Before valid from."]})
    if not po.pk:
        return
    stored = PurchaseOrder.objects.select_for_update().get(pk=po.pk)
    committed = committed_drawdown([po.pk])[po.pk]
    errors: dict[str, list[str]] = {}
    if po.amount < committed:
        errors["amount"] = [
            f"{committed} {stored.currency} is already invoiced on PO {stored.number} (net of credit notes); "
            "the amount cannot go below it. Credit the invoices first."
        ]
    used = stored.invoices.exists() or stored.contracts.exists()
    if used and po.currency != stored.currency:
        errors["currency"] = ["Invoices or contracts draw on this PO in its currency; issue a new PO instead."]
    if used and po.number != stored.number:
        errors["number"] = ["Contracts or invoices carry this PO number; issue a new PO instead."]
    if used and po.client_id != stored.client_id:
        errors["client"] = ["Contracts or invoices refer to this PO; its client cannot change."]
    if errors:
        raise ApplicationError(
            f"PO {stored.number} cannot be changed that way: " + " ".join(m for v in errors.values() for m in v),
            code="po_locked",
            field_errors=errors,
        )
