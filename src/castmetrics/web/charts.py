"""Charts drawn on the server as SVG: time series (lines, with gaps for missing values) and bars.

The dashboard needs charts a person reads at a glance, without a CDN or third-party JavaScript in the
repository, so they are plain SVG strings embedded in the page (and usable in emails and reports).
Every text is escaped; every chart carries a ``<title>`` and an ``aria-label`` for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape

# A palette that stays apart for the colour-blind (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
X = float | int | date | datetime


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[X, float | None]]  # (x, y); y None is a gap


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high`` (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not math.isfinite(high) or high <= 0:
        return [0.0, 1.0]
    raw = high / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def number(value: float) -> str:
    """A short label: 1.2k, 3.4M, 0.25."""
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _x_value(x: X) -> float:
    if isinstance(x, datetime):
        return x.timestamp()
    if isinstance(x, date):
        return float(x.toordinal())
    return float(x)


def _x_label(x: X) -> str:
    if isinstance(x, datetime):
        return x.strftime("%b %d %H:%M") if (x.hour or x.minute) else x.strftime("%b %d")
    if isinstance(x, date):
        return x.strftime("%b %d")
    return number(float(x))


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    label = escape(title, quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{label}" class="chart"><title>{label}</title>' + "".join(body) + "</svg>"
    )


def _empty(width: int, height: int, title: str) -> str:
    return _frame(
        width,
        height,
        title,
        [f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" fill="#666">No data</text>'],
    )


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    width: int = 640,
    height: int = 240,
    x_label: Callable[[X], str] = _x_label,
    y_label: Callable[[float], str] = number,
) -> str:
    """Lines over a shared x axis (dates, datetimes or numbers), y from 0; a None y breaks the line."""
    values = [y for s in series for _, y in s.points if y is not None and math.isfinite(y)]
    xs = [_x_value(x) for s in series for x, _ in s.points]
    if not values or not xs:
        return _empty(width, height, title)
    left, right, top, bottom = 48, 12, 12 + (18 if len(series) > 1 else 0), 28
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(max(values))
    y_max = ticks[-1] or 1.0
    x_min, x_max = min(xs), max(xs)
    x_span = (x_max - x_min) or 1.0

    def px(x: X) -> float:
        return left + (_x_value(x) - x_min) / x_span * plot_w if x_max > x_min else left + plot_w / 2

    def py(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    body = []
    for tick in ticks:
        y = py(tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
            f"{escape(y_label(tick))}</text>"
        )
    first = min((x for s in series for x, _ in s.points), key=_x_value)
    last = max((x for s in series for x, _ in s.points), key=_x_value)
    for x, anchor in ((first, "start"), (last, "end")) if x_max > x_min else ((first, "middle"),):
        body.append(
            f'<text x="{px(x):.1f}" y="{height - 8}" text-anchor="{anchor}" font-size="11" fill="#555">'
            f"{escape(x_label(x))}</text>"
        )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for at, value in sorted(s.points, key=lambda p: _x_value(p[0])):
            if value is None or not math.isfinite(value):
                runs.append([])
                continue
            runs[-1].append(f"{px(at):.1f},{py(value):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                body.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif run:
                body.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}">'
                    f"<title>{escape(s.name)}</title></polyline>"
                )
        if len(series) > 1:
            lx = left + n * 140
            body.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/>')
            body.append(f'<text x="{lx + 14}" y="13" font-size="11" fill="#333">{escape(s.name)}</text>')
    return _frame(width, height, title, body)


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 640,
    bar_height: int = 22,
    value_label: Callable[[float], str] = number,
) -> str:
    """Horizontal bars, one per (label, value), longest scaled to the width; values below 0 count as 0."""
    if not items:
        return _empty(width, 80, title)
    label_w, value_w, gap = 160, 56, 6
    height = len(items) * (bar_height + gap) + gap
    high = max((max(0.0, v) for _, v in items), default=0.0) or 1.0
    body = []
    for n, (label, value) in enumerate(items):
        y = gap + n * (bar_height + gap)
        length = max(0.0, value) / high * (width - label_w - value_w)
        shown = label if len(label) <= 24 else label[:23] + "…"
        body.append(
            f'<text x="{label_w - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" font-size="12" fill="#333">'
            f"{escape(shown)}<title>{escape(label)}</title></text>"
        )
        body.append(
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{PALETTE[0]}" rx="2"/>'
        )
        body.append(
            f'<text x="{label_w + length + 4:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="12" fill="#333">'
            f"{escape(value_label(value))}</text>"
        )
    return _frame(width, height, title, body)
