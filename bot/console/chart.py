"""The dashboard's bar chart of calls per hour, drawn as inline SVG.

Only numbers and escaped text go into the markup, so it is safe to insert as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

CHART_WIDTH = 720
CHART_HEIGHT = 240
_MARGIN_LEFT = 36
_MARGIN_BOTTOM = 24
_MARGIN_TOP = 16
_MARGIN_RIGHT = 8


def hourly_counts(by_hour: Mapping[int, int] | Sequence[int]) -> list[int]:
    """Twenty-four counts, hour 0 to 23, from a mapping or a sequence."""
    if isinstance(by_hour, Mapping):
        return [int(by_hour.get(hour, 0)) for hour in range(24)]
    counts = [int(value) for value in by_hour][:24]
    return counts + [0] * (24 - len(counts))


def _axis_top(largest: int) -> int:
    """A round ceiling for the y axis: 1, 2, 5, 10, 20, 50 …"""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= largest:
                return step * factor
        step *= 10


def hourly_bars_svg(counts: Sequence[int], title: str = "Calls per hour today") -> str:
    """An accessible SVG bar chart of 24 hourly counts."""
    counts = hourly_counts(counts)
    top = _axis_top(max(max(counts), 1))
    plot_width = CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_height = CHART_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM
    slot = plot_width / 24
    bar_width = slot * 0.7
    base_y = _MARGIN_TOP + plot_height
    described = ", ".join(f"{hour:02d}:00 {count}" for hour, count in enumerate(counts) if count)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
        'role="img" aria-labelledby="chart-title chart-desc" id="hourly-chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{described or "No calls yet today."}</desc>',
        f'<line class="axis" x1="{_MARGIN_LEFT}" y1="{base_y}" '
        f'x2="{CHART_WIDTH - _MARGIN_RIGHT}" y2="{base_y}"/>',
        f'<line class="axis" x1="{_MARGIN_LEFT}" y1="{_MARGIN_TOP}" '
        f'x2="{_MARGIN_LEFT}" y2="{base_y}"/>',
        f'<text x="{_MARGIN_LEFT - 6}" y="{_MARGIN_TOP + 4}" text-anchor="end">{top}</text>',
        f'<text x="{_MARGIN_LEFT - 6}" y="{base_y}" text-anchor="end">0</text>',
    ]
    for hour, count in enumerate(counts):
        x = _MARGIN_LEFT + hour * slot + (slot - bar_width) / 2
        height = plot_height * count / top
        if count:
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{base_y - height:.1f}" '
                f'width="{bar_width:.1f}" height="{height:.1f}" data-hour="{hour}" '
                f'data-count="{count}"><title>{hour:02d}:00, {count} calls</title></rect>'
                f'<text class="value" x="{x + bar_width / 2:.1f}" y="{base_y - height - 4:.1f}" '
                f'text-anchor="middle">{count}</text>'
            )
        if hour % 3 == 0:
            parts.append(
                f'<text x="{x + bar_width / 2:.1f}" y="{CHART_HEIGHT - 6}" '
                f'text-anchor="middle">{hour:02d}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
