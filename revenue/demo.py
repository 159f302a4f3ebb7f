"""Demo history of revenue recognition: estimates for the fixed-fee contracts, then the twelve
months of the demo's history closed one by one (`seed_demo` calls `seed_demo_extension` last)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from django.db.models import Sum

from billing.models import Contract, TimeEntry
from kernel.errors import ApplicationError
from revenue.models import Estimate, RevenuePeriod
from revenue.services.close import revenue_close

FIRST_MONTH = date(2025, 11, 1)  # the demo's history (insights.demo): Nov 2025 – Oct 2026
MONTHS = 12


def _months() -> list[date]:
    months, day = [], FIRST_MONTH
    for _ in range(MONTHS):
        months.append(day)
        day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return months


def _estimates() -> int:
    """One approved estimate per fixed-fee contract: 125 % of the hours its projects booked (at least 40 h)."""
    made = 0
    hours = dict(
        TimeEntry.objects.filter(project__contract__billing_model=Contract.BillingModel.FIXED_FEE)
        .values("project__contract_id")
        .annotate(h=Sum("hours"))
        .values_list("project__contract_id", "h")
    )
    with_estimate = set(Estimate.objects.values_list("contract_id", flat=True))
    for contract in Contract.objects.filter(billing_model=Contract.BillingModel.FIXED_FEE).exclude(
        pk__in=with_estimate
    ):
        booked = hours.get(contract.pk) or Decimal(0)
        Estimate.objects.create(
            contract=contract,
            hours=max(Decimal(40), (booked * Decimal("1.25")).quantize(Decimal("1"))),
            as_of=FIRST_MONTH,
            status=Estimate.Status.APPROVED,
            note="Demo: estimate at the start of the history",
        )
        made += 1
    return made


def seed_demo_extension(*, scale: int = 1, seed: int = 0, log: Callable[[str], None] = print) -> Counter:
    total: Counter = Counter()
    if not Contract.objects.exists():
        return total
    total["estimates"] += _estimates()
    closed = set(RevenuePeriod.objects.filter(status=RevenuePeriod.Status.CLOSED).values_list("start", flat=True))
    started = time.monotonic()
    for month in _months():
        if month in closed:
            continue
        try:
            revenue_close(
                period=month,
                user=None,
                lock=True,
                reason="Demo history",
                override_reason="Demo history: closed as the month stood",
            )
        except ApplicationError as exc:
            log(f"Revenue close {month:%Y-%m} stopped: {exc.message}")
            break
        total["revenue periods closed"] += 1
    if total["revenue periods closed"]:
        log(
            f"Revenue: {total['revenue periods closed']} months closed in {time.monotonic() - started:.1f} s "
            f"({total['estimates']} estimates added)."
        )
    return total
