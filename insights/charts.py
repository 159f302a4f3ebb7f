"""Server-rendered SVG charts: trend lines, bars by cause, columns by bucket. No JavaScript, no CDN.

Each chart is a small `<svg>` with a `<title>` and, per point or bar, a `<title>` tooltip and a
link to the records behind it. The numbers are also in the table under every chart (the chart
never carries information alone). Values are escaped; labels are plain text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 560
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 14, 30


@dataclass(frozen=True)
class Point:
    label: str
    value: float | Decimal | int | None
    url: str | None = None
    note: str = ""


def _num(value) -> float | None:
    return None if value is None else float(value)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text}{unit}"


def _tick(value: float) -> str:
    """Compact axis label: 1.2M, 250k, 7.5."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    return _fmt(value)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _wrap(title: str, body: str, height: int) -> SafeString:
    # Every interpolated text is escaped.
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )


def _link(url: str | None, inner: str) -> str:
    return f'<a href="{escape(url)}">{inner}</a>' if url else inner


def _axis(height: int, top: float, unit: str) -> str:
    inner_h = height - PAD_TOP - PAD_BOTTOM
    parts = []
    for k in range(5):
        v = top * k / 4
        y = PAD_TOP + inner_h - inner_h * k / 4
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_tick(v))}</text>'
        )
    return "".join(parts)


def line_chart(title: str, points: Sequence[Point], *, unit: str = "", height: int = 180,
               compare: Sequence[float | Decimal | None] | None = None) -> SafeString:
    """A trend line over labelled points (e.g. months); gaps where a value is missing.

    `compare`: a second series on the same points, drawn dashed (e.g. actuals against a forecast).
    """
    values = [_num(p.value) for p in points]
    others = [_num(v) for v in compare] if compare is not None else []
    known = [v for v in values + others if v is not None]
    if not known:
        return _wrap(title, f'<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle">'
                            f'No data in this period</text>', height)
    top = _nice_max(max(known))
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD_LEFT + i * step, PAD_TOP + inner_h - inner_h * (v / top)

    parts = [_axis(height, top, unit)]
    if others:
        d = " ".join(f"{'M' if k == 0 else 'L'}{xy(i, v)[0]:.1f},{xy(i, v)[1]:.1f}"
                     for k, (i, v) in enumerate((i, v) for i, v in enumerate(others) if v is not None))
        if d:
            parts.append(f'<path class="line2" d="{d}"/>')
    path, segment = [], []
    for i, v in enumerate(values):
        if v is None:
            if segment:
                path.append(segment)
            segment = []
            continue
        segment.append(xy(i, v))
    if segment:
        path.append(segment)
    for seg in path:
        d = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y) in enumerate(seg))
        parts.append(f'<path class="line" d="{d}"/>')
    every = max(1, math.ceil(len(points) / 9))
    for i, (p, v) in enumerate(zip(points, values, strict=True)):
        x = PAD_LEFT + i * step
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 10}" text-anchor="middle">'
                         f'{escape(p.label)}</text>')
        if v is not None:
            cx, cy = xy(i, v)
            dot = (f'<circle class="dot" cx="{cx:.1f}" cy="{cy:.1f}" r="3.5"><title>{escape(p.label)}: '
                   f'{escape(_fmt(v, unit))}{escape(" · " + p.note if p.note else "")}</title></circle>')
            parts.append(_link(p.url, dot))
    return _wrap(title, "".join(parts), height)


def bar_chart(title: str, points: Sequence[Point], *, unit: str = "", bar_height: int = 18) -> SafeString:
    """Horizontal bars, largest first as given (causes, codes, approvers); each bar links to its records."""
    if not points:
        return _wrap(title, '<text class="empty" x="10" y="20">Nothing in this period</text>', 30)
    label_w = 215
    height = PAD_TOP + len(points) * (bar_height + 6) + 6
    top = _nice_max(max((_num(p.value) or 0) for p in points))
    inner_w = WIDTH - label_w - 70
    parts = []
    for i, p in enumerate(points):
        v = _num(p.value) or 0
        y = PAD_TOP + i * (bar_height + 6)
        w = max(inner_w * v / top, 1 if v else 0)
        bar = (f'<rect class="bar" x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}">'
               f'<title>{escape(p.label)}: {escape(_fmt(v, unit))}</title></rect>')
        label = p.label if len(p.label) <= 31 else p.label[:30] + "…"
        parts.append(f'<text class="label" x="{label_w - 6}" y="{y + bar_height - 5}" text-anchor="end">'
                     f"{escape(label)}</text>")
        parts.append(_link(p.url, bar))
        parts.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + bar_height - 5}">'
                     f'{escape(_fmt(v, unit))}</text>')
    return _wrap(title, "".join(parts), height)


def column_chart(title: str, points: Sequence[Point], *, unit: str = "", height: int = 180) -> SafeString:
    """Vertical columns over ordered buckets (aging buckets, forecast weeks)."""
    values = [_num(p.value) or 0 for p in points]
    if not points or not any(values):
        return _wrap(title, f'<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle">'
                            f'Nothing in this period</text>', height)
    top = _nice_max(max(values))
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM
    slot = inner_w / len(points)
    parts = [_axis(height, top, unit)]
    for i, (p, v) in enumerate(zip(points, values, strict=True)):
        h = inner_h * v / top
        x = PAD_LEFT + i * slot + slot * 0.15
        y = PAD_TOP + inner_h - h
        col = (f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}">'
               f'<title>{escape(p.label)}: {escape(_fmt(v, unit))}</title></rect>')
        parts.append(_link(p.url, col))
        if i % max(1, math.ceil(len(points) / 9)) == 0:
            parts.append(f'<text class="tick" x="{x + slot * 0.35:.1f}" y="{height - 10}" text-anchor="middle">'
                         f'{escape(p.label)}</text>')
    return _wrap(title, "".join(parts), height)
