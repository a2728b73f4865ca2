"""The trend chart as inline SVG, drawn on the server from our own figures.

Why hand-written SVG and not a charting library: the chart is one kind (two bars a week, tickets
made and resolved), its data a dozen numbers; a library would bring a build step or a script from
another site, and the console promises neither. The SVG is text built here with every label
escaped; colours come from the stylesheet's classes (the page's CSP allows no inline styles).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from syncer.core.triage import Week

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 12, 36


def _ticks(top: int) -> list[int]:
    """At most five round values from 0 to at least `top`."""
    step = 1
    while top / step > 4:
        step = step * 5 if str(step).startswith("2") else step * 2
    return list(range(0, top + step, step))


def weekly_bars(weeks: Sequence[Week], *, title: str) -> Markup:
    """Per ISO week, tickets made and tickets resolved side by side."""
    highest = max([1, *(w.made for w in weeks), *(w.resolved for w in weeks)])
    ticks = _ticks(highest)
    scale_top = ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(weeks))
    bar = max(2.0, min(28.0, slot * 0.35))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for value in ticks:
        y = TOP + plot_h - plot_h * value / scale_top
        parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for index, week in enumerate(weeks):
        middle = LEFT + slot * index + slot / 2
        for offset, value, kind in ((-bar, week.made, "made"), (0.0, week.resolved, "resolved")):
            height = plot_h * value / scale_top
            x, y = middle + offset, TOP + plot_h - height
            parts.append(
                f'<rect class="{kind}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}">'
                f"<title>{escape(week.week)}: {value} {kind}</title></rect>"
            )
        parts.append(f'<text x="{middle:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                     f"{escape(week.week.split('-')[-1])}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built here, every piece of text escaped above
