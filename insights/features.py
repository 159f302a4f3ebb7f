"""What the assistive scores look at, read point-in-time from the firm's own records (docs/rules/assistive.md).

Two consumers share these reads so that an invoice is described the same way
when a model is trained on history and when a new draft is scored:

- the anomaly score (`insights.services.anomaly`) compares an invoice's net
  amount, hours, average hourly rate and line count with the client's earlier
  *issued* invoices (numbered; cancelled drafts never are);
- the dispute-risk model (`insights.services.risk`) uses `RISK_FEATURES`.

Everything is computed "as of" the invoice's issue date — the client's history
and dispute rate only count what was known then — so training never peeks into
the future. All reads are batched: a handful of queries for any number of invoices.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum

from billing.models import Invoice, InvoiceException, InvoiceLine
from insights.behaviour import BEHAVIOUR_FEATURES, BehaviourContext

TIME_KINDS = (InvoiceLine.Kind.TIME, InvoiceLine.Kind.OVERAGE)
#: A dispute opened, or a credit note issued, this many days after the invoice's issue date marks it "disputed".
LABEL_WINDOW_DAYS = 60
#: Fewer issued invoices than this before the issue date: a "new client".
NEW_CLIENT_INVOICES = 3
#: The client's dispute rate is smoothed towards PRIOR_RATE with PRIOR_WEIGHT pseudo-invoices, so that one
#: dispute on a client's first invoice reads as 0.25, not 1.0.
PRIOR_RATE = 0.10
PRIOR_WEIGHT = 5


@dataclass(frozen=True)
class InvoiceStats:
    """The figures of one invoice the anomaly score compares."""

    invoice_id: int
    client_id: int
    currency: str
    issue_date: date
    net: Decimal
    hours: Decimal
    time_amount: Decimal
    lines: int

    @property
    def avg_rate(self) -> Decimal | None:
        """Time amount per hour: moves when the rate mix (who worked, at which rate) moves."""
        if not self.hours:
            return None
        return self.time_amount / self.hours


def _stats_query(qs) -> list[InvoiceStats]:
    rows = qs.annotate(
        s_hours=Sum("lines__quantity", filter=Q(lines__kind__in=TIME_KINDS)),
        s_time=Sum("lines__amount", filter=Q(lines__kind__in=TIME_KINDS)),
        s_lines=Count("lines"),
    ).values_list("id", "client_id", "currency", "issue_date", "subtotal", "s_hours", "s_time", "s_lines")
    return [
        InvoiceStats(pk, client_id, ccy, issued, net or Decimal(0), hours or Decimal(0), amount or Decimal(0), n)
        for pk, client_id, ccy, issued, net, hours, amount, n in rows
    ]


def invoice_stats(invoice_ids: Iterable[int]) -> dict[int, InvoiceStats]:
    """Figures of the given invoices (one query)."""
    ids = list(invoice_ids)
    if not ids:
        return {}
    return {s.invoice_id: s for s in _stats_query(Invoice.objects.filter(pk__in=ids).order_by())}


class ClientHistory:
    """Issued invoices of some clients, by (client, currency), in issue order; sliced by date on demand."""

    def __init__(self, stats: Iterable[InvoiceStats]) -> None:
        self._by_key: dict[tuple[int, str], list[InvoiceStats]] = defaultdict(list)
        self._count_by_client: dict[int, list[date]] = defaultdict(list)
        for s in sorted(stats, key=lambda s: (s.issue_date, s.invoice_id)):
            self._by_key[(s.client_id, s.currency)].append(s)
            self._count_by_client[s.client_id].append(s.issue_date)
        self._dates = {key: [s.issue_date for s in rows] for key, rows in self._by_key.items()}

    def before(self, client_id: int, currency: str, day: date, *, window: int | None = None) -> list[InvoiceStats]:
        """The client's issued invoices in `currency` dated strictly before `day` (the latest `window`)."""
        key = (client_id, currency)
        rows = self._by_key.get(key, [])
        end = bisect_left(self._dates.get(key, []), day)
        start = max(0, end - window) if window else 0
        return rows[start:end]

    def all_stats(self) -> list[InvoiceStats]:
        return [s for rows in self._by_key.values() for s in rows]

    def count_before(self, client_id: int, day: date) -> int:
        return bisect_left(self._count_by_client.get(client_id, []), day)


def load_history(client_ids: Iterable[int] | None) -> ClientHistory:
    """Issued invoices (numbered, kind invoice) of the clients — all clients when None — in one query."""
    qs = Invoice.objects.filter(kind=Invoice.Kind.INVOICE, number__isnull=False).order_by()
    if client_ids is not None:
        ids = set(client_ids)
        if not ids:
            return ClientHistory([])
        qs = qs.filter(client_id__in=ids)
    return ClientHistory(_stats_query(qs))


# --- dispute-risk features ----------------------------------------------------------------------------

#: (key, label shown as a reason). The order is the model's column order.
RISK_FEATURES: tuple[tuple[str, str], ...] = (
    ("client_dispute_rate", "Client's past dispute/credit rate"),
    ("anomaly_max_z", "Deviation from the client's history (robust z)"),
    ("late_time", "Time submitted after the cut-off"),
    ("unapproved_time", "Unapproved time in the period"),
    ("po_missing", "Required PO missing"),
    ("change_order_pending", "Change order pending"),
    ("overridden", "Blocking exception overridden"),
    ("credit_hold", "Client on credit hold"),
    ("log_amount", "Amount (log)"),
    ("days_to_invoice", "Days from period end to issue"),
    ("new_client", "New client"),
)
RISK_FEATURE_KEYS = tuple(key for key, _label in RISK_FEATURES)
#: The invoice's own features plus the client's payment behaviour, the work notes and change-order churn
#: (`insights.behaviour`, ADR 0125): what the risk model is trained on since issue #21.
EXTENDED_RISK_FEATURES: tuple[tuple[str, str], ...] = RISK_FEATURES + BEHAVIOUR_FEATURES
EXTENDED_RISK_FEATURE_KEYS = tuple(key for key, _label in EXTENDED_RISK_FEATURES)
RISK_FEATURE_LABELS = dict(EXTENDED_RISK_FEATURES)

_CODE_FEATURES = {
    "LATE_TIME": "late_time",
    "UNAPPROVED_TIME_IN_PERIOD": "unapproved_time",
    "PO_REQUIRED_MISSING": "po_missing",
    "CHANGE_ORDER_PENDING": "change_order_pending",
    "CLIENT_ON_CREDIT_HOLD": "credit_hold",
}


@dataclass
class DisputeEvents:
    """When each invoice of some clients was first disputed or credited (the label and the client rate)."""

    first_event: dict[int, date]  # invoice id -> first dispute opened / credit note issued
    client_events: dict[int, list[date]]  # client id -> the first event date of each of its invoices, sorted

    def rate_before(self, client_id: int, day: date, issued_before: int) -> float:
        events = bisect_left(self.client_events.get(client_id, []), day)
        return (events + PRIOR_RATE * PRIOR_WEIGHT) / (issued_before + PRIOR_WEIGHT)

    def label(self, invoice_id: int, issue_date: date) -> int:
        first = self.first_event.get(invoice_id)
        return int(first is not None and first <= issue_date + timedelta(days=LABEL_WINDOW_DAYS))


def load_dispute_events(client_ids: Iterable[int] | None) -> DisputeEvents:
    """Disputes opened and credit notes issued (not cancelled) on the clients' invoices: two queries."""
    from disputes.models import Dispute

    disputes = Dispute.objects.order_by()
    credits = Invoice.objects.filter(kind=Invoice.Kind.CREDIT_NOTE).exclude(status=Invoice.Status.CANCELLED).order_by()
    if client_ids is not None:
        ids = set(client_ids)
        disputes = disputes.filter(invoice__client_id__in=ids)
        credits = credits.filter(client_id__in=ids)
    first: dict[int, date] = {}
    client_of: dict[int, int] = {}
    for invoice_id, client_id, opened_at in disputes.values_list("invoice_id", "invoice__client_id", "opened_at"):
        day = opened_at.date()
        if invoice_id not in first or day < first[invoice_id]:
            first[invoice_id] = day
        client_of[invoice_id] = client_id
    for invoice_id, client_id, day in credits.values_list("credit_of_id", "client_id", "issue_date"):
        if invoice_id is None:
            continue
        if invoice_id not in first or day < first[invoice_id]:
            first[invoice_id] = day
        client_of[invoice_id] = client_id
    by_client: dict[int, list[date]] = defaultdict(list)
    for invoice_id, day in first.items():
        by_client[client_of[invoice_id]].append(day)
    for days in by_client.values():
        days.sort()
    return DisputeEvents(first, dict(by_client))


@dataclass(frozen=True)
class InvoiceFacts:
    """The invoice fields the risk features need."""

    invoice_id: int
    client_id: int
    currency: str
    issue_date: date
    period_end: date | None
    subtotal: Decimal
    po_missing: bool
    contract_id: int | None = None


def load_facts(invoice_ids: Sequence[int]) -> tuple[dict[int, InvoiceFacts], dict[int, set[str]]]:
    """Invoice fields and the exception codes each invoice ever carried (open, resolved or overridden)."""
    facts = {
        pk: InvoiceFacts(pk, client_id, ccy, issued, period_end, subtotal, bool(po_required and not po), contract_id)
        for pk, client_id, ccy, issued, period_end, subtotal, po_required, po, contract_id in Invoice.objects.filter(
            pk__in=invoice_ids
        )
        .order_by()
        .values_list(
            "id",
            "client_id",
            "currency",
            "issue_date",
            "period_end",
            "subtotal",
            "client__po_required",
            "po_number",
            "contract_id",
        )
    }
    codes: dict[int, set[str]] = defaultdict(set)
    for invoice_id, code, state, severity in (
        InvoiceException.objects.filter(invoice_id__in=invoice_ids)
        .order_by()
        .values_list("invoice_id", "code", "state", "severity")
    ):
        codes[invoice_id].add(code)
        if state == InvoiceException.State.OVERRIDDEN and severity == InvoiceException.Severity.BLOCKING:
            codes[invoice_id].add("__OVERRIDDEN__")
    return facts, codes


def risk_vector(
    facts: InvoiceFacts,
    codes: set[str],
    *,
    anomaly_max_z: float | None,
    history: ClientHistory,
    events: DisputeEvents,
) -> list[float]:
    """The feature values of one invoice, in `RISK_FEATURE_KEYS` order."""
    issued_before = history.count_before(facts.client_id, facts.issue_date)
    values = {key: 0.0 for key in RISK_FEATURE_KEYS}
    values["client_dispute_rate"] = events.rate_before(facts.client_id, facts.issue_date, issued_before)
    values["anomaly_max_z"] = min(abs(anomaly_max_z or 0.0), 20.0)
    for code, key in _CODE_FEATURES.items():
        if code in codes:
            values[key] = 1.0
    if facts.po_missing:
        values["po_missing"] = 1.0
    values["overridden"] = 1.0 if "__OVERRIDDEN__" in codes else 0.0
    values["log_amount"] = math.log1p(max(float(facts.subtotal), 0.0))
    if facts.period_end is not None:
        values["days_to_invoice"] = float(max((facts.issue_date - facts.period_end).days, 0))
    values["new_client"] = 1.0 if issued_before < NEW_CLIENT_INVOICES else 0.0
    return [values[key] for key in RISK_FEATURE_KEYS]


def extended_risk_vector(
    facts: InvoiceFacts,
    codes: set[str],
    *,
    anomaly_max_z: float | None,
    history: ClientHistory,
    events: DisputeEvents,
    behaviour: BehaviourContext,
) -> list[float]:
    """The feature values of one invoice, in `EXTENDED_RISK_FEATURE_KEYS` order (the base ones first)."""
    base = risk_vector(facts, codes, anomaly_max_z=anomaly_max_z, history=history, events=events)
    extra = behaviour.values(facts.invoice_id, facts.client_id, facts.contract_id, facts.issue_date)
    return base + [extra[key] for key, _label in BEHAVIOUR_FEATURES]


def select(values: Sequence[float], features: Sequence[str]) -> list[float]:
    """The values (in `EXTENDED_RISK_FEATURE_KEYS` order) of the `features` a model was trained on, in its order."""
    index = {key: i for i, key in enumerate(EXTENDED_RISK_FEATURE_KEYS)}
    return [values[index[key]] for key in features]
