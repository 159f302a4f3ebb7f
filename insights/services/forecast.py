"""Cash forecast with expected billing, and its honest backtest (docs/rules/kpis.md, ADR 0126).

Two forecasts of the receipts of the weeks after a cut-off date, made from what was known
before it (invoices issued, payments received and credit notes issued before the cut-off):

- **current** (`insights.selectors.cash_forecast` until issue #21): every open receivable
  expected on its due date shifted by its client's average days late over the last 365
  days; one already past that date is "at risk" and left out;
- **with billing**: open receivables spread over the client's own payment delays (each past
  payment's days late is one equally likely outcome; only delays still possible — not yet
  paid by the cut-off — count, and a receivable later than all of them is expected two
  weeks on), **plus the invoices still to come**: each contract that is still billing
  (last invoice within 1.5 cadences + 10 days) bills again every cadence (median gap of its
  last issue dates) the median of its last three invoices, each paid like the client pays.
  The live forecast adds, for a contract without invoices yet, the invoice the next billing
  run would make from its approved, unbilled work and the schedules (retainers, milestones
  due): the billing engine prices it without writing (`price_contract`).

Backtest: each Monday of the history from the fourth month on is a cut-off; for each horizon
h (1, 4, 13 weeks) with the whole window in the past, forecast and actual receipts (payments
on invoices dated in [cut-off, cut-off + h weeks)) are compared: WAPE = Σ|forecast − actual| ÷
Σ actual over the cut-offs. Amounts are converted to the reporting currency at the rates of
the history's last day, so exchange-rate moves do not count as forecast error.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from billing.models import Contract, Invoice, Payment

HORIZONS = (1, 4, 13)
#: Months of history before the first cut-off: payment behaviour needs some payments.
WARM_UP_WEEKS = 13
LATE_WINDOW_DAYS = 365
ZERO = Decimal("0")


@dataclass
class _Invoice:
    pk: int
    client_id: int
    contract_id: int | None
    currency: str
    issue: date
    due: date
    total: Decimal
    payments: list[tuple[date, Decimal]] = field(default_factory=list)
    credits: list[tuple[date, Decimal]] = field(default_factory=list)

    def balance_before(self, day: date) -> Decimal:
        """Open balance with what was recorded before `day`."""
        paid = sum((a for d, a in self.payments if d < day), ZERO)
        credited = sum((a for d, a in self.credits if d < day), ZERO)
        return self.total - paid - credited


@dataclass
class Ledger:
    """Issued invoices, their payments and credit notes, and the clients' payment delays: read once."""

    invoices: list[_Invoice]
    retainers: dict[int, Decimal]  # contract id -> retainer amount
    active: set[int]  # contract ids active today (used by the live forecast only)
    _delays: dict[int, tuple[list[date], list[int]]] = field(default_factory=dict)
    _all_delays: tuple[list[date], list[int]] = field(default_factory=lambda: ([], []))

    def __post_init__(self) -> None:
        rows: dict[int, list[tuple[date, int]]] = defaultdict(list)
        everyone: list[tuple[date, int]] = []
        for inv in self.invoices:
            for day, _amount in inv.payments:
                rows[inv.client_id].append((day, (day - inv.due).days))
                everyone.append((day, (day - inv.due).days))
        for client_id, items in rows.items():
            items.sort()
            self._delays[client_id] = ([d for d, _ in items], [late for _, late in items])
        everyone.sort()
        self._all_delays = ([d for d, _ in everyone], [late for _, late in everyone])

    def delays(self, client_id: int, before: date) -> list[int]:
        """The client's days late of its payments in the 365 days before `before` (the firm's when it has none)."""
        for days, lates in (self._delays.get(client_id, ([], [])), self._all_delays):
            lo, hi = bisect_left(days, before - timedelta(days=LATE_WINDOW_DAYS)), bisect_left(days, before)
            if hi > lo:
                return lates[lo:hi]
        return [0]

    def own_delays(self, client_id: int, before: date) -> list[int]:
        """The client's own days late in the 365 days before `before` (empty without payments)."""
        days, lates = self._delays.get(client_id, ([], []))
        lo, hi = bisect_left(days, before - timedelta(days=LATE_WINDOW_DAYS)), bisect_left(days, before)
        return lates[lo:hi]

    def actual(self, start: date, end: date) -> dict[str, Decimal]:
        """Payments on invoices dated in [start, end), per currency."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            for day, amount in inv.payments:
                if start <= day < end:
                    out[inv.currency] += amount
        return dict(out)


def load_ledger(*, scope: Any = None) -> Ledger:
    """The ledger from the database (four queries); `scope`: an optional Q on invoices."""
    qs = Invoice.objects.filter(kind=Invoice.Kind.INVOICE, number__isnull=False).order_by()
    if scope is not None:
        qs = qs.filter(scope)
    invoices = {
        pk: _Invoice(pk, client_id, contract_id, cur, issue, due or issue, total)
        for pk, client_id, contract_id, cur, issue, due, total in qs.values_list(
            "pk", "client_id", "contract_id", "currency", "issue_date", "due_date", "total"
        )
    }
    for invoice_id, day, amount in (
        Payment.objects.filter(invoice_id__in=list(invoices)).order_by().values_list("invoice_id", "date", "amount")
    ):
        invoices[invoice_id].payments.append((day, amount))
    for of, day, amount in (
        Invoice.objects.filter(kind=Invoice.Kind.CREDIT_NOTE, number__isnull=False, credit_of_id__in=list(invoices))
        .order_by()
        .values_list("credit_of_id", "issue_date", "total")
    ):
        invoices[of].credits.append((day, amount))
    contracts = Contract.objects.filter(pk__in={i.contract_id for i in invoices.values() if i.contract_id})
    retainers = {
        pk: amount for pk, amount in contracts.exclude(retainer_amount=None).values_list("pk", "retainer_amount")
    }
    active = set(Contract.objects.filter(status=Contract.Status.ACTIVE).values_list("pk", flat=True))
    return Ledger(sorted(invoices.values(), key=lambda i: (i.issue, i.pk)), retainers, active)


# --- the two forecasts -----------------------------------------------------------------------------------

Flow = tuple[date, Decimal, str]  # (expected receipt date, amount, currency); fractional amounts allowed


def current_forecast(ledger: Ledger, cutoff: date) -> list[Flow]:
    """The forecast the dashboard showed until issue #21: due date + the client's average days late."""
    flows = []
    for inv in ledger.invoices:
        if inv.issue >= cutoff:
            continue
        open_ = inv.balance_before(cutoff)
        if open_ <= 0:
            continue
        own = ledger.own_delays(inv.client_id, cutoff)
        mean = statistics.fmean(own) if own else 0.0
        when = inv.due + timedelta(days=round(mean))
        if when < cutoff - timedelta(days=1):
            continue  # "overdue beyond the usual delay": shown apart, not expected
        flows.append((when, open_, inv.currency))
    return flows


def _spread(due: date, amount: Decimal, currency: str, lates: list[int], cutoff: date) -> list[Flow]:
    """`amount` over the delays still possible at the cut-off (paid on or after it), equally likely."""
    possible = [late for late in lates if due + timedelta(days=late) >= cutoff]
    if not possible:
        return [(cutoff + timedelta(days=14), amount, currency)]
    share = amount / len(possible)
    return [(due + timedelta(days=late), share, currency) for late in possible]


def open_ar_flows(ledger: Ledger, cutoff: date) -> list[Flow]:
    flows: list[Flow] = []
    for inv in ledger.invoices:
        if inv.issue >= cutoff:
            continue
        open_ = inv.balance_before(cutoff)
        if open_ > 0:
            flows += _spread(inv.due, open_, inv.currency, ledger.delays(inv.client_id, cutoff), cutoff)
    return flows


@dataclass
class ExpectedInvoice:
    contract_id: int
    client_id: int
    currency: str
    issue: date
    due: date
    amount: Decimal
    source: str  # "cadence" | "unbilled work"


def expected_invoices(ledger: Ledger, cutoff: date, until: date, *, live: bool = False) -> list[ExpectedInvoice]:
    """Invoices each still-billing contract will issue in [cut-off, until), from its own cadence before the cut-off."""
    by_contract: dict[int, dict[date, list[_Invoice]]] = defaultdict(lambda: defaultdict(list))
    for inv in ledger.invoices:
        if inv.issue < cutoff and inv.contract_id:
            by_contract[inv.contract_id][inv.issue].append(inv)
    out = []
    for contract_id, runs in by_contract.items():
        if live and contract_id not in ledger.active:
            continue
        dates = sorted(runs)
        gaps = [(b - a).days for a, b in pairwise(dates)][-3:]
        gap = int(statistics.median(gaps)) if gaps else 30
        if gap <= 0:
            continue
        last = dates[-1]
        if (cutoff - last).days > gap * 1.5 + 10:
            continue  # stopped billing
        amounts = [sum((i.total for i in runs[d]), ZERO) for d in dates[-3:]]
        amount = ledger.retainers.get(contract_id) or Decimal(str(statistics.median(amounts)))
        first = runs[last][0]
        terms = (first.due - first.issue).days
        nxt = last + timedelta(days=gap)
        while nxt < until:
            issue = max(nxt, cutoff)
            out.append(
                ExpectedInvoice(
                    contract_id,
                    first.client_id,
                    first.currency,
                    issue,
                    issue + timedelta(days=terms),
                    amount,
                    "cadence",
                )
            )
            nxt += timedelta(days=gap)
    return out


def invoice_flows(ledger: Ledger, cutoff: date, expected: list[ExpectedInvoice]) -> list[Flow]:
    """The expected invoices' receipts: each spread over its client's delays from its due date."""
    flows: list[Flow] = []
    for exp in expected:
        flows += _spread(exp.due, exp.amount, exp.currency, ledger.delays(exp.client_id, cutoff), exp.issue)
    return flows


def billing_forecast(
    ledger: Ledger, cutoff: date, until: date, extra: list[ExpectedInvoice] | None = None
) -> list[Flow]:
    """Open AR spread over the clients' delays, plus the invoices still to come, paid the same way."""
    expected = expected_invoices(ledger, cutoff, until, live=extra is not None) + list(extra or [])
    return open_ar_flows(ledger, cutoff) + invoice_flows(ledger, cutoff, expected)


def window(flows: list[Flow], start: date, end: date) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for day, amount, cur in flows:
        if start <= day < end:
            out[cur] += amount
    return dict(out)


# --- backtest ---------------------------------------------------------------------------------------------


def _convert(amounts: dict[str, Decimal], rates: dict[str, Decimal | None]) -> Decimal:
    return sum((a * (rates.get(c) or Decimal(1)) for c, a in amounts.items()), ZERO)


def cutoffs(ledger: Ledger, end: date) -> list[date]:
    """Mondays from WARM_UP_WEEKS after the first issue date until `end`."""
    if not ledger.invoices:
        return []
    first = ledger.invoices[0].issue + timedelta(weeks=WARM_UP_WEEKS)
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    out = []
    while monday < end:
        out.append(monday)
        monday += timedelta(weeks=1)
    return out


def backtest(
    ledger: Ledger, *, end: date, rates: dict[str, Decimal | None] | None = None, horizons: tuple[int, ...] = HORIZONS
) -> dict[str, Any]:
    """WAPE per horizon of the current forecast and of the one with billing, over weekly cut-offs up to `end`.

    `end`: the history's last day known (payments after it are not "actual" yet); a cut-off
    counts for horizon h when its whole window ends on or before `end`.
    """
    rates = rates or {}
    result: dict[str, Any] = {"end": end.isoformat(), "horizons": {}}
    points = cutoffs(ledger, end)
    for h in horizons:
        n, actual_sum, err = 0, ZERO, {"current": ZERO, "with_billing": ZERO}
        weeks = []
        for cut in points:
            stop = cut + timedelta(weeks=h)
            if stop > end + timedelta(days=1):
                break
            actual = _convert(ledger.actual(cut, stop), rates)
            cur = _convert(window(current_forecast(ledger, cut), cut, stop), rates)
            new = _convert(window(billing_forecast(ledger, cut, stop), cut, stop), rates)
            n += 1
            actual_sum += actual
            err["current"] += abs(cur - actual)
            err["with_billing"] += abs(new - actual)
            weeks.append({"cutoff": cut.isoformat(), "actual": _r(actual), "current": _r(cur), "with_billing": _r(new)})
        result["horizons"][str(h)] = {
            "cutoffs": n,
            "actual_total": _r(actual_sum),
            "wape_current_pct": _pct(err["current"], actual_sum),
            "wape_with_billing_pct": _pct(err["with_billing"], actual_sum),
            "weeks": weeks,
        }
    return result


def _r(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def _pct(part: Decimal, whole: Decimal) -> float | None:
    return round(float(100 * part / whole), 1) if whole else None


# --- the live forecast's invoices from approved, unbilled work ----------------------------------------------

#: Days from a period's end to the run that bills it, when the history does not say.
DEFAULT_RUN_LAG_DAYS = 4


def run_lag(ledger: Ledger, cutoff: date) -> int:
    """Median days from month end to issue date of the invoices of the last 90 days."""
    lags = []
    for inv in ledger.invoices:
        if cutoff - timedelta(days=90) <= inv.issue < cutoff:
            month_end = inv.issue.replace(day=1) - timedelta(days=1)
            lags.append((inv.issue - month_end).days)
    return int(statistics.median(lags)) if lags else DEFAULT_RUN_LAG_DAYS


def unbilled_invoices(ledger: Ledger, cutoff: date, contracts: Any) -> list[ExpectedInvoice]:
    """What the next billing run would invoice to the active `contracts` that are not billing on a cadence yet.

    Approved, unbilled time, expenses and milestones, and the retainer fees due, up to the end of
    the last full month before the cut-off, priced by the billing engine without writing anything;
    issued at that month end + the usual run lag (or at the cut-off when that is past). A contract
    with an invoice in the last 45 days is left to its cadence (`expected_invoices`): never both.
    """
    from billing.services.billing_engine import price_contract
    from billing.services.pricing import FxResolver, RateResolver, TaxRuleResolver
    from billing.services.run_loading import load_contexts

    recent = {i.contract_id for i in ledger.invoices if cutoff - timedelta(days=45) <= i.issue < cutoff}
    ids = [
        pk for pk in contracts.filter(status=Contract.Status.ACTIVE).values_list("pk", flat=True) if pk not in recent
    ]
    if not ids:
        return []
    end = cutoff.replace(day=1) - timedelta(days=1)
    start = end.replace(day=1)
    run_date = max(end + timedelta(days=run_lag(ledger, cutoff)), cutoff)
    contexts, _ = load_contexts(ids, start, end)
    rates = RateResolver(ctx.contract for ctx in contexts)
    fx = FxResolver({(e.currency, ctx.contract.currency) for ctx in contexts for e in ctx.expense_items}, up_to=end)
    taxes = TaxRuleResolver()
    out = []
    for ctx in contexts:
        for draft in price_contract(
            ctx, period_start=start, period_end=end, run_date=run_date, rates=rates, fx=fx, taxes=taxes
        ):
            if draft.total > 0:
                out.append(
                    ExpectedInvoice(
                        ctx.contract.pk,
                        ctx.contract.client_id,
                        draft.currency,
                        draft.issue_date,
                        draft.due_date,
                        draft.total,
                        "unbilled work",
                    )
                )
    return out
