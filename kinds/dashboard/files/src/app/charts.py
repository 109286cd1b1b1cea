# Yours to edit: `copier update` never overwrites this file.
"""Server-rendered SVG charts: no JavaScript, no CDN, no build step; Jinja escapes the text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    """Geometry of a vertical bar chart; pages/_bar_chart.html draws it."""

    title: str
    bars: list[Bar]
    width: int
    height: int
    baseline: float
    max_value: float


def bar_chart(
    title: str, data: list[tuple[str, float]], width: int = 560, height: int = 240
) -> BarChart:
    top, bottom, side = 24, 40, 16
    peak = max((v for _, v in data), default=0) or 1
    slot = (width - 2 * side) / max(len(data), 1)
    plot = height - top - bottom
    bars = []
    for i, (label, value) in enumerate(data):
        bar_h = plot * (value / peak)
        bars.append(
            Bar(
                label=label,
                value=value,
                x=side + i * slot + slot * 0.15,
                y=top + plot - bar_h,
                width=slot * 0.7,
                height=bar_h,
            )
        )
    return BarChart(
        title=title, bars=bars, width=width, height=height, baseline=top + plot, max_value=peak
    )
