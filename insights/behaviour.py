"""Dispute-risk features beyond the invoice itself (docs/rules/assistive.md, ADR 0125).

Three kinds, all read "as of" an invoice's issue date so that training never peeks ahead:

- **payment behaviour** of the client: average days late of its payments dated before the
  issue date, the share of those payments that left their invoice partly open (partial
  payments), and the dunning level its worst open invoice had reached on the issue date
  (the level the collections schedule would send: 1 for 1–14 days overdue, 2 for 15–30,
  3 beyond; a dunning notice actually sent before the date counts too);
- **text** of the work billed: the invoice's line descriptions, the descriptions of the time
  entries and expenses on its lines and the invoice notes, scanned for friction phrases
  (rework, out of scope, waiting on the client, escalation…); the feature is the number of
  distinct phrases found, capped at 3;
- **change-order churn**: change orders on the invoice's contract created in the 180 days
  before the issue date (draft, submitted, approved or rejected: each one is a renegotiation).

Reads are batched: a fixed handful of queries for any number of invoices.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from billing.models import ChangeOrder, Expense, Invoice, InvoiceLine, Payment, TimeEntry

#: (key, label shown as a reason), appended after the invoice's own features (`insights.features.RISK_FEATURES`).
BEHAVIOUR_FEATURES: tuple[tuple[str, str], ...] = (
    ("client_days_late", "Client's average days late (past payments)"),
    ("client_partial_rate", "Client's share of partial payments"),
    ("client_dunning_level", "Dunning level of the client's worst open invoice"),
    ("notes_friction", "Friction in the work notes (rework, scope, waiting…)"),
    ("change_order_churn", "Change orders on the contract in the last 180 days"),
)
BEHAVIOUR_FEATURE_KEYS = tuple(key for key, _label in BEHAVIOUR_FEATURES)
CHURN_WINDOW_DAYS = 180
#: Phrases that, in a firm's work notes, precede arguments about the bill. One regular expression per theme:
#: the feature counts themes, so "rework … redo" is one.
FRICTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("rework", r"\b(re-?work|redo(ne)?|re-?did|second attempt|fix(ing)? (our|the) (own )?defects?)\b"),
        (
            "scope",
            r"\b(out of scope|outside (the )?scope|not in (the )?(sow|scope|plan)|extra requests?|"
            r"additional requests?|unplanned|scope creep)\b",
        ),
        ("waiting", r"\b(waiting (on|for) (the )?client|blocked by (the )?client|no access|idle)\b"),
        ("escalation", r"\b(escalat\w*|complain\w*|unhappy|dissatisf\w*|push ?back)\b"),
        ("overtime", r"\b(overtime|weekend work|over budget|overrun)\b"),
    )
)


def friction_score(text: str) -> float:
    """Number of friction themes the text mentions, capped at 3."""
    return float(min(3, sum(1 for _name, pattern in FRICTION_PATTERNS if pattern.search(text or ""))))


def dunning_level(days_overdue: int) -> int:
    """The reminder level an invoice this many days overdue has reached (the default dunning offsets)."""
    if days_overdue <= 0:
        return 0
    if days_overdue <= 14:
        return 1
    if days_overdue <= 30:
        return 2
    return 3


@dataclass
class _ClientLedger:
    """One client's payments (with their days late and whether they left a balance) and invoices."""

    pay_dates: list[date] = field(default_factory=list)
    late_prefix: list[float] = field(default_factory=lambda: [0.0])
    partial_prefix: list[int] = field(default_factory=lambda: [0])
    # invoice id -> (issue date, due date, total); payments and credits per invoice
    invoices: dict[int, tuple[date, date, Decimal]] = field(default_factory=dict)
    settled: dict[int, list[tuple[date, Decimal]]] = field(default_factory=lambda: defaultdict(list))
    notices: list[tuple[date, int, int]] = field(default_factory=list)  # (sent on, invoice id, level)


class PaymentBehaviour:
    """The clients' payment history, sliced by date on demand."""

    def __init__(self, ledgers: dict[int, _ClientLedger]) -> None:
        self._ledgers = ledgers

    def features(self, client_id: int, day: date) -> dict[str, float]:
        led = self._ledgers.get(client_id)
        if led is None:
            return {"client_days_late": 0.0, "client_partial_rate": 0.0, "client_dunning_level": 0.0}
        n = bisect_left(led.pay_dates, day)
        days_late = led.late_prefix[n] / n if n else 0.0
        partial = led.partial_prefix[n] / n if n else 0.0
        level = 0
        for pk, (issued, due, total) in led.invoices.items():
            if issued >= day or due >= day:
                continue
            paid = sum((a for d, a in led.settled.get(pk, []) if d < day), Decimal(0))
            if paid < total:
                level = max(level, dunning_level((day - due).days))
        for sent_on, _pk, notice_level in led.notices:
            if sent_on < day:
                level = max(level, notice_level)
        return {
            "client_days_late": float(days_late),
            "client_partial_rate": float(partial),
            "client_dunning_level": float(level),
        }


def load_payment_behaviour(client_ids: Iterable[int] | None) -> PaymentBehaviour:
    """Issued invoices, their payments, credit notes and dunning notices of the clients (four queries)."""
    from disputes.models import DunningNotice

    invoices = Invoice.objects.filter(kind=Invoice.Kind.INVOICE, number__isnull=False).order_by()
    payments = Payment.objects.filter(invoice__isnull=False, invoice__kind=Invoice.Kind.INVOICE).order_by()
    credits = Invoice.objects.filter(
        kind=Invoice.Kind.CREDIT_NOTE, number__isnull=False, credit_of__isnull=False
    ).order_by()
    notices = DunningNotice.objects.filter(result="sent").order_by()
    if client_ids is not None:
        ids = set(client_ids)
        invoices = invoices.filter(client_id__in=ids)
        payments = payments.filter(invoice__client_id__in=ids)
        credits = credits.filter(client_id__in=ids)
        notices = notices.filter(invoice__client_id__in=ids)
    ledgers: dict[int, _ClientLedger] = defaultdict(_ClientLedger)
    client_of: dict[int, int] = {}
    for pk, client_id, issued, due, total in invoices.values_list("pk", "client_id", "issue_date", "due_date", "total"):
        ledgers[client_id].invoices[pk] = (issued, due or issued, total)
        client_of[pk] = client_id
    for of, day, total in credits.values_list("credit_of_id", "issue_date", "total"):
        if of in client_of:
            ledgers[client_of[of]].settled[of].append((day, total))
    rows = sorted(payments.values_list("invoice_id", "date", "amount", "pk"), key=lambda r: (r[1], r[3]))
    for invoice_id, day, amount, _pk in rows:
        client_id = client_of.get(invoice_id)
        if client_id is None:
            continue
        led = ledgers[client_id]
        issued, due, total = led.invoices[invoice_id]
        led.settled[invoice_id].append((day, amount))
        covered = sum((a for d, a in led.settled[invoice_id] if d <= day), Decimal(0))
        led.pay_dates.append(day)
        led.late_prefix.append(led.late_prefix[-1] + (day - due).days)
        led.partial_prefix.append(led.partial_prefix[-1] + int(covered < total))
    for invoice_id, sent_at, level in notices.values_list("invoice_id", "sent_at", "level"):
        if invoice_id in client_of:
            ledgers[client_of[invoice_id]].notices.append((sent_at.date(), invoice_id, level))
    return PaymentBehaviour(dict(ledgers))


def load_texts(invoice_ids: Sequence[int]) -> dict[int, str]:
    """Per invoice: its line descriptions, its notes, and the descriptions of the work billed on its lines."""
    texts: dict[int, list[str]] = defaultdict(list)
    for pk, notes in Invoice.objects.filter(pk__in=invoice_ids).order_by().values_list("pk", "notes"):
        texts[pk].append(notes)
    for pk, text in (
        InvoiceLine.objects.filter(invoice_id__in=invoice_ids).order_by().values_list("invoice_id", "description")
    ):
        texts[pk].append(text)
    for model in (TimeEntry, Expense):
        for pk, text in (
            model.objects.filter(invoice_line__invoice_id__in=invoice_ids)
            .exclude(description="")
            .order_by()
            .values_list("invoice_line__invoice_id", "description")
        ):
            texts[pk].append(text)
    return {pk: "\n".join(t for t in parts if t) for pk, parts in texts.items()}


def load_change_orders(contract_ids: Iterable[int]) -> dict[int, list[date]]:
    """Creation dates of each contract's change orders, sorted."""
    out: dict[int, list[date]] = defaultdict(list)
    for contract_id, created in (
        ChangeOrder.objects.filter(contract_id__in=set(contract_ids))
        .order_by()
        .values_list("contract_id", "created_at")
    ):
        out[contract_id].append(created.date())
    for days in out.values():
        days.sort()
    return dict(out)


def churn(change_orders: dict[int, list[date]], contract_id: int | None, day: date) -> float:
    days = change_orders.get(contract_id or 0, [])
    return float(bisect_left(days, day) - bisect_left(days, day - timedelta(days=CHURN_WINDOW_DAYS)))


@dataclass
class BehaviourContext:
    """Everything the behaviour features of a batch of invoices need, loaded once."""

    payments: PaymentBehaviour
    texts: dict[int, str]
    change_orders: dict[int, list[date]]

    def values(self, invoice_id: int, client_id: int, contract_id: int | None, issue_date: date) -> dict[str, float]:
        out = self.payments.features(client_id, issue_date)
        out["notes_friction"] = friction_score(self.texts.get(invoice_id, ""))
        out["change_order_churn"] = churn(self.change_orders, contract_id, issue_date)
        return out


def load_behaviour(
    invoice_ids: Sequence[int], client_ids: Iterable[int] | None, contract_ids: Iterable[int]
) -> BehaviourContext:
    return BehaviourContext(
        load_payment_behaviour(client_ids), load_texts(invoice_ids), load_change_orders(contract_ids)
    )
