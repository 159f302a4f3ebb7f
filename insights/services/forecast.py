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
    subtotal: Decimal = ZERO
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

    def gross_ratios(self) -> dict[int, Decimal]:
        """Total ÷ net of each client's invoices (the tax on top), and of everyone's under key 0."""
        totals: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
        for inv in self.invoices:
            for key in (inv.client_id, 0):
                totals[key][0] += inv.total
                totals[key][1] += inv.subtotal
        return {k: t / n for k, (t, n) in totals.items() if n > 0}

    def mean_delays(self, before: date) -> dict[int, float]:
        """Each client's average days late over its payments in the 365 days before `before` (clients with any)."""
        out = {}
        for client_id in self._delays:
            own = self.own_delays(client_id, before)
            if own:
                out[client_id] = statistics.fmean(own)
        return out

    def actual(self, start: date, end: date) -> dict[str, Decimal]:
        """Payments on invoices dated in [start, end), per currency."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.invoices:
            for day, amount in inv.payments:
                if start <= day < end:
                    out[inv.currency] += amount
        return dict(out)


def load_ledger(*, scope: Any = None) -> Ledger:
    """The ledger from the database (three queries); `scope`: an optional Q on invoices."""
    qs = Invoice.objects.filter(kind=Invoice.Kind.INVOICE, number__isnull=False).order_by()
    if scope is not None:
        qs = qs.filter(scope)
    invoices: dict[int, _Invoice] = {}
    retainers: dict[int, Decimal] = {}
    statuses: dict[int, str] = {}
    for pk, client_id, contract_id, cur, issue, due, total, retainer, status in qs.values_list(
        "pk",
        "client_id",
        "contract_id",
        "currency",
        "issue_date",
        "due_date",
        "total",
        "contract__retainer_amount",
        "contract__status",
    ):
        invoices[pk] = _Invoice(pk, client_id, contract_id, cur, issue, due or issue, total)
        if retainer:
            retainers[contract_id] = retainer
        statuses[contract_id] = status
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
    active = {pk for pk, status in statuses.items() if status == Contract.Status.ACTIVE}
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
    earliest = (cutoff - due).days  # due + late >= cutoff, in whole days
    possible = [late for late in lates if late >= earliest]
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
    source: str  # "cadence" | "unbilled work" | "milestone due"


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


@dataclass
class _CutoffForecasts:
    """Both forecasts made at one cut-off, for every horizon at once (the backtest's unit of work).

    The current forecast and the open AR do not depend on the horizon; the invoices still to come are
    made up to the longest horizon, and a shorter one takes those issued before its end (the same
    invoices `expected_invoices` makes for it, in the same order), so each horizon's flows are exactly
    `current_forecast(...)` and `billing_forecast(ledger, cutoff, stop)`.
    """

    current: list[Flow]
    open_ar: list[Flow]
    expected: list[tuple[date, list[Flow]]]  # (issue date, its receipts) of each invoice still to come

    @classmethod
    def make(cls, ledger: Ledger, cutoff: date, until: date) -> _CutoffForecasts:
        expected = expected_invoices(ledger, cutoff, until)
        return cls(
            current=current_forecast(ledger, cutoff),
            open_ar=open_ar_flows(ledger, cutoff),
            expected=[(exp.issue, invoice_flows(ledger, cutoff, [exp])) for exp in expected],
        )

    def with_billing(self, stop: date) -> list[Flow]:
        flows = list(self.open_ar)
        for issue, receipts in self.expected:
            if issue < stop:
                flows += receipts
        return flows


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
    last_stop = end + timedelta(days=1)
    tallies = {h: {"n": 0, "actual": ZERO, "current": ZERO, "with_billing": ZERO, "weeks": []} for h in horizons}
    # Cut-off by cut-off: both forecasts are made once for all horizons (`_CutoffForecasts`), then dropped.
    for cut in cutoffs(ledger, end):
        due = [h for h in horizons if cut + timedelta(weeks=h) <= last_stop]
        if not due:
            continue
        made = _CutoffForecasts.make(ledger, cut, cut + timedelta(weeks=max(due)))
        for h in due:
            stop = cut + timedelta(weeks=h)
            actual = _convert(ledger.actual(cut, stop), rates)
            cur = _convert(window(made.current, cut, stop), rates)
            new = _convert(window(made.with_billing(stop), cut, stop), rates)
            tally = tallies[h]
            tally["n"] += 1
            tally["actual"] += actual
            tally["current"] += abs(cur - actual)
            tally["with_billing"] += abs(new - actual)
            tally["weeks"].append(
                {"cutoff": cut.isoformat(), "actual": _r(actual), "current": _r(cur), "with_billing": _r(new)}
            )
    result: dict[str, Any] = {"end": end.isoformat(), "horizons": {}}
    for h, tally in tallies.items():
        result["horizons"][str(h)] = {
            "cutoffs": tally["n"],
            "actual_total": _r(tally["actual"]),
            "wape_current_pct": _pct(tally["current"], tally["actual"]),
            "wape_with_billing_pct": _pct(tally["with_billing"], tally["actual"]),
            "weeks": tally["weeks"],
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


def unbilled_invoices(ledger: Ledger, cutoff: date, contracts: Any, until: date | None = None) -> list[ExpectedInvoice]:
    """What the billing runs will invoice to the active `contracts` that are not billing on a cadence yet.

    The next run: approved, unbilled billable time (T&M) valued at the rate card's rate for the
    role on the day, less the contract discount; approved, unbilled billable expenses with the
    contract markup; approved milestones not invoiced; and one retainer fee — work dated up to the
    end of the last full month before the cut-off; issued at that month end + the usual run lag
    (or at the cut-off when that is past). Then each milestone not yet approved whose due date
    falls in [cut-off, `until`): an invoice on its due date. Amounts are grossed up by the client's
    ratio of total to net on its earlier invoices (tax); due after the contract's (or client's)
    payment terms. An estimate in four queries, whatever the
    number of contracts; the billing run prices exactly (overrides, caps, consolidation). A contract
    with an invoice in the last 45 days is left to its cadence (`expected_invoices`): never both.
    """
    from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, Q, Subquery, Sum

    from billing.models import Expense, Milestone, RateCardLine, TimeEntry

    recent = {i.contract_id for i in ledger.invoices if cutoff - timedelta(days=45) <= i.issue < cutoff}
    end = cutoff.replace(day=1) - timedelta(days=1)
    rows = (
        contracts.filter(status=Contract.Status.ACTIVE)
        .order_by()
        .values_list(
            "pk",
            "client_id",
            "currency",
            "billing_model",
            "retainer_amount",
            "discount_pct",
            "expense_markup_pct",
            "payment_terms_days",
            "client__payment_terms_days",
        )
    )
    info = {row[0]: row for row in rows if row[0] not in recent}
    money = DecimalField(max_digits=18, decimal_places=4)
    rate = (
        RateCardLine.objects.filter(
            Q(effective_to__isnull=True) | Q(effective_to__gte=OuterRef("date")),
            rate_card_id=OuterRef("project__contract__rate_card_id"),
            role_id=OuterRef("person__role_id"),
            effective_from__lte=OuterRef("date"),
        )
        .order_by("-effective_from", "-id")
        .values("rate")[:1]
    )
    net: dict[int, Decimal] = defaultdict(Decimal)
    for contract_id, value in (
        TimeEntry.objects.filter(
            project__contract_id__in=list(info),
            status=TimeEntry.Status.APPROVED,
            invoice_line__isnull=True,
            billable=True,
            date__lte=end,
            project__contract__billing_model=Contract.BillingModel.TIME_AND_MATERIALS,
        )
        .annotate(value=ExpressionWrapper(F("hours") * Subquery(rate, output_field=money), output_field=money))
        .order_by()
        .values("project__contract_id")
        .annotate(v=Sum("value"))
        .values_list("project__contract_id", "v")
    ):
        discount = info[contract_id][5] or ZERO
        net[contract_id] += (value or ZERO) * (1 - discount / 100)
    for contract_id, value in (
        Expense.objects.filter(
            project__contract_id__in=list(info),
            status=Expense.Status.APPROVED,
            invoice_line__isnull=True,
            billable=True,
            date__lte=end,
        )
        .order_by()
        .values("project__contract_id")
        .annotate(v=Sum("amount"))
        .values_list("project__contract_id", "v")
    ):
        net[contract_id] += (value or ZERO) * (1 + (info[contract_id][6] or ZERO) / 100)
    due_later: list[tuple[int, date, Decimal]] = []
    for contract_id, status, due_on, value in (
        Milestone.objects.filter(
            Q(status=Milestone.Status.APPROVED)
            | Q(
                status__in=(Milestone.Status.PLANNED, Milestone.Status.COMPLETED),
                due_date__gte=cutoff,
                due_date__lt=until or cutoff,
            ),
            project__contract_id__in=list(info),
            invoice_line__isnull=True,
        )
        .order_by("due_date", "pk")
        .values_list("project__contract_id", "status", "due_date", "amount")
    ):
        if status == Milestone.Status.APPROVED:
            net[contract_id] += value
        else:
            due_later.append((contract_id, due_on, value))
    for contract_id, row in info.items():
        if row[3] == Contract.BillingModel.RETAINER and row[4]:
            net[contract_id] += row[4]
    gross = ledger.gross_ratios()
    issue = max(end + timedelta(days=run_lag(ledger, cutoff)), cutoff)
    out = []
    planned = [(contract_id, issue, amount, "unbilled work") for contract_id, amount in sorted(net.items())]
    planned += [(contract_id, day, amount, "milestone due") for contract_id, day, amount in due_later]
    for contract_id, on, amount, source in planned:
        _pk, client_id, currency, _model, _ret, _disc, _markup, terms, client_terms = info[contract_id]
        total = (amount * gross.get(client_id, gross.get(0, Decimal(1)))).quantize(Decimal("0.01"))
        if total > 0:
            due = on + timedelta(days=terms or client_terms or 30)
            out.append(ExpectedInvoice(contract_id, client_id, currency, on, due, total, source))
    return out
