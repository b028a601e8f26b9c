"""Charts as inline SVG markup, drawn on the server so the admin needs no JavaScript.

Every function returns safe markup: text passes through format_html, which escapes it.
Each chart is one <svg role="img"> whose aria-label and <title> carry a summary with the
numbers, and each bar has its own <title> that browsers show as a tooltip. Text uses
currentColor, so the charts follow the admin's light and dark themes.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

# Colours readable on both the light and the dark admin theme.
BLUE = "#3f8fd2"
RED = "#d9534f"
DARK_BLUE = "#205d8f"
LIGHT_BLUE = "#9fc9ea"

# Maximum number of labels under the x axis, so that they never overlap.
X_LABELS_SHOWN = 8
# Maximum characters of a row label in a bar chart. Longer labels end in an ellipsis.
ROW_LABEL_CHARACTERS = 18


@dataclass(frozen=True)
class Layer:
    """One series of a stacked column chart: its name in the legend, values and colour."""

    name: str
    values: Sequence[float]
    colour: str


@dataclass(frozen=True)
class PercentileRow:
    """One bar of a percentile chart: a label and its p50 and p95 (None when unknown)."""

    label: str
    p50: float | None
    p95: float | None


def nice_ceiling(value: float) -> float:
    """Return the smallest of 1, 2, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= value:
            return multiple * power
    return 10 * power


def _ticks(ceiling: float, *, integer: bool) -> list[float]:
    """Return the axis ticks from 0 to `ceiling`, whole numbers only when `integer`."""
    for divisions in (4, 2, 1):
        step = ceiling / divisions
        if not integer or step == int(step):
            return [step * index for index in range(divisions + 1)]
    return [0, ceiling]


def number_format(value: float) -> str:
    if value == int(value):
        return str(int(value))
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def seconds_format(value: float | None) -> str:
    """Format a duration in seconds with its unit, or a dash when unknown."""
    if value is None:
        return "–"
    return gettext("%(seconds)s s") % {"seconds": number_format(value)}


def _svg_open(*, width: int, height: int, summary: str) -> SafeString:
    return format_html(
        '<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}" '
        'viewBox="0 0 {} {}" width="{}" height="{}" '
        'style="max-width:100%;height:auto;font:11px sans-serif;color:inherit">'
        "<title>{}</title>",
        summary,
        width,
        height,
        width,
        height,
        summary,
    )


def _legend(items: Sequence[tuple[str, str]], *, x: float, y: float) -> SafeString:
    """Draw coloured swatches with names, left to right, starting at (x, y)."""
    parts = []
    for name, colour in items:
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" fill="currentColor">{}</text>',
                round(x, 1), y, colour, round(x + 14, 1), y + 9, name,
            )
        )
        # An estimate of the text's width: 7 px per character at 11 px.
        x += 14 + 7 * len(name) + 16
    return mark_safe("".join(parts))


def column_chart(
    *,
    labels: Sequence[str],
    layers: Sequence[Layer],
    summary: str,
    x_title: str,
    y_title: str,
    width: int = 640,
    height: int = 220,
) -> SafeString:
    """Draw stacked columns, one per label, the first layer at the bottom.

    Values are counts, so the y axis has whole-number ticks. `summary` is what a screen
    reader says for the whole chart; it should state the totals.
    """
    left, right, top, bottom = 48, 12, 26, 44
    plot_width = width - left - right
    plot_height = height - top - bottom
    count = max(len(labels), 1)
    totals = [sum(layer.values[index] for layer in layers) for index in range(len(labels))]
    ceiling = nice_ceiling(max(totals, default=0))
    slot = plot_width / count
    bar_width = max(slot * 0.8, 1)

    def y_of(value: float) -> float:
        return top + plot_height - value / ceiling * plot_height

    parts = [_svg_open(width=width, height=height, summary=summary)]
    parts.append(_legend([(layer.name, layer.colour) for layer in layers], x=left, y=4))

    # Grid lines and y ticks
    for tick in _ticks(ceiling, integer=True):
        y = round(y_of(tick), 1)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.2"/>'
                '<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>',
                left, width - right, y, y, left - 4, y + 4, number_format(tick),
            )
        )

    # Columns, with a tooltip per column that lists every layer's value
    for index, label in enumerate(labels):
        x = round(left + index * slot + (slot - bar_width) / 2, 1)
        tooltip = "; ".join(f"{layer.name}: {number_format(layer.values[index])}" for layer in layers)
        parts.append(format_html("<g><title>{}: {}</title>", label, tooltip))
        base = 0.0
        for layer in layers:
            value = layer.values[index]
            if value > 0:
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
                        x, round(y_of(base + value), 1), round(bar_width, 1),
                        round(value / ceiling * plot_height, 1), layer.colour,
                    )
                )
            base += value
        parts.append(mark_safe("</g>"))

    # X labels, every n-th, and the axis titles
    every = math.ceil(count / X_LABELS_SHOWN)
    for index in range(0, len(labels), every):
        x = round(left + index * slot + slot / 2, 1)
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>',
                x, top + plot_height + 14, labels[index],
            )
        )
    parts.append(
        format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.6"/>'
            '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>'
            '<text x="12" y="{}" text-anchor="middle" fill="currentColor" transform="rotate(-90 12 {})">{}</text>',
            left, width - right, top + plot_height, top + plot_height,
            left + plot_width / 2, height - 6, x_title,
            top + plot_height / 2, top + plot_height / 2, y_title,
        )
    )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def percentile_chart(
    *, rows: Sequence[PercentileRow], summary: str, x_title: str, width: int = 640
) -> SafeString:
    """Draw one horizontal bar per row: p95 in light blue with p50 in dark blue over it.

    Values are seconds on a shared axis from 0. A row without figures shows a dash.
    """
    left, right, top, bottom, row_height = 130, 150, 24, 36, 28
    plot_width = width - left - right
    height = top + row_height * max(len(rows), 1) + bottom
    known = [value for row in rows for value in (row.p50, row.p95) if value is not None]
    ceiling = nice_ceiling(max(known, default=0))

    def x_of(value: float) -> float:
        return left + value / ceiling * plot_width

    parts = [_svg_open(width=width, height=height, summary=summary)]
    parts.append(_legend([("p50", DARK_BLUE), ("p95", LIGHT_BLUE)], x=left, y=4))
    axis_y = top + row_height * max(len(rows), 1)
    for tick in _ticks(ceiling, integer=False):
        x = round(x_of(tick), 1)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.2"/>'
                '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>',
                x, x, top, axis_y, x, axis_y + 14, number_format(tick),
            )
        )

    for index, row in enumerate(rows):
        y = top + index * row_height + 4
        label = row.label
        if len(label) > ROW_LABEL_CHARACTERS:
            label = label[: ROW_LABEL_CHARACTERS - 1] + "…"
        values = gettext("p50 %(p50)s, p95 %(p95)s") % {
            "p50": seconds_format(row.p50),
            "p95": seconds_format(row.p95),
        }
        parts.append(
            format_html(
                '<g><title>{}: {}</title><text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>',
                row.label, values, left - 6, y + 14, label,
            )
        )
        for value, colour in ((row.p95, LIGHT_BLUE), (row.p50, DARK_BLUE)):
            if value is not None:
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="20" fill="{}"/>',
                        left, y, round(max(x_of(value) - left, 1), 1), colour,
                    )
                )
        parts.append(
            format_html(
                '<text x="{}" y="{}" fill="currentColor">{}</text></g>',
                width - right + 6, y + 14, values,
            )
        )

    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>',
            left + plot_width / 2, height - 4, x_title,
        )
    )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))

