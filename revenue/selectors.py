"""Reads of the revenue screens, the reconciliation and the KPIs (docs/rules/revenue.md)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Count, OuterRef, Subquery, Sum

from billing.models import Contract, InvoiceException, TimeEntry
from kernel.money import ZERO
from revenue.models import (
    EntityAccounts,
    Estimate,
    JournalEntry,
    JournalLine,
    RecognitionPolicy,
    RevenuePeriod,
    RevenueSchedule,
)
from revenue.recognition import default_method


@dataclass
class ChecklistItem:
    key: str
    label: str
    count: int
    detail: list[str] = field(default_factory=list)

    @property
    def clear(self) -> bool:
        return self.count == 0


def close_checklist(start: date, end: date) -> list[ChecklistItem]:
    """What should be settled before a month is closed: each item clear, or overridden with a reason."""
    unapproved = TimeEntry.objects.filter(status=TimeEntry.Status.SUBMITTED, date__gte=start, date__lte=end)
    exceptions = InvoiceException.objects.filter(state=InvoiceException.State.OPEN)
    return [
        ChecklistItem(
            "unapproved_time",
            "Submitted time in the month still waiting for approval",
            unapproved.count(),
            [
                f"{p} ({h} h)"
                for p, h in unapproved.values("project__code")
                .annotate(h=Sum("hours"))
                .values_list("project__code", "h")[:10]
            ],
        ),
        ChecklistItem(
            "open_exceptions",
            "Open invoice exceptions",
            exceptions.count(),
            list(exceptions.values_list("code", flat=True).distinct()[:10]),
        ),
        ChecklistItem(
            "missing_estimates",
            "Percent-complete contracts without an approved estimate at completion",
            len(missing := contracts_without_estimate(end)),
            missing[:10],
        ),
    ]


def contracts_without_estimate(end: date) -> list[str]:
    """Codes of fixed-fee contracts recognised by percent complete with no approved estimate dated ≤ `end`."""
    policies = dict(RecognitionPolicy.objects.values_list("contract_id", "method"))
    with_estimate = set(
        Estimate.objects.filter(status=Estimate.Status.APPROVED, as_of__lte=end).values_list("contract_id", flat=True)
    )
    codes = []
    for contract in Contract.objects.filter(billing_model=Contract.BillingModel.FIXED_FEE).exclude(
        status=Contract.Status.DRAFT
    ):
        method = policies.get(contract.id) or default_method(contract)
        if method == RecognitionPolicy.Method.PERCENT_COMPLETE and contract.id not in with_estimate:
            codes.append(contract.code)
    return sorted(codes)


def accounts_for(entity) -> EntityAccounts:
    """The entity's configured accounts, or the defaults (unsaved) when none were set."""
    try:
        return entity.revenue_accounts
    except EntityAccounts.DoesNotExist:
        return EntityAccounts(entity=entity)


# --- reconciliation -------------------------------------------------------------------------------


@dataclass
class ContractLine:
    contract_code: str
    currency: str
    recognised: Decimal
    billed: Decimal
    wip: Decimal
    deferred: Decimal
    sum_period_revenue: Decimal
    sum_period_billed: Decimal
    differences: list[str]


@dataclass
class EntityLine:
    entity_code: str
    currency: str
    schedule_revenue: Decimal
    journal_revenue: Decimal
    debits: Decimal
    credits: Decimal
    differences: list[str]


@dataclass
class Reconciliation:
    period: RevenuePeriod | None
    contracts: list[ContractLine]
    entities: list[EntityLine]

    @property
    def differences(self) -> list[str]:
        return [d for line in [*self.contracts, *self.entities] for d in line.differences]

    @property
    def ties(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        return {
            "period": self.period.label if self.period else None,
            "status": self.period.status if self.period else None,
            "ties": self.ties,
            "differences": self.differences,
            "contracts": [
                {
                    "contract": c.contract_code,
                    "currency": c.currency,
                    "recognised": str(c.recognised),
                    "billed": str(c.billed),
                    "wip": str(c.wip),
                    "deferred": str(c.deferred),
                    "recognised_minus_billed": str(c.recognised - c.billed),
                    "wip_minus_deferred": str(c.wip - c.deferred),
                    "differences": c.differences,
                }
                for c in self.contracts
            ],
            "entities": [
                {
                    "entity": e.entity_code,
                    "currency": e.currency,
                    "schedule_revenue": str(e.schedule_revenue),
                    "journal_revenue": str(e.journal_revenue),
                    "debits": str(e.debits),
                    "credits": str(e.credits),
                    "differences": e.differences,
                }
                for e in self.entities
            ],
        }


def reconciliation(period_start: date) -> Reconciliation:
    """Per contract Σ recognised − Σ billed = WIP − deferred to the cent; journals = schedules per entity."""
    period = RevenuePeriod.objects.filter(start=period_start).first()
    if period is None:
        return Reconciliation(None, [], [])
    sums = {
        row["contract_id"]: row
        for row in RevenueSchedule.objects.filter(period__start__lte=period_start, period__status__in=_COUNTED)
        .values("contract_id")
        .annotate(
            rev=Sum("period_revenue"),
            billed=Sum("period_billed"),
            wip_e=Sum("wip_change_entity"),
            deferred_e=Sum("deferred_change_entity"),
            carried=Count("wip_entity"),
            rows=Count("id"),
        )
    }
    # A draft period counts its own rows on top of the closed ones before it.
    contracts: list[ContractLine] = []
    schedules = RevenueSchedule.objects.filter(period=period).select_related("contract").order_by("contract__code")
    for s in schedules:
        row = sums.get(s.contract_id, {"rev": ZERO, "billed": ZERO})
        rev, billed = row["rev"] or ZERO, row["billed"] or ZERO
        if period.status == RevenuePeriod.Status.DRAFT:
            rev, billed = rev + s.period_revenue, billed + s.period_billed
        diffs = []
        code = s.contract.code
        if s.cumulative_recognised - s.cumulative_billed != s.wip - s.deferred:
            diffs.append(
                f"{code}: recognised − billed = {s.cumulative_recognised - s.cumulative_billed}, "
                f"WIP − deferred = {s.wip - s.deferred}"
            )
        if rev != s.cumulative_recognised:
            diffs.append(f"{code}: Σ period revenue {rev} ≠ cumulative recognised {s.cumulative_recognised}")
        if billed != s.cumulative_billed:
            diffs.append(f"{code}: Σ period billed {billed} ≠ cumulative billed {s.cumulative_billed}")
        diffs += _ledger_differences(s, row, draft=period.status == RevenuePeriod.Status.DRAFT)
        contracts.append(
            ContractLine(
                code, s.currency, s.cumulative_recognised, s.cumulative_billed, s.wip, s.deferred, rev, billed, diffs
            )
        )
    entities: list[EntityLine] = []
    per_entity = defaultdict(lambda: [ZERO, ZERO, ZERO, ZERO, ZERO])
    for entity_id, rev, billed, wip, deferred, fx in (
        schedules.order_by()  # no ordering column in the GROUP BY: one row per entity
        .values("contract__entity_id")
        .annotate(
            rev=Sum("period_revenue_entity"),
            billed=Sum("period_billed_entity"),
            wip=Sum("wip_change_entity"),
            deferred=Sum("deferred_change_entity"),
            fx=Sum("fx_revaluation_entity"),
        )
        .values_list("contract__entity_id", "rev", "billed", "wip", "deferred", "fx")
    ):
        totals = per_entity[entity_id]
        for i, value in enumerate((rev, billed, wip, deferred, fx)):
            totals[i] += value or ZERO
    journals = {j.entity_id: j for j in JournalEntry.objects.filter(period=period).select_related("entity")}
    lines = defaultdict(list)
    for line in JournalLine.objects.filter(entry__period=period).select_related("entry"):
        lines[line.entry.entity_id].append(line)
    for entity_id in sorted(set(per_entity) | set(journals)):
        rev, billed, wip, deferred, fx = per_entity[entity_id]
        journal = journals.get(entity_id)
        diffs = []
        if journal is None:
            if any((rev, billed, wip, deferred, fx)):
                diffs.append(f"entity {entity_id}: no journal for non-zero schedules")
            continue
        accounts = accounts_for(journal.entity)
        net = defaultdict(lambda: ZERO)  # credit − debit per account
        for line in lines[entity_id]:
            net[line.account] += line.credit - line.debit
        debits = sum((line.debit for line in lines[entity_id]), ZERO)
        credits = sum((line.credit for line in lines[entity_id]), ZERO)
        code = journal.entity.code
        expected = {
            accounts.revenue: rev,
            accounts.billed: -billed,
            accounts.wip: -wip,
            accounts.deferred: deferred,
            accounts.fx_revaluation: fx,
        }
        if len(set(expected)) == 5:
            for account, amount in expected.items():
                if net[account] != amount:
                    diffs.append(f"{code}: journal account {account} nets {net[account]}, schedules say {amount}")
        if debits != credits:
            diffs.append(f"{code}: journal debits {debits} ≠ credits {credits}")
        entities.append(EntityLine(code, journal.currency, rev, net[accounts.revenue], debits, credits, diffs))
    return Reconciliation(period, contracts, entities)


_COUNTED = [RevenuePeriod.Status.CLOSED]


def _ledger_differences(s: RevenueSchedule, row: dict, *, draft: bool) -> list[str]:
    """The journals' WIP and deferred movements add up to the balances carried at the period-end rate (ADR 0120).

    Checked for contracts whose every schedule stores its carried balance (closes before ADR 0120 did not)."""
    wip_e, deferred_e = row.get("wip_e") or ZERO, row.get("deferred_e") or ZERO
    carried, rows = row.get("carried") or 0, row.get("rows") or 0
    if draft:
        wip_e, deferred_e = wip_e + s.wip_change_entity, deferred_e + s.deferred_change_entity
        carried, rows = carried + (s.wip_entity is not None), rows + 1
    if s.wip_entity is None or carried != rows:
        return []
    if (wip_e, deferred_e) != (s.wip_entity, s.deferred_entity):
        return [
            f"{s.contract.code}: journals carry WIP {wip_e} / deferred {deferred_e} {s.entity_currency}, "
            f"the balances at the period-end rate are {s.wip_entity} / {s.deferred_entity}"
        ]
    return []


# --- reports ---------------------------------------------------------------------------------------


def revenue_by_month(*, group: str = "contract", months: int = 12) -> dict:
    """Recognised revenue per month (closed and draft periods) grouped by contract, client, entity or business unit."""
    keys = {
        "contract": "contract__code",
        "client": "contract__client__code",
        "entity": "contract__entity__code",
        "business_unit": "unit",
    }
    key = keys.get(group, "contract__code")
    periods = list(RevenuePeriod.objects.exclude(status=RevenuePeriod.Status.OPEN).order_by("-start")[:months])
    periods.reverse()
    rows: dict[tuple[str, str], dict[date, Decimal]] = defaultdict(dict)
    qs = RevenueSchedule.objects.filter(period__in=periods).order_by()
    if group == "business_unit":
        # A contract's revenue counts once, for the business unit of its first project (by code).
        from billing.models import Project

        first_unit = (
            Project.objects.filter(contract=OuterRef("contract_id")).order_by("code").values("business_unit")[:1]
        )
        qs = qs.annotate(unit=Subquery(first_unit))
    for name, currency, start, amount in (
        qs.values(key, "currency", "period__start")
        .annotate(total=Sum("period_revenue"))
        .values_list(key, "currency", "period__start", "total")
    ):
        rows[(name or "—", currency)][start] = amount
    table = [
        {
            "name": name,
            "currency": ccy,
            "cells": [rows[(name, ccy)].get(p.start, ZERO) for p in periods],
            "total": sum(rows[(name, ccy)].values(), ZERO),
        }
        for name, ccy in sorted(rows)
    ]
    return {"periods": periods, "rows": table, "group": group}


def wip_and_deferred(period: RevenuePeriod | None) -> list[dict]:
    """WIP and deferred balances per contract at a period end, with their age (months since last at zero)."""
    if period is None:
        return []
    history = defaultdict(list)
    for contract_id, start, wip, deferred in (
        RevenueSchedule.objects.filter(period__start__lte=period.start)
        .order_by("period__start")
        .values_list("contract_id", "period__start", "wip", "deferred")
    ):
        history[contract_id].append((start, wip, deferred))
    rows = []
    for s in (
        RevenueSchedule.objects.filter(period=period).select_related("contract__client").order_by("contract__code")
    ):
        if not s.wip and not s.deferred:
            continue
        age = 0
        side = "wip" if s.wip else "deferred"
        for _start, wip, deferred in reversed(history[s.contract_id]):
            if (wip if side == "wip" else deferred) > 0:
                age += 1
            else:
                break
        rows.append(
            {
                "schedule": s,
                "side": side,
                "amount": s.wip or s.deferred,
                "age_months": age,
                "bucket": "0–1 month" if age <= 1 else "2–3 months" if age <= 3 else "over 3 months",
            }
        )
    return rows


def schedules_of(period: RevenuePeriod):
    return RevenueSchedule.objects.filter(period=period).select_related("contract__client", "contract__entity")


def latest_period() -> RevenuePeriod | None:
    return RevenuePeriod.objects.exclude(status=RevenuePeriod.Status.OPEN).order_by("-start").first()


# --- KPIs (insights reads them) -------------------------------------------------------------------


def _scoped_schedules(start: date, end: date, *, entity=None, client=None, business_unit=None):
    qs = RevenueSchedule.objects.filter(period__start__gte=start.replace(day=1), period__end__lte=end).exclude(
        period__status=RevenuePeriod.Status.OPEN
    )
    if entity:
        qs = qs.filter(contract__entity__code=entity)
    if client:
        qs = qs.filter(contract__client__code=client)
    if business_unit:
        qs = qs.filter(contract__projects__business_unit=business_unit).distinct()
    return qs


def standard_value(start: date, end: date, contract_ids: list[int]) -> dict[int, Decimal]:
    """Approved billable hours dated in the period × the rate card's rate for the role on the day, per contract.

    The "standard" price list, before contract overrides, discounts and caps: the denominator of realisation.
    """
    from billing.models import RateCardLine
    from kernel.money import round_money

    lines: dict[tuple[int, int], list] = defaultdict(list)
    for line in RateCardLine.objects.filter(rate_card__contracts__id__in=contract_ids).distinct():
        lines[(line.rate_card_id, line.role_id)].append(line)
    rates: dict[tuple[int, int, date], Decimal | None] = {}

    def rate_on(card_id: int, role_id: int, day: date) -> Decimal | None:
        key = (card_id, role_id, day)
        if key not in rates:
            covering = [
                line
                for line in lines.get((card_id, role_id), [])
                if line.effective_from <= day and (line.effective_to is None or line.effective_to >= day)
            ]
            rates[key] = max(covering, key=lambda line: (line.effective_from, line.id)).rate if covering else None
        return rates[key]

    value: dict[int, Decimal] = defaultdict(lambda: ZERO)
    # Entries alike in contract, role, day and hours are worth the same, each rounded: counted, not repeated.
    for contract_id, card_id, currency, role_id, day, hours, alike in (
        TimeEntry.objects.filter(
            project__contract_id__in=contract_ids,
            status__in=(TimeEntry.Status.APPROVED, TimeEntry.Status.INVOICED),
            billable=True,
            date__gte=start,
            date__lte=end,
        )
        .values_list(
            "project__contract_id",
            "project__contract__rate_card_id",
            "project__contract__currency",
            "person__role_id",
            "date",
            "hours",
        )
        .annotate(alike=Count("pk"))
        .order_by()
    ):
        rate = rate_on(card_id, role_id, day)
        if rate is not None:
            value[contract_id] += alike * round_money(hours * rate, currency)
    return value


def revenue_kpis(start: date, end: date, *, entity=None, client=None, business_unit=None) -> dict:
    """Revenue, WIP days and realisation over the closed (and draft) months inside [start, end].

    - revenue: Σ period revenue, in each entity's currency (converted at each month end's rate);
    - WIP days: WIP balance at the last month end ÷ revenue of the three months to it × 90 (like DSO);
    - realisation: Σ billed (invoices − credit notes, before tax) ÷ Σ standard value of the time
      delivered (approved billable hours × the rate card's rate), per contract currency.
    """
    qs = _scoped_schedules(start, end, entity=entity, client=client, business_unit=business_unit)
    revenue = defaultdict(lambda: ZERO)
    for ccy, amount in (
        qs.order_by()
        .values("entity_currency")
        .annotate(t=Sum("period_revenue_entity"))
        .values_list("entity_currency", "t")
    ):
        revenue[ccy] += amount or ZERO
    last = qs.order_by("-period__start").values_list("period__start", flat=True).first()
    wip, trailing = defaultdict(lambda: ZERO), defaultdict(lambda: ZERO)
    if last is not None:
        for s in qs.filter(period__start=last).only("wip", "fx_rate", "entity_currency", "entity_currency"):
            wip[s.entity_currency] += (s.wip * s.fx_rate).quantize(Decimal("0.01"))
        window_start = date(last.year - (last.month <= 3), (last.month - 4) % 12 + 1, 1)
        trailing_qs = _scoped_schedules(
            window_start, date(9999, 12, 31), entity=entity, client=client, business_unit=business_unit
        ).filter(period__start__gt=window_start, period__start__lte=last)
        for ccy, amount in (
            trailing_qs.order_by()
            .values("entity_currency")
            .annotate(t=Sum("period_revenue_entity"))
            .values_list("entity_currency", "t")
        ):
            trailing[ccy] += amount or ZERO
    billed = defaultdict(lambda: ZERO)
    by_contract = dict(
        qs.order_by().values("contract_id").annotate(b=Sum("period_billed")).values_list("contract_id", "b")
    )
    currency_of = dict(qs.values_list("contract_id", "currency").distinct())
    for contract_id, amount in by_contract.items():
        billed[currency_of[contract_id]] += amount or ZERO
    standard = defaultdict(lambda: ZERO)
    for contract_id, amount in standard_value(start, end, list(by_contract)).items():
        standard[currency_of[contract_id]] += amount
    return {
        "revenue": dict(revenue),
        "wip": dict(wip),
        "revenue_90d": dict(trailing),
        "wip_as_of": last,
        "billed": dict(billed),
        "standard_value": dict(standard),
    }
