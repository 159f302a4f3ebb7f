"""Invoice anomaly score: how far an invoice lies from the client's own history (docs/rules/assistive.md).

Robust statistics, so one odd month in the history does not hide the next one:
for each feature — net amount, hours, average hourly rate (the rate mix),
line count — the median and the MAD (median absolute deviation) of the
client's previous issued invoices in the same currency (the latest
`HISTORY_WINDOW`), and the modified z-score of Iglewicz and Hoaglin,
`z = 0.6745 × (value − median) / MAD`. The score is the largest |z|; above
`INSIGHTS_ANOMALY_THRESHOLD` (3.5, their recommended cut-off) the invoice gets
an `ANOMALY` warning that says which feature deviated and by how much, and the
approval policies add a controller step. It never blocks.

A MAD of zero (a client billed the same every month) would make every cent a
deviation: the MAD is floored at `INSIGHTS_ANOMALY_MAD_FLOOR` × |median| (10 %: a perfectly
steady client is flagged from about +52 %, not for a normal month's ±20 %). Fewer than
`INSIGHTS_ANOMALY_MIN_HISTORY` (4) earlier invoices: no score, "not enough history".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from insights.features import InvoiceStats

HISTORY_WINDOW = 24
Z_FACTOR = 0.6745  # makes the MAD of a normal distribution comparable to its standard deviation
Z_CAP = 999.0

#: (feature, label, unit): unit "money" prints with the currency, "hours" with h.
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("net", "net amount", "money"),
    ("hours", "hours", "hours"),
    ("avg_rate", "average hourly rate", "rate"),
    ("lines", "line count", "count"),
)


def min_history() -> int:
    return int(getattr(settings, "INSIGHTS_ANOMALY_MIN_HISTORY", 4))


def mad_floor() -> float:
    return float(getattr(settings, "INSIGHTS_ANOMALY_MAD_FLOOR", 0.10))


def threshold() -> float:
    return float(getattr(settings, "INSIGHTS_ANOMALY_THRESHOLD", 3.5))


@dataclass
class AnomalyResult:
    """The outcome for one invoice: a score with its reasons, or a note why there is none."""

    score: float | None
    reasons: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def flagged(self) -> bool:
        return self.score is not None and self.score > threshold()

    @property
    def max_z(self) -> float | None:
        return self.score

    def message(self) -> str:
        """The ANOMALY warning's text: every feature above the threshold, largest first."""
        parts = [r["text"] for r in self.reasons if abs(r["z"]) > threshold()]
        return "Unusual for this client: " + "; ".join(parts) + "." if parts else ""


def _value(stats: InvoiceStats, feature: str) -> float | None:
    if feature == "avg_rate":
        rate = stats.avg_rate
        return float(rate) if rate is not None else None
    if feature == "lines":
        return float(stats.lines)
    return float(getattr(stats, feature))


def _fmt(value: float, unit: str, currency: str) -> str:
    if unit == "money":
        return f"{value:,.2f} {currency}"
    if unit == "rate":
        return f"{value:,.2f} {currency}/h"
    if unit == "hours":
        return f"{value:,.2f} h"
    return f"{value:,.0f}"


def robust_z(value: float, history: Sequence[float]) -> tuple[float, float, float]:
    """(modified z, median, MAD used) of `value` against `history` (the MAD floored, see module doc)."""
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    scale = max(mad, mad_floor() * abs(median))
    if scale == 0:
        return (0.0 if value == median else Z_CAP * (1 if value > median else -1)), median, 0.0
    z = Z_FACTOR * (value - median) / scale
    return max(-Z_CAP, min(Z_CAP, z)), median, scale


def assess(stats: InvoiceStats, history: Sequence[InvoiceStats]) -> AnomalyResult:
    """Score one invoice against the client's earlier issued invoices (already sliced point-in-time)."""
    needed = min_history()
    if len(history) < needed:
        return AnomalyResult(
            score=None,
            note=f"Not enough history: {len(history)} earlier issued invoice{'s' if len(history) != 1 else ''} "
            f"of this client in {stats.currency}; the anomaly score needs {needed}.",
        )
    reasons = []
    for feature, label, unit in FEATURES:
        value = _value(stats, feature)
        past = [v for v in (_value(h, feature) for h in history) if v is not None]
        if value is None or len(past) < needed:
            continue  # e.g. no hours on this invoice, or a fixed-fee client without time history
        z, median, scale = robust_z(value, past)
        mads = (value - median) / scale if scale else 0.0
        direction = "above" if value >= median else "below"
        text = (
            f"{label} {_fmt(value, unit, stats.currency)} is {abs(mads):,.1f} MADs {direction} this client's median "
            f"{_fmt(median, unit, stats.currency)} (robust z {z:+.1f})"
        )
        reasons.append(
            {
                "feature": feature,
                "label": label,
                "value": round(value, 4),
                "median": round(median, 4),
                "mad": round(scale, 4),
                "z": round(z, 3),
                "text": text,
            }
        )
    reasons.sort(key=lambda r: -abs(r["z"]))
    score = round(max((abs(r["z"]) for r in reasons), default=0.0), 3)
    return AnomalyResult(score=score, reasons=reasons)


def score_decimal(result: AnomalyResult) -> Decimal | None:
    return None if result.score is None else Decimal(str(round(result.score, 3)))
