"""Demo history of revenue recognition: estimates for the fixed-fee contracts, then the twelve
months of the demo's history closed one by one (`seed_demo` calls `seed_demo_extension` last)."""

from __future__ import annotations

import datetime
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


def _history_work() -> int:
    """The history's invoices (insights.demo) bill time lines without time entries behind them: book the
    entries those lines bill (8-hour days, people of the line's role in turn, on the weekdays of the
    invoice's period), linked to their line, so the closed months recognise the work they invoiced.
    Its fixed-fee milestones are recognised on approval (dated on their invoice's issue date)."""
    from datetime import timedelta

    from billing.models import InvoiceLine, Milestone, Person
    from revenue.models import RecognitionPolicy

    people: dict[int, list[int]] = {}
    for person_id, role_id in Person.objects.order_by("id").values_list("id", "role_id"):
        people.setdefault(role_id, []).append(person_id)
    lines = (
        InvoiceLine.objects.filter(
            invoice__contract__code__endswith="-PY", kind__in=("time", "overage"), time_entries__isnull=True
        )
        .exclude(role_id=None)
        .exclude(project_id=None)
        .values_list("id", "role_id", "project_id", "quantity", "invoice__period_start", "invoice__period_end")
    )
    entries, turn = [], 0
    for line_id, role_id, project_id, quantity, start, end in lines:
        staff = people.get(role_id)
        if not staff or start is None or end is None:
            continue
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        days = [d for d in days if d.weekday() < 5] or days
        left, i = Decimal(quantity), 0
        while left > 0:
            chunk = min(left, Decimal(8))
            entries.append(
                TimeEntry(
                    person_id=staff[turn % len(staff)],
                    project_id=project_id,
                    date=days[i % len(days)],
                    hours=chunk,
                    billable=True,
                    status="invoiced",
                    invoice_line_id=line_id,
                    description="Demo history",
                )
            )
            left -= chunk
            i += 1
            turn += 1
    TimeEntry.objects.bulk_create(entries, batch_size=2000)
    for contract in Contract.objects.filter(code__endswith="-PY", billing_model=Contract.BillingModel.FIXED_FEE):
        RecognitionPolicy.objects.get_or_create(contract=contract, defaults={"method": "milestone"})
    for milestone in Milestone.objects.filter(
        project__contract__code__endswith="-PY", approved_at__isnull=True, invoice_line__isnull=False
    ).select_related("invoice_line__invoice"):
        issued = milestone.invoice_line.invoice.issue_date
        noon = datetime.datetime.combine(issued, datetime.time(12), tzinfo=datetime.UTC)
        Milestone.objects.filter(pk=milestone.pk).update(approved_at=noon)
    return len(entries)


def _erp_accounts() -> None:
    """Against Tryton (`make demo ERP=tryton`) the journals book on accounts of Tryton's chart: enter their codes."""
    from django.conf import settings

    if not settings.ERP_ADAPTER.endswith("TrytonErpAdapter"):
        return
    from billing.models import LegalEntity
    from integrations.erp.tryton import DEMO_COMPANIES, DEMO_REVENUE_ACCOUNTS
    from revenue.models import EntityAccounts

    for entity in LegalEntity.objects.filter(code__in=DEMO_COMPANIES):
        EntityAccounts.objects.update_or_create(entity=entity, defaults=DEMO_REVENUE_ACCOUNTS)


def seed_demo_extension(*, scale: int = 1, seed: int = 0, log: Callable[[str], None] = print) -> Counter:
    total: Counter = Counter()
    if not Contract.objects.exists():
        return total
    started = time.monotonic()
    total["history time entries"] += _history_work()
    if total["history time entries"]:
        log(
            f"Revenue: {total['history time entries']:,} history time entries booked "
            f"({time.monotonic() - started:.1f} s)."
        )
    total["estimates"] += _estimates()
    _erp_accounts()
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
    total = +total  # drop zero counts: a second seeding reports nothing to do
    if total["revenue periods closed"]:
        log(
            f"Revenue: {total['revenue periods closed']} months closed in {time.monotonic() - started:.1f} s "
            f"({total['estimates']} estimates added)."
        )
    return total
