"""The monthly close (docs/rules/revenue.md): schedules per contract, journals per entity, the period lock.

`revenue_close(period=..., user=..., lock=False)` computes the month as a draft, replacing an
earlier draft of it; `lock=True` closes it for good (the checklist clear, or overridden with
a reason). Each call is one transaction. A closed period is refused; changes made after a
close (late approvals, credit notes, estimate revisions) reach the next period as catch-up,
because every figure is cumulative and the period's share is the cumulative minus what the
previous close stored.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import Contract, LegalEntity
from billing.services.pricing import FxResolver
from kernel.audit import save_audited
from kernel.errors import ApplicationError, PermissionDeniedError
from kernel.money import ZERO, round_money
from kernel.roles import FINANCE_CONTROLLER, has_role, is_finance
from kernel.workflow import apply_transition
from revenue.models import JournalEntry, JournalLine, RevenuePeriod, RevenueSchedule
from revenue.recognition import month_start, recognise
from revenue.selectors import accounts_for, close_checklist


def _require(user: Any, *, lock: bool) -> None:
    if user is None:
        return  # the scheduler and the management command act as the system
    if lock:
        if not (getattr(user, "is_superuser", False) or has_role(user, FINANCE_CONTROLLER)):
            raise PermissionDeniedError("Only a finance controller closes a revenue period.")
    elif not is_finance(user):
        raise PermissionDeniedError("Only finance runs the revenue close.")


def _previous_closed(start: date) -> RevenuePeriod | None:
    return RevenuePeriod.objects.filter(start__lt=start, status=RevenuePeriod.Status.CLOSED).order_by("-start").first()


@transaction.atomic
def revenue_close(
    *, period: str | date, user: Any = None, lock: bool = False, reason: str = "", override_reason: str = ""
) -> RevenuePeriod:
    """Compute the month's schedules and journals (a draft), or close and lock it (`lock=True`)."""
    _require(user, lock=lock)
    started = time.monotonic()
    start, end = month_start(period)
    record, _ = RevenuePeriod.objects.get_or_create(start=start, defaults={"end": end})
    record = RevenuePeriod.objects.select_for_update().get(pk=record.pk)
    if record.status == RevenuePeriod.Status.CLOSED:
        raise ApplicationError(f"Revenue period {record.label} is closed: it cannot be closed again.", code="closed")
    if RevenuePeriod.objects.filter(start__gt=start, status=RevenuePeriod.Status.CLOSED).exists():
        raise ApplicationError(
            f"A later period is closed: {record.label} can no longer be closed.", code="later_period_closed"
        )
    previous = _previous_closed(start)
    if lock and previous is not None and previous.end != start - timedelta(days=1):
        raise ApplicationError(
            f"Close {(previous.end + timedelta(days=1)):%Y-%m} first: periods close in order.", code="out_of_order"
        )
    override_reason = (override_reason or "").strip()
    if lock:
        open_items = [item for item in close_checklist(start, end) if not item.clear]
        if open_items and not override_reason:
            raise ApplicationError(
                "The close checklist is not clear: "
                + "; ".join(f"{i.label} ({i.count})" for i in open_items)
                + ". Settle them or override with a reason.",
                code="checklist_open",
                field_errors={"override_reason": ["Required while checklist items are open."]},
            )

    # Replace the draft: nothing of an open or draft period is locked.
    JournalLine.objects.filter(entry__period=record).delete()
    JournalEntry.objects.filter(period=record).delete()
    RevenueSchedule.objects.filter(period=record).delete()

    schedules = _build_schedules(record, previous)
    RevenueSchedule.objects.bulk_create(schedules, batch_size=1000)
    _build_journals(record, schedules)

    now = timezone.now()
    if lock:
        apply_transition(record, "close", user=user, reason=reason or "Revenue period closed", label=record.label)
        record.closed_by, record.closed_at = _user_or_none(user), now
        record.close_reason = reason
        record.checklist_override = override_reason if any(not i.clear for i in close_checklist(start, end)) else ""
    else:
        apply_transition(record, "draft", user=user, reason=reason or "Close computed as a draft", label=record.label)
        record.drafted_by, record.drafted_at = _user_or_none(user), now
    record.duration_ms = int((time.monotonic() - started) * 1000)
    save_audited(record, user=user, reason=("Closed" if lock else "Draft close") + (f": {reason}" if reason else ""))
    if lock:
        from revenue.services.posting import journals_request_posting

        journals_request_posting(period=record, user=user)
    return record


def _user_or_none(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


def _contracts_for(record: RevenuePeriod, previous: RevenuePeriod | None) -> list[Contract]:
    with_history = Q(revenue_schedules__period=previous) if previous else Q(pk__in=[])
    return list(
        Contract.objects.filter(~Q(status=Contract.Status.DRAFT) | with_history)
        .select_related("client", "entity")
        .distinct()
        .order_by("id")
    )


def _build_schedules(record: RevenuePeriod, previous: RevenuePeriod | None) -> list[RevenueSchedule]:
    contracts = _contracts_for(record, previous)
    previous_end = record.start - timedelta(days=1)
    recognised = recognise(contracts, period_end=record.end, previous_end=previous_end)
    stored = {s.contract_id: s for s in RevenueSchedule.objects.filter(period=previous)} if previous is not None else {}
    fx = FxResolver({(c.currency, c.entity.currency) for c in contracts}, record.end)
    missing_fx = sorted(
        {
            f"{c.currency}→{c.entity.currency}"
            for c in contracts
            if fx.rate(c.currency, c.entity.currency, record.end) is None
        }
    )
    if missing_fx:
        raise ApplicationError(
            f"No FX rate on or before {record.end:%Y-%m-%d} for {', '.join(missing_fx)}: load it, then close again.",
            code="missing_fx_rate",
        )
    rows = []
    for contract in contracts:
        rec = recognised[contract.id]
        before = stored.get(contract.id)
        prev_recognised = before.cumulative_recognised if before else ZERO
        prev_billed = before.cumulative_billed if before else ZERO
        position = rec.cumulative - rec.billed
        wip, deferred = max(position, ZERO), max(-position, ZERO)
        period_revenue = rec.cumulative - prev_recognised
        period_billed = rec.billed - prev_billed
        # Catch-up: what today's data adds to months already closed (late approvals, estimate changes).
        catch_up = rec.previous - prev_recognised if before is not None else ZERO
        if not any((rec.cumulative, rec.billed, period_revenue, period_billed, before, rec.unrecoverable)):
            continue
        rate = fx.rate(contract.currency, contract.entity.currency, record.end) or Decimal(1)
        ccy = contract.entity.currency
        revenue_e = round_money(period_revenue * rate, ccy)
        billed_e = round_money(period_billed * rate, ccy)
        # Balances are carried at the period-end rate (ADR 0120): the movement of each in entity currency
        # is today's balance at today's rate minus what the previous close carried; what the month's
        # revenue and billing do not explain is the revaluation of the opening balances (FX gain or loss).
        wip_e, deferred_e = round_money(wip * rate, ccy), round_money(deferred * rate, ccy)
        prev_wip_e, prev_deferred_e = _carried(before, ccy)
        wip_change_e = wip_e - prev_wip_e
        deferred_change_e = deferred_e - prev_deferred_e
        fx_revaluation_e = (wip_change_e - deferred_change_e) - (revenue_e - billed_e)
        rows.append(
            RevenueSchedule(
                period=record,
                contract=contract,
                method=rec.method,
                currency=contract.currency,
                cumulative_recognised=rec.cumulative,
                cumulative_billed=rec.billed,
                wip=wip,
                deferred=deferred,
                period_revenue=period_revenue,
                period_billed=period_billed,
                catch_up=catch_up,
                unrecoverable=rec.unrecoverable,
                hours_to_date=rec.hours,
                estimate_hours=rec.estimate,
                entity_currency=ccy,
                fx_rate=rate,
                period_revenue_entity=revenue_e,
                period_billed_entity=billed_e,
                wip_change_entity=wip_change_e,
                deferred_change_entity=deferred_change_e,
                wip_entity=wip_e,
                deferred_entity=deferred_e,
                fx_revaluation_entity=fx_revaluation_e,
            )
        )
    return rows


def _carried(before: RevenueSchedule | None, ccy: str) -> tuple[Decimal, Decimal]:
    """WIP and deferred as the previous close carried them in entity currency (rows from before ADR 0120:
    the balance at that close's rate)."""
    if before is None:
        return ZERO, ZERO
    wip_e = before.wip_entity if before.wip_entity is not None else round_money(before.wip * before.fx_rate, ccy)
    deferred_e = (
        before.deferred_entity
        if before.deferred_entity is not None
        else round_money(before.deferred * before.fx_rate, ccy)
    )
    return wip_e, deferred_e


def _signed_line(entry: JournalEntry, account: str, label: str, credit_amount: Decimal) -> JournalLine | None:
    """A line crediting `credit_amount` (a negative amount is a debit); None for zero."""
    if credit_amount == 0:
        return None
    if credit_amount > 0:
        return JournalLine(entry=entry, account=account, label=label, credit=credit_amount)
    return JournalLine(entry=entry, account=account, label=label, debit=-credit_amount)


def _build_journals(record: RevenuePeriod, schedules: list[RevenueSchedule]) -> list[JournalEntry]:
    totals: dict[int, list[Decimal]] = {}
    for s in schedules:
        t = totals.setdefault(s.contract.entity_id, [ZERO, ZERO, ZERO, ZERO, ZERO])
        t[0] += s.period_revenue_entity
        t[1] += s.period_billed_entity
        t[2] += s.wip_change_entity
        t[3] += s.deferred_change_entity
        t[4] += s.fx_revaluation_entity
    entries = []
    for entity in LegalEntity.objects.filter(pk__in=totals).order_by("code"):
        revenue, billed, wip_change, deferred_change, fx_revaluation = totals[entity.pk]
        accounts = accounts_for(entity)
        entry = JournalEntry.objects.create(
            period=record, entity=entity, currency=entity.currency, reference=f"REV-{entity.code}-{record.label}"
        )
        lines = [
            _signed_line(entry, accounts.revenue, f"Revenue recognised {record.label}", revenue),
            _signed_line(entry, accounts.billed, f"Invoiced revenue reclassified {record.label}", -billed),
            _signed_line(entry, accounts.wip, f"Contract assets (WIP) movement {record.label}", -wip_change),
            _signed_line(entry, accounts.deferred, f"Deferred revenue movement {record.label}", deferred_change),
            _signed_line(
                entry,
                accounts.fx_revaluation,
                f"FX revaluation of WIP and deferred revenue {record.label}",
                fx_revaluation,
            ),
        ]
        JournalLine.objects.bulk_create([line for line in lines if line is not None])
        entries.append(entry)
    return entries
