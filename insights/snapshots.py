"""KPI snapshots, the read side of the dashboards and the API: figures computed ahead, read in one query.

`kpis()` (insights.selectors) computes every metric live from the records — seconds on a firm
of real size. A snapshot is the result of that same call for one period, metric set and filter
set, stored with the time it was computed (`KpiSnapshot`):

- `kpi_snapshot_refresh(...)` computes it live and stores it (one transaction);
- `refresh_default_snapshots()` — the django-q2 schedule "Insights: refresh the KPI snapshots",
  every `INSIGHTS_KPI_REFRESH_MINUTES` — refreshes what the dashboards and the API show by
  default (the twelve months up to today, no filter);
- `kpis_snapshot(...)` returns a snapshot no older than `INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S`, else
  computes live and stores the result for the next reader; it returns the figures and the time
  they were computed, which the pages show. An age of 0 turns snapshots off (always live).

The figures are exactly the live definitions' (the same function computed them); `encode` /
`decode` keep Decimals, dates, tuples, non-string keys and key order as they were (tests compare both
paths on the same data).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from insights import selectors
from insights.models import KpiSnapshot

LEADERSHIP_METRICS = ("first_pass_accuracy", "days_to_invoice", "dso", "leakage", "cash_forecast", "disputes")
OPERATIONS_METRICS = (
    "billing_cycle_time",
    "approval_latency",
    "exception_rate",
    "credit_notes",
    "ar_aging",
    "disputes",
)


# --- typed JSON --------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """`value` as JSON that `decode` turns back into equal values of the same types."""
    if isinstance(value, bool) or value is None or isinstance(value, int | float | str):
        return value
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, tuple):
        return {"$t": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):  # as pairs: PostgreSQL's jsonb reorders object keys, and keys may be ints
        return {"$map": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"A KPI snapshot cannot keep a {type(value).__name__}: {value!r}")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$d":
            return Decimal(inner)
        if tag == "$dt":
            return datetime.datetime.fromisoformat(inner)
        if tag == "$date":
            return datetime.date.fromisoformat(inner)
        if tag == "$t":
            return tuple(decode(v) for v in inner)
        if tag == "$map":
            return {_hashable(decode(k)): decode(v) for k, v in inner}
    return {k: decode(v) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# --- snapshots ---------------------------------------------------------------------------------------


def _metrics(metrics: Iterable[str] | None) -> list[str]:
    return list(metrics) if metrics else list(selectors.METRICS)


def snapshot_key(
    period_start: datetime.date, period_end: datetime.date, metrics: Iterable[str] | None, **filters: Any
) -> tuple[str, dict[str, Any]]:
    """The snapshot's key (hash) and the filters it stands for (as-of date and currency included)."""
    f = selectors.KpiFilters(period_start=period_start, period_end=period_end, **filters)
    described = f.as_dict()
    identity = json.dumps({"metrics": _metrics(metrics), "filters": described, "today": str(f.today)}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest(), described


def max_age() -> datetime.timedelta:
    return datetime.timedelta(seconds=getattr(settings, "INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S", 900))


def kpi_snapshot_refresh(
    period_start: datetime.date, period_end: datetime.date, *, metrics: Iterable[str] | None = None, **filters: Any
) -> KpiSnapshot:
    """Compute the KPIs live (`selectors.kpis`) and store them as the snapshot of this period and filter set."""
    return kpi_snapshots_refresh(period_start, period_end, [metrics], **filters)[0]


def kpi_snapshots_refresh(
    period_start: datetime.date,
    period_end: datetime.date,
    metric_sets: Iterable[Iterable[str] | None],
    **filters: Any,
) -> list[KpiSnapshot]:
    """The snapshots of several metric sets of one period and filter set, each metric computed once.

    Metrics are computed independently of each other (`selectors.kpis` calls each one's function), so
    a set's figures taken from the union's are exactly what computing the set alone gives.
    """
    wanted_sets = [_metrics(metrics) for metrics in metric_sets]
    union = list(dict.fromkeys(name for wanted in wanted_sets for name in wanted))
    began = time.perf_counter()
    data = selectors.kpis(period_start, period_end, metrics=union, **filters)
    compute_ms = round((time.perf_counter() - began) * 1000)
    return [
        _store(
            period_start,
            period_end,
            wanted,
            {"filters": data["filters"], **{k: data[k] for k in wanted}},
            compute_ms,
            **filters,
        )
        for wanted in wanted_sets
    ]


def _store(
    period_start: datetime.date,
    period_end: datetime.date,
    wanted: list[str],
    data: dict[str, Any],
    compute_ms: int,
    **filters: Any,
) -> KpiSnapshot:
    key, described = snapshot_key(period_start, period_end, wanted, **filters)
    values = {
        "period_start": period_start,
        "period_end": period_end,
        "filters": described,
        "metrics": wanted,
        "payload": encode(data),
        "computed_at": timezone.now(),
        "compute_ms": compute_ms,
    }
    try:
        with transaction.atomic():
            snapshot, _ = KpiSnapshot.objects.update_or_create(key=key, defaults=values)
    except IntegrityError:  # a concurrent refresh inserted it first: ours is as fresh, write it over
        KpiSnapshot.objects.filter(key=key).update(**values)
        snapshot = KpiSnapshot.objects.get(key=key)
    return snapshot


def kpis_snapshot(
    period_start: datetime.date, period_end: datetime.date, *, metrics: Iterable[str] | None = None, **filters: Any
) -> tuple[dict[str, Any], datetime.datetime]:
    """The KPIs as `selectors.kpis` returns them, and when they were computed (at most `max_age()` ago)."""
    wanted = _metrics(metrics)
    f = selectors.KpiFilters(period_start=period_start, period_end=period_end, **filters)
    if f.period_end < f.period_start:
        raise ValueError("period_end is before period_start")
    if max_age() <= datetime.timedelta(0):  # snapshots off: the live figures, computed now
        return selectors.kpis(period_start, period_end, metrics=wanted, **filters), timezone.now()
    key, _ = snapshot_key(period_start, period_end, wanted, **filters)
    snapshot = KpiSnapshot.objects.filter(key=key, computed_at__gte=timezone.now() - max_age()).first()
    if snapshot is None:
        snapshot = kpi_snapshot_refresh(period_start, period_end, metrics=wanted, **filters)
    return decode(snapshot.payload), snapshot.computed_at


def refresh_default_snapshots() -> dict[str, int]:
    """Refresh what the dashboards and `/api/v1/kpis/` show by default; drop snapshots a day old."""
    from insights.params import default_period

    start, end = default_period()
    sets = {"leadership": LEADERSHIP_METRICS, "operations": OPERATIONS_METRICS, "api": None}
    # The three share their metrics (the API's is all of them): each is computed once for all three.
    snapshots = kpi_snapshots_refresh(start, end, sets.values())
    done = {name: snapshot.compute_ms for name, snapshot in zip(sets, snapshots, strict=True)}
    KpiSnapshot.objects.filter(computed_at__lt=timezone.now() - datetime.timedelta(days=1)).delete()
    return done
