"""Inline SVG line charts for the page (no JavaScript, no CDN): a pure function from points to markup."""

from __future__ import annotations

import time
from html import escape

from markupsafe import Markup


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_chart(points: list[tuple[float, float]], *, title: str, x_label: str = "", x_is_time: bool = False,
               width: int = 1080, height: int = 220, empty: str = "no data yet") -> Markup:
    """A step-free line chart with dots, axis ticks and a title, as an <svg> element."""
    if not points:
        return Markup(f'<p class="muted">{escape(empty)}</p>')
    left, right, top, bottom = 64, 40, 28, 34
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y1 = y0 + 1
    pad = (y1 - y0) * 0.08
    y1 += pad
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" preserveAspectRatio="xMinYMin meet" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    for y in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" class="tick" text-anchor="end">{_fmt(y)}</text>')
    xt = _ticks(x0, x1, 3) if x_is_time else sorted(set(xs))[:12]
    clock = "%H:%M" if x1 - x0 >= 600 else "%H:%M:%S"
    for x in xt:
        label = time.strftime(clock, time.localtime(x)) if x_is_time else _fmt(x)
        parts.append(f'<text x="{sx(x):.1f}" y="{height - bottom + 16}" class="tick" text-anchor="middle">{label}</text>')
    if x_label:
        parts.append(f'<text x="{width - right}" y="{height - 4}" class="tick" text-anchor="end">{escape(x_label)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    parts.append(f'<path d="{path}" class="line"/>')
    for x, y in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" class="dot"><title>{_fmt(y)}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))
