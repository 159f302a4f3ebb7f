"""Read models of collections: AR aging, dunning plan and log, hand-offs, client statements.

Everything here works from the model fields alone (`Invoice.total`, `credited_amount`,
`paid_amount`, `due_date`, `status`; `Payment`; credit notes as `Invoice(kind="credit_note")`),
so it does not depend on how the payment and credit-note services keep them. Screens
aggregate in the database: the aging table is one grouped query (plus one for unapplied
cash), whatever the number of invoices. Different currencies are never added together.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Least
from django.utils import timezone

from billing.models import Client, Invoice, InvoiceException, LegalEntity, Payment
from disputes.models import CollectionsHandoff, CollectionsProfile, Dispute, DunningNotice
from kernel.money import ZERO

Status = Invoice.Status

#: Issued invoices that can still be owed: the receivables of the aging.
OPEN_STATUSES = (Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.DISPUTED)
#: Open receivables that reminders may reach; a disputed invoice only for its undisputed part (ADR 0038).
DUNNABLE_STATUSES = (Status.POSTED, Status.SENT, Status.PARTIALLY_PAID)
#: Invoices and credit notes that count on a statement: numbered, issued, not cancelled.
ISSUED_STATUSES = (
    Status.APPROVED, Status.POSTED, Status.SENT, Status.PARTIALLY_PAID, Status.PAID, Status.DISPUTED, Status.CREDITED,
)
LIVE_DISPUTE = (Dispute.Status.OPEN, Dispute.Status.INVESTIGATING)

#: (key, label, lowest days past due, highest days past due or None). "current" = not yet due.
BUCKETS: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("current", "Current", None, 0),
    ("1_30", "1–30", 1, 30),
    ("31_60", "31–60", 31, 60),
    ("61_90", "61–90", 61, 90),
    ("90_plus", "90+", 91, None),
)
BUCKET_KEYS = tuple(b[0] for b in BUCKETS)
BUCKET_LABELS = {b[0]: b[1] for b in BUCKETS}


def balance_expression() -> Any:
    """What the client still owes on an invoice: total − credits − payments (as `Invoice.balance`)."""
    return F("total") - F("credited_amount") - F("paid_amount")


def held_in_dispute_expression() -> Any:
    """The part of an invoice's balance a dispute holds from collections (ADR 0038).

    A live dispute holds its disputed amount, at most the balance: a dispute of 5,950 on a
    198,000 invoice holds 5,950, and the rest stays due, ages and is reminded. An invoice
    `disputed` without a live dispute row holds its whole balance (as before partial holds).
    """
    money = DecimalField(max_digits=18, decimal_places=2)
    live = Dispute.objects.filter(invoice=OuterRef("pk"), status__in=LIVE_DISPUTE)
    disputed = Subquery(live.values("disputed_amount")[:1], output_field=money)
    return Case(
        When(Exists(live), then=Least(disputed, balance_expression(), output_field=money)),
        When(status=Status.DISPUTED, then=balance_expression()),
        default=Value(ZERO),
        output_field=money,
    )


def bucket_of(days_past_due: int) -> str:
    """The aging bucket of an invoice `days_past_due` days late (0 or less: not yet due)."""
    for key, _label, low, high in BUCKETS:
        if (low is None or days_past_due >= low) and (high is None or days_past_due <= high):
            return key
    raise AssertionError(days_past_due)  # pragma: no cover - the buckets cover every integer


def bucket_q(key: str, as_of: datetime.date) -> Q:
    """The due dates of bucket `key` at `as_of`, as a filter (date comparisons, so an index can serve it)."""
    for bucket, _label, low, high in BUCKETS:
        if bucket != key:
            continue
        q = Q()
        if low is not None:  # at least `low` days late: due on or before as_of − low
            q &= Q(due_date__lte=as_of - datetime.timedelta(days=low))
        if high is not None:  # at most `high` days late: due on or after as_of − high
            q &= Q(due_date__gte=as_of - datetime.timedelta(days=high))
        return q
    raise ValueError(f"Unknown aging bucket {key!r}; use one of {', '.join(BUCKET_KEYS)}.")


def open_receivables(*, as_of: datetime.date) -> QuerySet[Invoice]:
    """Issued invoices (not credit notes) with something left to pay, issued on or before `as_of`.

    Balances are today's: the as-of date places each invoice in its bucket and leaves out
    invoices issued later; it does not undo payments or credits recorded since.
    """
    return (
        Invoice.objects.filter(kind=Invoice.Kind.INVOICE, status__in=OPEN_STATUSES, issue_date__lte=as_of)
        .alias(ar_balance=balance_expression())
        .filter(ar_balance__gt=0)
    )


# --- AR aging ---------------------------------------------------------------------------------------------


@dataclass
class AgingFigures:
    """Bucketed open amounts in one currency."""

    currency: str
    buckets: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(BUCKET_KEYS, ZERO))
    total: Decimal = ZERO
    overdue: Decimal = ZERO
    disputed: Decimal = ZERO
    unapplied: Decimal = ZERO
    invoices: int = 0

    @property
    def cells(self) -> list[tuple[str, Decimal]]:
        return [(key, self.buckets[key]) for key in BUCKET_KEYS]

    def add(self, other: AgingFigures) -> None:
        for key in BUCKET_KEYS:
            self.buckets[key] += other.buckets[key]
        self.total += other.total
        self.overdue += other.overdue
        self.disputed += other.disputed
        self.unapplied += other.unapplied
        self.invoices += other.invoices


@dataclass
class AgingRow(AgingFigures):
    """One client of one entity in one currency."""

    entity_id: int = 0
    entity_code: str = ""
    client_id: int = 0
    client_code: str = ""
    client_name: str = ""
    oldest_due: datetime.date | None = None


@dataclass
class EntityBlock:
    entity_id: int
    entity_code: str
    entity_name: str
    rows: list[AgingRow]
    totals: list[AgingFigures]  # per currency


@dataclass
class UnappliedCash:
    client_id: int | None
    client_code: str
    client_name: str
    currency: str
    amount: Decimal
    payments: int


@dataclass
class AgingReport:
    as_of: datetime.date
    entities: list[EntityBlock]
    totals: list[AgingFigures]  # per currency, over every entity
    unapplied: list[UnappliedCash]
    buckets: tuple = BUCKETS

    @property
    def rows(self) -> list[AgingRow]:
        return [row for block in self.entities for row in block.rows]

    def blocks_of(self, rows: Iterable[AgingRow]) -> list[EntityBlock]:
        """`rows` (one page of `rows`) grouped under their entities; the totals stay those of the whole report."""
        by_entity = {block.entity_id: block for block in self.entities}
        blocks: dict[int, EntityBlock] = {}
        for row in rows:
            whole = by_entity[row.entity_id]
            blocks.setdefault(
                row.entity_id, EntityBlock(whole.entity_id, whole.entity_code, whole.entity_name, [], whole.totals)
            ).rows.append(row)
        return list(blocks.values())


def _client_matches(search: str) -> Q:
    return Q(client__code__icontains=search) | Q(client__legal_name__icontains=search)


def aging_report(
    *,
    as_of: datetime.date,
    entity: str | None = None,
    currency: str | None = None,
    overdue_only: bool = False,
    client_search: str = "",
) -> AgingReport:
    """AR aging by entity, client and currency at `as_of`: one grouped query, one for unapplied cash.

    `client_search` keeps the clients whose code or legal name contains it (the totals are then theirs).
    """
    invoices = open_receivables(as_of=as_of)
    if client_search:
        invoices = invoices.filter(_client_matches(client_search))
    if entity:
        invoices = invoices.filter(entity__code=entity)
    if currency:
        invoices = invoices.filter(currency=currency)
    if overdue_only:
        invoices = invoices.filter(due_date__lt=as_of)
    # "ar_balance" is `open_receivables`' alias of `balance_expression()`: the same SQL, built once.
    sums = {f"b_{key}": Sum("ar_balance", filter=bucket_q(key, as_of)) for key in BUCKET_KEYS}
    grouped = (
        invoices.values(
            "entity_id", "entity__code", "entity__name", "client_id", "client__code", "client__legal_name", "currency"
        )
        .annotate(
            **sums,
            open_total=Sum("ar_balance"),
            disputed_total=Sum(held_in_dispute_expression()),
            n_invoices=Count("pk"),
            oldest_due=Min("due_date"),
        )
        .order_by("entity__code", "client__legal_name", "client_id", "currency")
    )
    unapplied = unapplied_cash(as_of=as_of, currency=currency, client_search=client_search)
    unapplied_by_key = {(u.client_id, u.currency): u.amount for u in unapplied}

    blocks: dict[int, EntityBlock] = {}
    entity_totals: dict[tuple[int, str], AgingFigures] = {}
    bucket_columns = [(key, f"b_{key}") for key in BUCKET_KEYS]
    for g in grouped:
        # A few hundred rows a page load: built in one constructor call, totalled once per row
        # (the grand totals are then the sums of the entity totals).
        ccy, entity_id, client_id = g["currency"], g["entity_id"], g["client_id"]
        buckets = {key: g[column] or ZERO for key, column in bucket_columns}
        total = g["open_total"] or ZERO
        row = AgingRow(
            currency=ccy,
            buckets=buckets,
            total=total,
            overdue=total - buckets["current"],
            disputed=g["disputed_total"] or ZERO,
            unapplied=unapplied_by_key.get((client_id, ccy), ZERO),
            invoices=g["n_invoices"],
            entity_id=entity_id,
            entity_code=g["entity__code"],
            client_id=client_id,
            client_code=g["client__code"],
            client_name=g["client__legal_name"],
            oldest_due=g["oldest_due"],
        )
        block = blocks.get(entity_id)
        if block is None:
            block = blocks[entity_id] = EntityBlock(entity_id, g["entity__code"], g["entity__name"], [], [])
        block.rows.append(row)
        figures = entity_totals.get((entity_id, ccy))
        if figures is None:
            figures = entity_totals[(entity_id, ccy)] = AgingFigures(ccy)
        figures.add(row)
    grand: dict[str, AgingFigures] = {}
    for (entity_id, ccy), figures in sorted(entity_totals.items(), key=lambda item: item[0][1]):
        blocks[entity_id].totals.append(figures)
        grand.setdefault(ccy, AgingFigures(ccy)).add(figures)
    return AgingReport(
        as_of=as_of,
        entities=list(blocks.values()),
        totals=[grand[c] for c in sorted(grand)],
        unapplied=unapplied,
    )


def _settled_payment() -> Exists:
    """An unapplied payment finance closed without applying it (refunded, returned): off the client's account."""
    return Exists(
        InvoiceException.objects.filter(payment=OuterRef("pk")).exclude(state=InvoiceException.State.OPEN)
    )


def client_payments(*, as_of: datetime.date) -> QuerySet[Payment]:
    """Cash on clients' accounts by `as_of`: applied payments, and unapplied ones finance has not settled."""
    return Payment.objects.filter(date__lte=as_of).exclude(Q(invoice__isnull=True) & _settled_payment())


def unapplied_cash(
    *, as_of: datetime.date, currency: str | None = None, client_id: int | None = None, client_search: str = ""
) -> list[UnappliedCash]:
    """Payments received on or before `as_of` that name no invoice and are not settled (refunded), per client
    (or unknown payer) and currency."""
    payments = client_payments(as_of=as_of).filter(invoice__isnull=True)
    if currency:
        payments = payments.filter(currency=currency)
    if client_id is not None:
        payments = payments.filter(client_id=client_id)
    if client_search:
        payments = payments.filter(_client_matches(client_search))
    rows = (
        payments.values("client_id", "client__code", "client__legal_name", "currency")
        .annotate(amount=Sum("amount"), payments=Count("pk"))
        .order_by("client__legal_name", "client_id", "currency")
    )
    return [
        UnappliedCash(
            client_id=r["client_id"],
            client_code=r["client__code"] or "",
            client_name=r["client__legal_name"] or "Unknown payer",
            currency=r["currency"],
            amount=r["amount"],
            payments=r["payments"],
        )
        for r in rows
    ]


def _annotate_collections_state(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Highest reminder level sent, live dispute and what it holds, open hand-off: per invoice, in one query."""
    return invoices.annotate(
        open_balance=balance_expression(),
        held_in_dispute=held_in_dispute_expression(),
        dunning_level=_dunning_level(),
        last_reminder_at=Subquery(
            DunningNotice.objects.filter(invoice=OuterRef("pk"), result="sent")
            .order_by("-sent_at")
            .values("sent_at")[:1]
        ),
        has_live_dispute=Exists(Dispute.objects.filter(invoice=OuterRef("pk"), status__in=LIVE_DISPUTE)),
        open_handoff_id=_open_handoff_id(),
    )


def _dunning_level() -> Subquery:
    """The highest reminder level sent for the invoice of the outer query (None: no reminder yet)."""
    return Subquery(
        DunningNotice.objects.filter(invoice=OuterRef("pk"), result="sent")
        .values("invoice")
        .annotate(level=Max("level"))
        .values("level")[:1]
    )


def _open_handoff_id() -> Subquery:
    """The open hand-off of the invoice of the outer query (None: not handed off)."""
    return Subquery(
        CollectionsHandoff.objects.filter(invoice=OuterRef("pk"), status=CollectionsHandoff.Status.OPEN).values("pk")[
            :1
        ]
    )


def aging_invoice_queryset(
    *,
    as_of: datetime.date,
    client_id: int | None = None,
    bucket: str | None = None,
    entity: str | None = None,
    currency: str | None = None,
) -> QuerySet[Invoice]:
    """The open invoices behind an aging cell (drill-down), oldest due first; page it, then `with_days_past_due`."""
    invoices = open_receivables(as_of=as_of)
    if client_id is not None:
        invoices = invoices.filter(client_id=client_id)
    if bucket and bucket != "all":
        invoices = invoices.filter(bucket_q(bucket, as_of))
    if entity:
        invoices = invoices.filter(entity__code=entity)
    if currency:
        invoices = invoices.filter(currency=currency)
    return _annotate_collections_state(
        invoices.select_related("client", "entity").only(*AGING_INVOICE_FIELDS)
    ).order_by("due_date", "id")


#: What the drill-down shows of an invoice, its client and its entity (the other columns stay in the database).
AGING_INVOICE_FIELDS = (
    "id", "kind", "number", "client_id", "entity_id", "issue_date", "due_date", "status", "currency",
    "total", "credited_amount", "paid_amount", "client__code", "client__legal_name", "entity__code",
)


def with_days_past_due(invoices: Iterable[Invoice], *, as_of: datetime.date) -> list[Invoice]:
    """`invoices` with `days_past_due` and `bucket` set for `as_of`."""
    rows = list(invoices)
    for invoice in rows:
        invoice.days_past_due = (as_of - invoice.due_date).days
        invoice.bucket = bucket_of(invoice.days_past_due)
    return rows


def aging_invoices(
    *,
    as_of: datetime.date,
    client_id: int | None = None,
    bucket: str | None = None,
    entity: str | None = None,
    currency: str | None = None,
    limit: int = 500,
) -> list[Invoice]:
    """The first `limit` open invoices behind an aging cell, oldest due first, in one query."""
    invoices = aging_invoice_queryset(as_of=as_of, client_id=client_id, bucket=bucket, entity=entity, currency=currency)
    return with_days_past_due(invoices[:limit], as_of=as_of)


def aging_entities() -> list[LegalEntity]:
    return list(LegalEntity.objects.order_by("code").only("id", "code", "name"))


# --- dunning ----------------------------------------------------------------------------------------------


def default_offsets() -> list[int]:
    return [int(d) for d in getattr(settings, "DUNNING_DEFAULT_OFFSETS", [7, 21, 45])]


def offsets_for(profile: CollectionsProfile | None) -> list[int]:
    """The client's own reminder offsets (days after due), or the firm's default."""
    if profile is not None and profile.dunning_offsets:
        return [int(d) for d in profile.dunning_offsets]
    return default_offsets()


def level_due(offsets: list[int], days_past_due: int) -> int:
    """The highest reminder level reached `days_past_due` days after the due date (0: none yet)."""
    return sum(1 for offset in offsets if days_past_due >= offset)


def level_label(level: int, levels: int) -> str:
    if level >= 2 and level == levels:
        return "Final reminder"
    return {1: "Reminder", 2: "Second reminder", 3: "Third reminder"}.get(level, f"Reminder {level}")


class Exclusion:
    DISPUTED = "disputed"
    PAYMENT_PLAN = "payment_plan"
    HANDED_OFF = "handed_off"

    LABELS = {
        DISPUTED: "In dispute",
        PAYMENT_PLAN: "Client in a payment plan",
        HANDED_OFF: "Handed off to collections follow-up",
    }


@dataclass
class DunningItem:
    """An overdue invoice as dunning sees it: the level it has, the level due, and why it is skipped."""

    invoice: Invoice
    days_past_due: int
    offsets: list[int]
    sent_level: int
    due_level: int
    excluded: str = ""

    @property
    def is_due(self) -> bool:
        return not self.excluded and self.due_level > self.sent_level

    @property
    def level_to_send(self) -> int:
        return self.due_level

    @property
    def next_level(self) -> int | None:
        """The level after what was sent or is due now (None: the last level is behind us)."""
        nxt = max(self.sent_level, self.due_level) + 1
        return nxt if nxt <= len(self.offsets) else None

    @property
    def next_date(self) -> datetime.date | None:
        nxt = self.next_level
        if nxt is None:
            return None
        return self.invoice.due_date + datetime.timedelta(days=self.offsets[nxt - 1])

    @property
    def label(self) -> str:
        return level_label(self.level_to_send, len(self.offsets))

    @property
    def held_in_dispute(self) -> Decimal:
        """The disputed part of the balance, held from reminders (0 without a dispute)."""
        return self.invoice.held_in_dispute or ZERO

    @property
    def amount_due(self) -> Decimal:
        """What a reminder asks for: the open balance without the disputed part."""
        return self.invoice.open_balance - self.held_in_dispute

    @property
    def exclusion_label(self) -> str:
        return Exclusion.LABELS.get(self.excluded, "")


def _exclusion(invoice: Invoice, profile: CollectionsProfile | None) -> str:
    # Only what is disputed is held: a partial dispute leaves the rest dunnable (ADR 0038).
    if invoice.held_in_dispute >= invoice.open_balance:
        return Exclusion.DISPUTED
    if profile is not None and profile.in_payment_plan:
        return Exclusion.PAYMENT_PLAN
    if invoice.open_handoff_id:
        return Exclusion.HANDED_OFF
    return ""


def dunning_items(
    *, today: datetime.date, horizon_days: int = 0, invoice_ids: Iterable[int] | None = None
) -> list[DunningItem]:
    """Open receivables due on or before `today + horizon_days`, with their dunning state (one query).

    Invoices disputed for their whole balance, clients in a payment plan and handed-off
    invoices are returned with `excluded` set, so a screen can say why they get nothing.
    A partly disputed invoice is due for its `amount_due` (balance − disputed part).
    """
    invoices = open_receivables(as_of=today).filter(due_date__lte=today + datetime.timedelta(days=horizon_days))
    if invoice_ids is not None:
        invoices = invoices.filter(pk__in=list(invoice_ids))
    invoices = _annotate_collections_state(
        invoices.select_related("client", "client__collections_profile", "entity")
    ).order_by("due_date", "id")
    items = []
    for invoice in invoices:
        profile = _profile_of(invoice.client)
        offsets = offsets_for(profile)
        days = (today - invoice.due_date).days
        items.append(
            DunningItem(
                invoice=invoice,
                days_past_due=days,
                offsets=offsets,
                sent_level=invoice.dunning_level or 0,
                due_level=level_due(offsets, days),
                excluded=_exclusion(invoice, profile),
            )
        )
    return items


def _profile_of(client: Client) -> CollectionsProfile | None:
    try:
        return client.collections_profile
    except CollectionsProfile.DoesNotExist:
        return None


def dunning_due(*, today: datetime.date, invoice_ids: Iterable[int] | None = None) -> list[DunningItem]:
    """What a dunning run at `today` would send: one item per invoice, at the highest level due."""
    return [item for item in dunning_items(today=today, invoice_ids=invoice_ids) if item.is_due]


@dataclass
class DunningOverview:
    today: datetime.date
    horizon_days: int
    due_now: list[DunningItem]
    upcoming: list[DunningItem]
    excluded: list[DunningItem]
    excluded_counts: dict[str, int]
    notices: list[DunningNotice]
    default_offsets: list[int]

    @property
    def excluded_summary(self) -> list[tuple[str, int]]:
        return [(Exclusion.LABELS[key], n) for key, n in self.excluded_counts.items()]


def dunning_overview(*, today: datetime.date, horizon_days: int = 14, log_limit: int = 100) -> DunningOverview:
    """The dunning page: due now, next levels within the horizon, what is held back and why, the recent log."""
    items = dunning_items(today=today, horizon_days=horizon_days)
    horizon = today + datetime.timedelta(days=horizon_days)
    due_now = [i for i in items if i.is_due]
    upcoming = sorted(
        (i for i in items if not i.excluded and not i.is_due and i.next_date and today < i.next_date <= horizon),
        key=lambda i: (i.next_date, i.invoice.pk),
    )
    excluded = [i for i in items if i.excluded and i.days_past_due > 0]
    counts: dict[str, int] = defaultdict(int)
    for item in excluded:
        counts[item.excluded] += 1
    notices = list(
        DunningNotice.objects.select_related("invoice", "invoice__client", "sent_by").order_by("-sent_at", "-id")[
            :log_limit
        ]
    )
    return DunningOverview(
        today=today,
        horizon_days=horizon_days,
        due_now=due_now,
        upcoming=upcoming,
        excluded=excluded,
        excluded_counts={k: counts[k] for k in Exclusion.LABELS if counts[k]},
        notices=notices,
        default_offsets=default_offsets(),
    )


# --- hand-offs --------------------------------------------------------------------------------------------


def handoff_queue(*, status: str = CollectionsHandoff.Status.OPEN, limit: int = 300) -> list[CollectionsHandoff]:
    """Hand-offs (open first by default), with the invoice's balance and days past due, in one query."""
    today = timezone.localdate()
    handoffs = CollectionsHandoff.objects.select_related(
        "invoice", "invoice__client", "invoice__entity", "handed_off_by"
    ).annotate(open_balance=F("invoice__total") - F("invoice__credited_amount") - F("invoice__paid_amount"))
    if status != "all":
        handoffs = handoffs.filter(status=status)
    rows = list(handoffs.order_by("-handed_off_at", "-id")[:limit])
    for handoff in rows:
        handoff.days_past_due = (today - handoff.invoice.due_date).days
    return rows


def handoff_counts() -> dict[str, int]:
    rows = CollectionsHandoff.objects.values("status").annotate(n=Count("pk"))
    counts = {s: 0 for s in CollectionsHandoff.Status.values}
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


# --- client statement -------------------------------------------------------------------------------------


@dataclass
class StatementEntry:
    date: datetime.date
    kind: str  # invoice, credit_note, payment
    reference: str
    description: str
    currency: str
    debit: Decimal
    credit: Decimal
    balance: Decimal = ZERO
    invoice_id: int | None = None
    unapplied: bool = False


@dataclass
class CurrencyLedger:
    currency: str
    opening: Decimal
    entries: list[StatementEntry]
    closing: Decimal
    open_items: Decimal  # Σ balances of the open invoices
    unapplied: Decimal


@dataclass
class ClientStatement:
    client: Client
    as_of: datetime.date
    since: datetime.date
    open_items: list[Invoice]
    ledgers: list[CurrencyLedger]
    profile: CollectionsProfile | None
    offsets: list[int]


def get_client(client_id: int) -> Client:
    return Client.objects.get(pk=client_id)


def statement_client(client_id: int) -> Client | None:
    """The client of a statement page with its collections profile, in one query (None: no such client)."""
    return Client.objects.select_related("collections_profile").filter(pk=client_id).first()


#: The invoice columns a statement shows of its open items (the rest stays in the database).
STATEMENT_OPEN_ITEM_FIELDS = (
    "id", "kind", "client_id", "entity_id", "number", "issue_date", "due_date", "status", "currency",
    "total", "credited_amount", "paid_amount",
)


def statement_open_items(*, as_of: datetime.date, client_id: int, limit: int = 1000) -> list[Invoice]:
    """A client's open invoices at `as_of`, oldest due first, with what a statement shows of each (one query).

    Lighter than `aging_invoices`: the statement shows no dispute detail, so neither those
    subqueries nor the client and entity rows are loaded.
    """
    invoices = (
        open_receivables(as_of=as_of)
        .filter(client_id=client_id)
        .only(*STATEMENT_OPEN_ITEM_FIELDS)
        .annotate(open_balance=balance_expression(), dunning_level=_dunning_level(), open_handoff_id=_open_handoff_id())
        .order_by("due_date", "id")
    )
    return with_days_past_due(invoices[:limit], as_of=as_of)


def client_statement(*, client: Client, as_of: datetime.date, since: datetime.date) -> ClientStatement:
    """A client's account: open items at `as_of`, and every invoice, credit note and payment since `since`.

    The running balance per currency starts from the opening balance (everything dated before
    `since`): + invoices, − credit notes, − payments (applied or not). Issued documents only.
    Six queries (five if the client came with its profile, as from `statement_client`).
    """
    open_items = statement_open_items(as_of=as_of, client_id=client.pk)
    documents = Invoice.objects.filter(
        client=client, number__isnull=False, status__in=ISSUED_STATUSES, issue_date__lte=as_of
    )
    # The client's own payments and those applied to its invoices. `IN (its invoices)` rather than a join:
    # PostgreSQL then reads the client's payments by index instead of joining every payment to its invoice.
    payments = client_payments(as_of=as_of).filter(
        Q(client=client) | Q(invoice__in=Invoice.objects.filter(client=client).values("pk"))
    )

    opening: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in (
        documents.filter(issue_date__lt=since).values("currency", "kind").annotate(s=Sum("total")).order_by()
    ):
        sign = 1 if row["kind"] == Invoice.Kind.INVOICE else -1
        opening[row["currency"]] += sign * row["s"]
    # Payments before `since` (into the opening balance) and unapplied cash, per currency, in one query:
    # the client's unapplied payments are those of `payments` that name no invoice.
    unapplied_by_currency: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in (
        payments.values("currency")
        .annotate(before=Sum("amount", filter=Q(date__lt=since)), unapplied=Sum("amount", filter=Q(invoice=None)))
        .order_by()
    ):
        if row["before"] is not None:
            opening[row["currency"]] -= row["before"]
        if row["unapplied"] is not None:
            unapplied_by_currency[row["currency"]] += row["unapplied"]

    entries: list[StatementEntry] = []
    for doc in (
        documents.filter(issue_date__gte=since)
        .values(
            "id", "issue_date", "kind", "number", "due_date", "currency", "total", "credit_of_id", "credit_of__number"
        )
        .order_by("issue_date", "id")
    ):
        is_invoice = doc["kind"] == Invoice.Kind.INVOICE
        entries.append(
            StatementEntry(
                date=doc["issue_date"],
                kind=doc["kind"],
                reference=doc["number"],
                description=(
                    f"Invoice, due {doc['due_date']:%d %b %Y}"
                    if is_invoice
                    else f"Credit note on {doc['credit_of__number'] if doc['credit_of_id'] else '—'}"
                ),
                currency=doc["currency"],
                debit=doc["total"] if is_invoice else ZERO,
                credit=ZERO if is_invoice else doc["total"],
                invoice_id=doc["id"],
            )
        )
    for payment in (
        payments.filter(date__gte=since)
        .values("date", "external_reference", "currency", "amount", "invoice_id", "invoice__number")
        .order_by("date", "id")
    ):
        applied = payment["invoice_id"] is not None
        entries.append(
            StatementEntry(
                date=payment["date"],
                kind="payment",
                reference=payment["external_reference"],
                description=f"Payment on {payment['invoice__number']}" if applied else "Payment, not applied yet",
                currency=payment["currency"],
                debit=ZERO,
                credit=payment["amount"],
                invoice_id=payment["invoice_id"],
                unapplied=not applied,
            )
        )
    order = {Invoice.Kind.INVOICE: 0, Invoice.Kind.CREDIT_NOTE: 1, "payment": 2}
    entries.sort(key=lambda e: (e.date, order[e.kind], e.reference))

    by_currency: dict[str, list[StatementEntry]] = defaultdict(list)
    for entry in entries:
        by_currency[entry.currency].append(entry)
    open_by_currency: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for invoice in open_items:
        open_by_currency[invoice.currency] += invoice.open_balance

    ledgers = []
    for currency in sorted(set(opening) | set(by_currency) | set(open_by_currency) | set(unapplied_by_currency)):
        running = opening[currency]
        for entry in by_currency[currency]:
            running += entry.debit - entry.credit
            entry.balance = running
        ledgers.append(
            CurrencyLedger(
                currency=currency,
                opening=opening[currency],
                entries=by_currency[currency],
                closing=running,
                open_items=open_by_currency[currency],
                unapplied=unapplied_by_currency[currency],
            )
        )
    profile = _profile_of(client)
    return ClientStatement(
        client=client,
        as_of=as_of,
        since=since,
        open_items=open_items,
        ledgers=ledgers,
        profile=profile,
        offsets=offsets_for(profile),
    )
