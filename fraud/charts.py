"""Small server-rendered SVG charts for the finance desk: plain data in, SVG markup out.

No JavaScript and no Flask. Every text that reaches the markup is escaped here (partner codes
and names are user data), so the result is returned as ``Markup`` for templates to embed.
Colours come with a second cue (shape, dash pattern), and each chart carries a ``<title>``
and ``<desc>`` that screen readers announce; the pages add a table with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 56
Y_CAP = 10.0  # O/E above this is drawn on the top edge (its title tells the real value)
INK, MUTED, GRID = "#1b1f24", "#5b6470", "#dde1e6"
DOT, FLAGGED, HIGHLIGHT, EXPECTED = "#5b7fbf", "#b3261e", "#0b5fff", "#8a5a00"


@dataclass(frozen=True)
class FunnelDot:
    label: str  # partner code
    expected: float  # x: expected count for its mix
    ratio: float  # y: observed / expected
    hover: str = ""  # extra words for the dot's tooltip
    flagged: bool = False
    highlight: bool = False


@dataclass(frozen=True)
class Limit:
    label: str  # e.g. "95%"
    expected: Sequence[float]
    lower: Sequence[float]
    upper: Sequence[float]


@dataclass(frozen=True)
class TrendPoint:
    month: str  # 'YYYY-MM'
    claims: float
    observed: float
    expected: float
    flagged: bool = False


def _num(value: float) -> str:
    return f"{value:.1f}"


def _open(chart_id: str, title: str, desc: str) -> list[str]:
    cid = escape(chart_id)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{cid}-title {cid}-desc" font-family="system-ui, '
        f'sans-serif" font-size="12">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]


def no_data_svg(chart_id: str, title: str, message: str = "No data yet") -> Markup:
    """An empty chart that says so, instead of blank axes."""
    parts = _open(chart_id, title, message)
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="{MUTED}" '
                 f'font-size="16">{escape(message)}</text></svg>')
    return Markup("\n".join(parts))


def _finite(*values: float) -> bool:
    try:
        return all(math.isfinite(value) for value in values)
    except TypeError:  # None or text where a number belongs
        return False


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between low and high; only powers of ten when that would be crowded."""
    ticks = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for step in (1, 2, 5):
            value = step * 10.0 ** power
            if low <= value <= high:
                ticks.append(value)
    if len(ticks) > 8:
        ticks = [t for t in ticks if math.isclose(math.log10(t), round(math.log10(t)))]
    return ticks


def _linear_ticks(high: float) -> list[float]:
    step = 0.5 if high <= 3 else 1.0 if high <= 6 else 2.0
    return [i * step for i in range(int(high / step) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}" if value >= 0.01 else f"{value:.0e}"


def _path(points: Iterable[tuple[float, float] | None]) -> str:
    """An SVG path through the points; None breaks the line."""
    commands, pen_down = [], False
    for point in points:
        if point is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{_num(point[0])},{_num(point[1])}")
        pen_down = True
    return " ".join(commands)


def funnel_svg(dots: Sequence[FunnelDot], limits: Sequence[Limit], *, chart_id: str = "funnel",
               title: str = "DOA funnel plot", measure: str = "DOA claims") -> Markup:
    """Funnel plot: each partner's O/E against its expected count, with control limits."""
    dots = [d for d in dots if _finite(d.expected, d.ratio) and d.expected > 0 and d.ratio >= 0]
    if not dots:
        return no_data_svg(chart_id, title, "No partner has claims to compare yet")
    low = min(d.expected for d in dots) / 2
    high = max(d.expected for d in dots) * 2
    y_high = min(Y_CAP, max(2.0, max(d.ratio for d in dots) * 1.1))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + plot_w * (math.log10(value) - math.log10(low)) / math.log10(high / low)

    def y(value: float) -> float:  # limits may leave the plot (clipped); dots stay inside
        return TOP + plot_h * (1 - value / y_high)

    flagged = sum(d.flagged for d in dots)
    highlighted = [d.label for d in dots if d.highlight]
    desc = (f"{len(dots)} partners. Horizontal: expected {measure} for each partner's product "
            f"mix (log scale). Vertical: observed divided by expected; 1 means as expected. "
            f"Curves: 95% and 99.8% control limits; dots above the upper curves are unusually "
            f"high. {flagged} flagged partner(s) are drawn with a square frame."
            + (f" Highlighted: {', '.join(highlighted)}." if highlighted else ""))
    cid = escape(chart_id)
    parts = _open(chart_id, title, desc)
    parts.append(f'<clipPath id="{cid}-plot"><rect x="{LEFT}" y="{TOP}" width="{plot_w}" '
                 f'height="{plot_h}"/></clipPath>')
    for tick in _log_ticks(low, high):
        parts.append(f'<line x1="{_num(x(tick))}" x2="{_num(x(tick))}" y1="{TOP}" '
                     f'y2="{TOP + plot_h}" stroke="{GRID}"/>'
                     f'<text x="{_num(x(tick))}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                     f'fill="{MUTED}">{_tick_text(tick)}</text>')
    for tick in _linear_ticks(y_high):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_num(y(tick))}" '
                     f'y2="{_num(y(tick))}" stroke="{GRID}"/>'
                     f'<text x="{LEFT - 6}" y="{_num(y(tick) + 4)}" text-anchor="end" '
                     f'fill="{MUTED}">{tick:g}</text>')
    parts.append(f'<g clip-path="url(#{cid}-plot)" fill="none">')
    for limit, dash in zip(limits, ("6 4", "2 3"), strict=False):
        for side in (limit.lower, limit.upper):
            line = _path((x(e), y(value)) if _finite(e, value) and e > 0 else None
                         for e, value in zip(limit.expected, side, strict=True))
            if line:
                parts.append(f'<path class="limit" d="{line}" stroke="{MUTED}" '
                             f'stroke-dasharray="{dash}" stroke-width="1.5">'
                             f'<title>{escape(limit.label)} control limit</title></path>')
    parts.append(f'<line class="target" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_num(y(1))}" '
                 f'y2="{_num(y(1))}" stroke="{INK}" stroke-width="1.5"/></g>')
    for dot in sorted(dots, key=lambda d: (d.highlight, d.flagged)):  # highlighted on top
        px, py = x(dot.expected), y(min(dot.ratio, y_high))
        tip = f"{dot.label}: O/E {dot.ratio:.2f}" + (f" ({dot.hover})" if dot.hover else "")
        colour = HIGHLIGHT if dot.highlight else FLAGGED if dot.flagged else DOT
        classes = "dot" + (" flagged" if dot.flagged else "") + (" highlight" if dot.highlight
                                                                 else "")
        parts.append(f'<g class="{classes}"><title>{escape(tip)}'
                     f'{" - flagged" if dot.flagged else ""}</title>')
        if dot.flagged:  # a square frame: flagged is told by shape, not colour alone
            parts.append(f'<rect x="{_num(px - 7)}" y="{_num(py - 7)}" width="14" height="14" '
                         f'fill="none" stroke="{FLAGGED}" stroke-width="2"/>')
        radius, stroke = (6, INK) if dot.highlight else (4, "#fff")
        # Slightly see-through, so that partners on the same spot show as a darker dot.
        parts.append(f'<circle cx="{_num(px)}" cy="{_num(py)}" r="{radius}" fill="{colour}" '
                     f'fill-opacity="0.8" stroke="{stroke}" stroke-width="1.5"/>')
        if dot.highlight:
            parts.append(f'<text x="{_num(px + 10)}" y="{_num(py - 8)}" font-weight="700" '
                         f'fill="{INK}">{escape(dot.label)}</text>')
        parts.append("</g>")
    parts.append(_axes(plot_w, plot_h, f"Expected {measure} for the product mix (log scale)",
                       "Observed / expected"))
    parts.append(_legend([("dot", "partner"), ("frame", "flagged"), ("solid", "as expected"),
                          ("6 4", "95% limits"), ("2 3", "99.8% limits")]))
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _axes(plot_w: float, plot_h: float, x_label: str, y_label: str) -> str:
    return (f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{INK}"/>'
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
            f'stroke="{INK}"/>'
            f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 24}" text-anchor="middle" '
            f'fill="{INK}">{escape(x_label)}</text>'
            f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" fill="{INK}" '
            f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>')


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    """A one-line legend along the top edge; each key is a dot, a frame or a dash pattern."""
    parts, at = ['<g class="legend">'], LEFT
    for key, label in entries:
        if key == "dot":
            # A path, not a <circle>: the plot keeps exactly one circle per partner.
            parts.append(f'<path d="M{at + 2},14 a4,4 0 1,0 8,0 a4,4 0 1,0 -8,0" '
                         f'fill="{DOT}"/>')
        elif key == "frame":
            parts.append(f'<rect x="{at}" y="8" width="12" height="12" fill="none" '
                         f'stroke="{FLAGGED}" stroke-width="2"/>')
        elif key == "bar":
            parts.append(f'<rect x="{at}" y="8" width="12" height="12" fill="{GRID}"/>')
        elif key == "shade":
            parts.append(f'<rect x="{at}" y="8" width="12" height="12" fill="#fce8e6" '
                         f'stroke="{FLAGGED}" stroke-dasharray="2 2"/>')
        else:
            colour = EXPECTED if key == "4 3" else INK if key == "solid" else MUTED
            dash = "" if key == "solid" else f' stroke-dasharray="{key}"'
            parts.append(f'<line x1="{at}" x2="{at + 18}" y1="14" y2="14" stroke="{colour}" '
                         f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{at + 24}" y="18" fill="{INK}">{escape(label)}</text>')
        at += 36 + 7 * len(label)
    parts.append("</g>")
    return "".join(parts)


def trend_svg(points: Sequence[TrendPoint], *, chart_id: str = "trend",
              title: str = "DOA per month", measure: str = "DOA claims") -> Markup:
    """Monthly observed vs expected (lines, top) over claims volume (bars, bottom)."""
    points = [p for p in points if _finite(p.claims, p.observed, p.expected)]
    if not points or not any(p.claims for p in points):
        return no_data_svg(chart_id, title, "No claims yet")
    plot_w = WIDTH - LEFT - RIGHT
    top_h, gap = 170, 40
    bars_top = TOP + top_h + gap
    bars_h = HEIGHT - BOTTOM - bars_top
    band = plot_w / len(points)
    y_high = max(1.0, max(max(p.observed, p.expected) for p in points) * 1.1)
    c_high = max(p.claims for p in points)

    def cx(i: int) -> float:
        return LEFT + band * (i + 0.5)

    def y(value: float) -> float:
        return TOP + top_h * (1 - value / y_high)

    flagged = [p.month for p in points if p.flagged]
    desc = (f"{len(points)} months from {points[0].month} to {points[-1].month}. Top: "
            f"{measure} observed (solid line) and expected for the product mix from peers' "
            f"rates that month (dashed line). Bottom: claims per month (bars)."
            + (f" Flagged months (shaded): {', '.join(flagged)}." if flagged else ""))
    parts = _open(chart_id, title, desc)
    for first, last in _runs([p.flagged for p in points]):
        span = points[first].month + (f" to {points[last].month}" if last > first else "")
        parts.append(f'<rect class="flagged-months" x="{_num(LEFT + band * first)}" y="{TOP}" '
                     f'width="{_num(band * (last - first + 1))}" height="{top_h}" '
                     f'fill="#fce8e6" stroke="{FLAGGED}" stroke-dasharray="2 2">'
                     f'<title>{escape(span)}: in a flagged window</title></rect>')
    for tick in _linear_ticks(y_high) if y_high <= 12 else _count_ticks(y_high):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_num(y(tick))}" '
                     f'y2="{_num(y(tick))}" stroke="{GRID}"/><text x="{LEFT - 6}" '
                     f'y="{_num(y(tick) + 4)}" text-anchor="end" fill="{MUTED}">{tick:g}</text>')
    for series, colour, dash in (("expected", EXPECTED, ' stroke-dasharray="4 3"'),
                                 ("observed", INK, "")):
        line = _path((cx(i), y(getattr(p, series))) for i, p in enumerate(points))
        parts.append(f'<path class="{series}" d="{line}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
    for i, point in enumerate(points):
        parts.append(f'<circle cx="{_num(cx(i))}" cy="{_num(y(point.observed))}" r="3" '
                     f'fill="{INK}"><title>{escape(point.month)}: {point.observed:g} observed, '
                     f'{point.expected:.1f} expected, {point.claims:g} claims</title></circle>')
        height = bars_h * point.claims / c_high if c_high else 0
        parts.append(f'<rect class="bar" x="{_num(LEFT + band * i + band * 0.15)}" '
                     f'y="{_num(bars_top + bars_h - height)}" width="{_num(band * 0.7)}" '
                     f'height="{_num(height)}" fill="{GRID}" stroke="{MUTED}">'
                     f'<title>{escape(point.month)}: {point.claims:g} claims</title></rect>')
    every = max(1, math.ceil(len(points) / 8))  # month labels need about 70 px each
    for i, point in enumerate(points):
        if i % every == 0:
            parts.append(f'<text x="{_num(cx(i))}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle" fill="{MUTED}">{escape(point.month)}</text>')
    parts.append(f'<text x="{LEFT}" y="{bars_top - 6}" fill="{MUTED}">Claims per month '
                 f'(max {c_high:g})</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + top_h}" '
                 f'y2="{TOP + top_h}" stroke="{INK}"/>'
                 f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{bars_top + bars_h}" '
                 f'y2="{bars_top + bars_h}" stroke="{INK}"/>')
    legend = [("solid", "observed"), ("4 3", "expected"), ("bar", "claims")]
    parts.append(_legend(legend + ([("shade", "flagged")] if flagged else [])))
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _runs(marks: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive True marks."""
    runs: list[tuple[int, int]] = []
    for i, marked in enumerate(marks):
        if not marked:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _count_ticks(high: float) -> list[float]:
    step = 10 ** math.floor(math.log10(high / 4))
    step *= 5 if high / step > 20 else 2 if high / step > 8 else 1
    return [i * step for i in range(int(high / step) + 1)]
