"""The dashboard's bar charts, drawn as inline SVG: calls per hour today, and
per day of a report the calls the bot resolved and those that went to people.

Only numbers and escaped text go into the markup, so it is safe to insert as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

from bot.console.views import MONTH_NAMES

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


# Series of the daily chart: (key, CSS class, legend).
_DAILY_SERIES = (
    ("resolved_by_bot", "bar-bot", "resolved by the bot"),
    ("escalated", "bar-escalated", "went to people"),
)


def _day_label(day: date) -> str:
    return f"{day.day} {MONTH_NAMES[day.month - 1]}"


def daily_bars_svg(
    days: Sequence[tuple[date, int, int]],
    title: str = "Calls per day: resolved by the bot and went to people",
) -> str:
    """An accessible SVG of stacked bars, one per day: (day, resolved by the
    bot, escalated), the bot's part at the bottom."""
    totals = [bot + escalated for _day, bot, escalated in days]
    top = _axis_top(max([*totals, 1]))
    plot_width = CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_top = _MARGIN_TOP + 14  # room for the legend
    plot_height = CHART_HEIGHT - plot_top - _MARGIN_BOTTOM
    slot = plot_width / max(len(days), 1)
    bar_width = slot * 0.7
    base_y = plot_top + plot_height
    label_every = max(1, -(-len(days) // 12))
    described = "; ".join(
        f"{day.isoformat()}: {bot} resolved by the bot, {escalated} went to people"
        for day, bot, escalated in days
        if bot or escalated
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
        'role="img" aria-labelledby="daily-chart-title daily-chart-desc" id="daily-chart">',
        f'<title id="daily-chart-title">{escape(title)}</title>',
        f'<desc id="daily-chart-desc">{described or "No calls in this period."}</desc>',
        f'<line class="axis" x1="{_MARGIN_LEFT}" y1="{base_y}" '
        f'x2="{CHART_WIDTH - _MARGIN_RIGHT}" y2="{base_y}"/>',
        f'<line class="axis" x1="{_MARGIN_LEFT}" y1="{plot_top}" '
        f'x2="{_MARGIN_LEFT}" y2="{base_y}"/>',
        f'<text x="{_MARGIN_LEFT - 6}" y="{plot_top + 4}" text-anchor="end">{top}</text>',
        f'<text x="{_MARGIN_LEFT - 6}" y="{base_y}" text-anchor="end">0</text>',
    ]
    legend_x = CHART_WIDTH - _MARGIN_RIGHT - 300
    for n, (_key, css_class, legend) in enumerate(_DAILY_SERIES):
        key_x = legend_x + n * 150
        parts.append(
            f'<rect class="{css_class}" x="{key_x}" y="{_MARGIN_TOP - 9}" width="10" height="10"/>'
            f'<text x="{key_x + 14}" y="{_MARGIN_TOP}">{legend}</text>'
        )
    for index, (day, *counts) in enumerate(days):
        x = _MARGIN_LEFT + index * slot + (slot - bar_width) / 2
        y = float(base_y)
        for (key, css_class, legend), count in zip(_DAILY_SERIES, counts, strict=True):
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            parts.append(
                f'<rect class="{css_class}" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" '
                f'height="{height:.1f}" data-day="{day.isoformat()}" data-series="{key}" '
                f'data-count="{count}"><title>{_day_label(day)}: {count} {legend}</title></rect>'
            )
        if totals[index] and slot >= 16:
            parts.append(
                f'<text class="value" x="{x + bar_width / 2:.1f}" y="{y - 4:.1f}" '
                f'text-anchor="middle">{totals[index]}</text>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + bar_width / 2:.1f}" y="{CHART_HEIGHT - 6}" '
                f'text-anchor="middle">{_day_label(day)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
