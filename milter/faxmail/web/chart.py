"""The page's chart, drawn on the server as SVG: faxes per day (bars: outgoing, received) and
the estimated line minutes (a line on the right-hand scale). No script and no remote resource:
the Content-Security-Policy allows neither, and the picture must work offline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from faxmail.web.views import Day

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 52, 28, 36  # room for the scales and the day labels
OUTGOING, RECEIVED, MINUTES, GRID, TEXT = "#2b6cb0", "#90cdf4", "#c05621", "#e2e8f0", "#4a5568"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at least `value` (1 for nothing): a scale's top."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    raise AssertionError("unreachable")


def _number(value: float) -> str:
    return f"{value:g}"


def daily_chart(days: Sequence[Day]) -> Markup:
    """The SVG element for `days` (oldest first), to be placed in the page as it is."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    faxes_top = nice_ceiling(max([max(d.outgoing, d.received) for d in days] or [0]))
    minutes_top = nice_ceiling(max([d.line_minutes for d in days] or [0]))
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.36, 1.0)

    def y_faxes(value: float) -> float:
        return TOP + plot_h * (1 - value / faxes_top)

    def y_minutes(value: float) -> float:
        return TOP + plot_h * (1 - value / minutes_top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">Faxes and line minutes per day</title>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}"'
            f' font-size="11">{_number(faxes_top * fraction)}</text>'
            f'<text x="{WIDTH - RIGHT + 6}" y="{y + 4:.1f}" fill="{MINUTES}"'
            f' font-size="11">{_number(minutes_top * fraction)}</text>'
        )
    label_every = max(1, math.ceil(len(days) / 12))
    points = []
    for n, day in enumerate(days):
        x = LEFT + slot * n + slot / 2
        when = escape(day.day.isoformat())
        for offset, count, colour, what in (
            (-bar, day.outgoing, OUTGOING, "outgoing"),
            (0.0, day.received, RECEIVED, "received"),
        ):
            y = y_faxes(count)
            parts.append(
                f'<rect class="{what}" x="{x + offset:.1f}" y="{y:.1f}" width="{bar:.1f}"'
                f' height="{TOP + plot_h - y:.1f}" fill="{colour}">'
                f"<title>{when}: {count} {what}</title></rect>"
            )
        points.append(f"{x:.1f},{y_minutes(day.line_minutes):.1f}")
        if n % label_every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle"'
                f' fill="{TEXT}" font-size="11">{escape(day.day.strftime("%m-%d"))}</text>'
            )
    if points:
        parts.append(
            f'<polyline class="minutes" points="{" ".join(points)}" fill="none"'
            f' stroke="{MINUTES}" stroke-width="2"/>'
        )
    legend = (
        (OUTGOING, "outgoing faxes"),
        (RECEIVED, "received faxes"),
        (MINUTES, "line minutes (outgoing, estimated)"),
    )
    x = LEFT
    for colour, text in legend:
        parts.append(
            f'<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="17" fill="{TEXT}" font-size="11">{escape(text)}</text>'
        )
        x += 24 + 7 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, ISO dates and our own words only
