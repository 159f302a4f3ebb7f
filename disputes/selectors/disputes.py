"""Read models of the dispute screens: the dispute list, a dispute's page, the invoice page's dispute panel.

Each function runs a fixed number of queries whatever the number of rows (select_related /
prefetch_related for rows, one aggregate for the counts).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, IntegerField, Prefetch, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from billing.models import Invoice, InvoiceLine
from billing.selectors import TimelineEntry, actor_name, record_timeline
from disputes.classify import Suggestion, dispute_text, suggest, tokens
from disputes.models import Dispute, DisputeClassifier, DisputeLine, DisputeNote

ZERO = Decimal("0")
QUEUE_LIMIT = 500
LIVE = (Dispute.Status.OPEN, Dispute.Status.INVESTIGATING)

STATUS_TABS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("live", "Open & investigating", LIVE),
    ("resolved", "Resolved", (Dispute.Status.RESOLVED,)),
    ("withdrawn", "Withdrawn", (Dispute.Status.WITHDRAWN,)),
    ("all", "All", ()),
)
SORTS = {
    "due": "SLA: overdue first, then due date",
    "amount": "Largest amount",
    "age": "Oldest first",
}


def today() -> datetime.date:
    return timezone.localdate()


def dispute_age_days(dispute: Dispute, *, on: datetime.date | None = None) -> int:
    """Days open: until today for a live dispute, until its resolution for a closed one."""
    end = (dispute.resolved_at.date() if dispute.resolved_at and not dispute.is_live else None) or on or today()
    return max((end - dispute.opened_at.date()).days, 0)


def dispute_is_overdue(dispute: Dispute, *, on: datetime.date | None = None) -> bool:
    """A live dispute past its due date (the SLA)."""
    return dispute.is_live and dispute.due_date < (on or today())


@dataclass
class DisputeRow:
    dispute: Dispute
    age_days: int
    overdue: bool


@dataclass
class DisputeQueue:
    rows: list[DisputeRow]
    total: int
    truncated: bool
    by_category: list[dict[str, Any]]
    overdue_count: int
    amounts: list[tuple[str, Decimal]] = field(default_factory=list)


def _filtered(filters: dict[str, Any], *, user: Any = None) -> QuerySet[Dispute]:
    qs = Dispute.objects.all()
    statuses = dict((key, statuses) for key, _label, statuses in STATUS_TABS).get(filters.get("status") or "live")
    if statuses:
        qs = qs.filter(status__in=statuses)
    if filters.get("category"):
        qs = qs.filter(category=filters["category"])
    owner = filters.get("owner")
    if owner == "me" and user is not None:
        qs = qs.filter(owner=user)
    elif owner and str(owner).isdigit():
        qs = qs.filter(owner_id=int(owner))
    client = (filters.get("client") or "").strip() if isinstance(filters.get("client"), str) else filters.get("client")
    if client:
        if str(client).isdigit():
            qs = qs.filter(invoice__client_id=int(client))
        else:
            qs = qs.filter(Q(invoice__client__code__iexact=client) | Q(invoice__client__legal_name__icontains=client))
    if filters.get("min_age"):
        qs = qs.filter(opened_at__date__lte=today() - datetime.timedelta(days=int(filters["min_age"])))
    if filters.get("min_amount"):
        qs = qs.filter(disputed_amount__gte=filters["min_amount"])
    if filters.get("overdue"):
        qs = qs.filter(status__in=LIVE, due_date__lt=today())
    return qs


def dispute_queue(*, filters: dict[str, Any] | None = None, user: Any = None, limit: int = QUEUE_LIMIT) -> DisputeQueue:
    """The dispute list: filtered rows (overdue first by default), counts by category, totals per currency."""
    filters = filters or {}
    qs = _filtered(filters, user=user)
    on = today()
    sort = filters.get("sort") or "due"
    overdue_first = Case(
        When(status__in=LIVE, due_date__lt=on, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    if sort == "amount":
        ordering = ["-disputed_amount", "opened_at", "id"]
    elif sort == "age":
        ordering = ["opened_at", "id"]
    else:
        ordering = [overdue_first, "due_date", "opened_at", "id"]
    rows_qs = qs.select_related("invoice", "invoice__client", "owner", "credit_note").annotate(
        line_count=Count("lines")
    ).order_by(*ordering)
    disputes = list(rows_qs[: limit + 1])
    truncated = len(disputes) > limit
    disputes = disputes[:limit]
    labels = dict(Dispute.Category.choices)
    counts = list(
        qs.order_by().values("category").annotate(
            count=Count("id"),
            overdue=Count("id", filter=Q(status__in=LIVE, due_date__lt=on)),
        )
    )
    by_category = sorted(
        ({"category": c["category"], "label": labels.get(c["category"], c["category"]), "count": c["count"],
          "overdue": c["overdue"]} for c in counts),
        key=lambda c: (-c["count"], c["label"]),
    )
    amounts = [
        (row["currency"], row["amount"] or ZERO)
        for row in qs.order_by("currency").values("currency").annotate(amount=Sum("disputed_amount"))
    ]
    return DisputeQueue(
        rows=[DisputeRow(d, dispute_age_days(d, on=on), dispute_is_overdue(d, on=on)) for d in disputes],
        total=sum(c["count"] for c in counts),
        truncated=truncated,
        by_category=by_category,
        overdue_count=sum(c["overdue"] for c in counts),
        amounts=amounts,
    )


def live_dispute_count() -> int:
    return Dispute.objects.filter(status__in=LIVE).count()


def get_dispute(pk: int) -> Dispute:
    """The dispute with its invoice, lines, notes and credit note, in a fixed number of queries."""
    return (
        Dispute.objects.select_related(
            "invoice", "invoice__client", "invoice__entity", "invoice__contract", "owner", "opened_by",
            "resolved_by", "credit_note",
        )
        .prefetch_related(
            Prefetch("lines", queryset=DisputeLine.objects.select_related("invoice_line", "invoice_line__project",
                                                                         "invoice_line__role")
                     .order_by("invoice_line__position", "id")),
            Prefetch("notes", queryset=DisputeNote.objects.select_related("author").order_by("created_at", "id")),
        )
        .get(pk=pk)
    )


def invoice_lines_for_dispute(invoice: Invoice) -> list[InvoiceLine]:
    """The invoice's lines a customer can dispute (positive amounts), in print order."""
    return list(invoice.lines.filter(amount__gt=0).select_related("project", "role").order_by("position", "id"))


def dispute_timeline(dispute: Dispute) -> list[TimelineEntry]:
    """Transitions (StateLog), saved versions (simple-history) and notes, newest first. Three queries."""
    entries = record_timeline(dispute, labels=dict(Dispute.Status.choices), created="Opened")
    for note in dispute.notes.select_related("author"):
        entries.append(TimelineEntry(when=note.created_at, who=actor_name(note.author), kind="note", title="Note",
                                     detail=note.text))
    entries.sort(key=lambda e: e.when, reverse=True)
    return entries


@dataclass
class InvoicePanel:
    invoice: Invoice
    disputes: list[Dispute]
    credit_notes: list[Invoice]
    credited_issued: Decimal
    credited_pending: Decimal
    left_to_credit: Decimal
    live_dispute: Dispute | None
    can_dispute: bool
    can_credit: bool
    can_reissue: bool


def invoice_dispute_panel(invoice: Invoice) -> InvoicePanel:
    """Disputes and credit notes of an invoice, and what is left to credit. Two queries."""
    from billing.services.credit_notes import CREDITABLE
    from disputes.services import DISPUTABLE

    disputes = list(invoice.disputes.select_related("owner", "credit_note").order_by("-opened_at", "-id"))
    notes = list(
        Invoice.objects.filter(credit_of=invoice, kind=Invoice.Kind.CREDIT_NOTE).order_by("created_at", "id")
    )
    live_notes = [n for n in notes if n.status not in (Invoice.Status.CANCELLED, Invoice.Status.DRAFT)]
    issued = sum((n.total for n in live_notes if n.number), ZERO)
    pending = sum((n.total for n in live_notes if not n.number), ZERO)
    live = next((d for d in disputes if d.is_live), None)
    return InvoicePanel(
        invoice=invoice,
        disputes=disputes,
        credit_notes=notes,
        credited_issued=issued,
        credited_pending=pending,
        left_to_credit=invoice.total - invoice.credited_amount,
        live_dispute=live,
        can_dispute=invoice.kind == Invoice.Kind.INVOICE and invoice.status in DISPUTABLE and live is None,
        can_credit=invoice.kind == Invoice.Kind.INVOICE and bool(invoice.number) and invoice.status in CREDITABLE
        and invoice.total - invoice.credited_amount > ZERO,
        # Released items exist after a full credit or an approved credit-and-reissue credit note.
        can_reissue=invoice.kind == Invoice.Kind.INVOICE and issued > ZERO and (
            invoice.status == Invoice.Status.CREDITED
            or any(d.outcome == Dispute.Outcome.CREDIT_AND_REISSUE and d.credit_note and d.credit_note.number
                   for d in disputes)
        ),
    )


def active_classifier() -> DisputeClassifier | None:
    """The dispute-category model in use (None: none trained yet)."""
    return DisputeClassifier.objects.filter(is_active=True).first()


def category_suggestion(description: str, lines: list[InvoiceLine]) -> Suggestion | None:
    """The category the active model suggests for a dispute's text and named invoice lines (None: no model,
    or no words it knows). Advice only: the caller shows it beside the field; it sets nothing."""
    model = active_classifier()
    text = dispute_text(description, [(line.kind, line.description) for line in lines])
    if model is None or not any(t in model.parameters.get("vocabulary", {}) for t in tokens(text)):
        return None
    return suggest(model.parameters, text)
