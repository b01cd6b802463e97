"""Hand-written inline SVG charts for the report: no script, no external file, no dependency.

Every text in a chart is escaped: labels come from the store (rule names, detectors, subjects).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_FONT = 'font-family="system-ui, sans-serif" font-size="12"'
_BAR = "#3b6ea5"
_WIDTH = 640


def _nice_max(value: int) -> int:
    """The axis maximum: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if value <= step * m:
                return step * m
        step *= 10


def hbars(title: str, items: Sequence[tuple[str, int]]) -> str:
    """A horizontal bar chart: one labelled bar per item, its value at the end."""
    if not items:
        return _empty(title)
    label_w, row_h, top = 190, 22, 8
    top_value = _nice_max(max(v for _, v in items))
    bar_room = _WIDTH - label_w - 70
    height = top + row_h * len(items) + 8
    parts = [_open(title, height)]
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = round(max(bar_room * value / top_value, 2 if value else 0), 1)  # a small count stays visible
        short = label if len(label) <= 28 else label[:27] + "\u2026"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="{_BAR}">'
            f"<title>{escape(label)}: {value:,}</title></rect>"
            f'<text x="{label_w + w + 5}" y="{y + 15}">{value:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def columns(title: str, items: Sequence[tuple[str, int]]) -> str:
    """A vertical bar chart over time: one column per bucket, every n-th label shown below."""
    if not items:
        return _empty(title)
    left, top, plot_h, bottom = 70, 10, 180, 64
    plot_w = _WIDTH - left - 10
    top_value = _nice_max(max(v for _, v in items))
    slot = plot_w / len(items)
    bar_w = round(max(min(slot * 0.8, 48), 1), 1)
    every = max(1, round(len(items) / 12))
    height = top + plot_h + bottom
    parts = [_open(title, height)]
    for frac in (0, 0.5, 1):
        if (top_value * frac) % 1:
            continue  # half of 1: no gridline at a fraction of a session
        y = round(top + plot_h * (1 - frac), 1)
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{_WIDTH - 10}" y2="{y}" stroke="#ccc"/>'
            f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{int(top_value * frac):,}</text>'
        )
    for i, (label, value) in enumerate(items):
        h = round(plot_h * value / top_value, 1)
        mid = left + (i + 0.5) * slot
        x = round(mid - bar_w / 2, 1)
        parts.append(
            f'<rect x="{x}" y="{round(top + plot_h - h, 1)}" width="{bar_w}"'
            f' height="{h}" fill="{_BAR}"><title>{escape(label)}: {value:,}</title></rect>'
        )
        if i % every == 0:
            lx, ly = round(mid + 4, 1), top + plot_h + 12
            parts.append(
                f'<text x="{lx}" y="{ly}" text-anchor="end" transform="rotate(-35 {lx} {ly})">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _open(title: str, height: int) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}"'
        f' width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" {_FONT}>'
        f"<title>{escape(title)}</title>"
    )


def _empty(title: str) -> str:
    return _open(title, 30) + '<text x="8" y="20" fill="#666">nothing in this range</text></svg>'
