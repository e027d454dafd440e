"""Inline SVG charts, drawn in Python: no JavaScript, no external file, no font download.

Every function returns :class:`markupsafe.Markup` that the template inserts as-is, so this
module is the one place where markup is produced from data. The rule that keeps it safe:
every piece of text and every attribute value goes through :func:`~rai_harness.report.safe.esc`
(``_Svg`` does it; nothing else builds tags), and numbers are formatted by this module.
Provider ids, group names and axis labels can come from untrusted datasets and configs.

Charts are sized by ``viewBox`` and scale with the page (CSS ``width: 100%``); colours come
from the Okabe-Ito palette, which stays distinguishable under the common colour-vision
deficiencies, and every series also has a marker shape or a text label, so no chart relies
on colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from rai_harness.report.safe import esc
from rai_harness.stats import Estimate

__all__ = [
    "PALETTE",
    "SHAPES",
    "BarSeries",
    "CurvePoint",
    "CurveSeries",
    "HistogramSeries",
    "StackedRow",
    "TradeoffPoint",
    "curve_chart",
    "grouped_bars",
    "histogram_panels",
    "nice_ticks",
    "pareto_front",
    "stacked_bars",
    "tradeoff_chart",
]

#: Okabe-Ito, reordered so neighbouring series contrast most; grey and navy extend it.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#666666",
    "#332288",
)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "triangle-down", "cross")

_AXIS = "#8c959f"
_GRID = "#e6e8eb"
_TEXT = "#3d444d"
_MUTED = "#6e7781"
_FONT = 12  # px at 100% scale


def _num(v: float) -> str:
    """Compact coordinates: one decimal is finer than a screen pixel at the sizes used."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


class _Svg:
    """A tiny SVG writer that escapes every text and attribute value."""

    def __init__(self, width: float, height: float, label: str) -> None:
        self.width = width
        self.height = height
        self.label = label
        self.parts: list[str] = []

    @staticmethod
    def _attrs(attrs: dict[str, object]) -> str:
        out = []
        for key, value in attrs.items():
            if value is None:
                continue
            name = key.rstrip("_").replace("_", "-")
            text = _num(value) if isinstance(value, float) else str(value)
            out.append(f' {name}="{esc(text)}"')
        return "".join(out)

    def tag(self, name: str, text: str | None = None, /, **attrs: object) -> None:
        """Append one element; ``text`` becomes its (escaped) content."""
        if text is None:
            self.parts.append(f"<{name}{self._attrs(attrs)}/>")
        else:
            self.parts.append(f"<{name}{self._attrs(attrs)}>{esc(text)}</{name}>")

    def open(self, name: str, /, **attrs: object) -> None:
        """Open a container element (``g``)."""
        self.parts.append(f"<{name}{self._attrs(attrs)}>")

    def close(self, name: str) -> None:
        """Close a container element."""
        self.parts.append(f"</{name}>")

    def text(self, x: float, y: float, text: str, /, **attrs: object) -> None:
        """A text label (escaped)."""
        attrs.setdefault("font_size", _FONT)
        attrs.setdefault("fill", _TEXT)
        if attrs.pop("halo", False):
            # A white outline drawn under the glyphs keeps a label legible over bars and lines.
            attrs.update(stroke="#ffffff", stroke_width=3, stroke_linejoin="round", paint_order="stroke")
        self.tag("text", text, x=x, y=y, **attrs)

    def line(self, x1: float, y1: float, x2: float, y2: float, /, **attrs: object) -> None:
        """A straight line."""
        attrs.setdefault("stroke", _AXIS)
        self.tag("line", x1=x1, y1=y1, x2=x2, y2=y2, **attrs)

    def render(self) -> Markup:
        """The ``<svg>`` element."""
        w, h = _num(self.width), _num(self.height)
        label = esc(self.label)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
            f'width="{w}" height="{h}" role="img" aria-label="{label}" '
            f'font-family="inherit"><title>{label}</title>'
        )
        return Markup(head + "".join(self.parts) + "</svg>")


def _legend(svg: _Svg, x: float, y: float, items: Sequence[tuple[str, str]], max_x: float) -> float:
    """Colour swatches with names in a row (wrapping); returns the y below the legend."""
    cx = x
    for name, color in items:
        label = _truncate(name, 28)
        w = 22 + 7.0 * len(label)
        if cx + w > max_x and cx > x:
            cx, y = x, y + 16
        svg.tag("rect", x=cx, y=y - 9, width=10, height=10, rx=2, fill=color)
        svg.text(cx + 14, y, label, font_size=12)
        cx += w + 10
    return y + 10


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-6:
        ticks.append(round(v, 12))
        v += step
    if ticks[-1] < hi - 1e-12:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


@dataclass(frozen=True)
class _Linear:
    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: float) -> float:
        span = (self.d1 - self.d0) or 1.0
        return self.r0 + (v - self.d0) / span * (self.r1 - self.r0)


def _marker(svg: _Svg, shape: str, x: float, y: float, r: float, color: str, filled: bool) -> None:
    fill = color if filled else "#ffffff"
    common: dict[str, object] = {"fill": fill, "stroke": color, "stroke_width": 1.8}
    if shape == "square":
        svg.tag("rect", x=x - r, y=y - r, width=2 * r, height=2 * r, **common)
    elif shape in ("triangle", "triangle-down"):
        s = 1 if shape == "triangle" else -1
        pts = f"{_num(x)},{_num(y - s * r * 1.2)} {_num(x - r * 1.1)},{_num(y + s * r * 0.8)} {_num(x + r * 1.1)},{_num(y + s * r * 0.8)}"
        svg.tag("polygon", points=pts, **common)
    elif shape == "diamond":
        r2 = r * 1.25
        pts = f"{_num(x)},{_num(y - r2)} {_num(x + r2)},{_num(y)} {_num(x)},{_num(y + r2)} {_num(x - r2)},{_num(y)}"
        svg.tag("polygon", points=pts, **common)
    elif shape == "cross":
        d = f"M{_num(x - r)},{_num(y - r)}L{_num(x + r)},{_num(y + r)}M{_num(x - r)},{_num(y + r)}L{_num(x + r)},{_num(y - r)}"
        svg.tag("path", d=d, stroke=color, stroke_width=2.4 if filled else 1.4, fill="none")
    else:
        svg.tag("circle", cx=x, cy=y, r=r, **common)


# ---------------------------------------------------------------------------------------------
# Trade-off scatter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeoffPoint:
    """One provider in a trade-off chart.

    Attributes:
        label: Provider id.
        x: Cost or latency (smaller is better).
        y: The metric's point value.
        lo: Lower interval bound of ``y`` (``None``: no whisker).
        hi: Upper interval bound of ``y``.
        color: Series colour.
        shape: Marker shape (one of :data:`SHAPES`).
        pareto: Whether the provider is marked Pareto-optimal.
        x_lo: Lower interval bound of ``x`` (``None``: no horizontal whisker).
        x_hi: Upper interval bound of ``x``.
    """

    label: str
    x: float
    y: float
    lo: float | None
    hi: float | None
    color: str
    shape: str
    pareto: bool = False
    x_lo: float | None = None
    x_hi: float | None = None


def _badness(y: float, direction: str) -> float:
    if direction == "higher":
        return -y
    if direction == "neutral":
        return abs(y)
    return y


def pareto_front(points: Sequence[tuple[float, float]], direction: str) -> list[bool]:
    """Which ``(x, y)`` points are Pareto-optimal when smaller x is better and y follows ``direction``.

    ``direction`` is a metric direction: ``"lower"``, ``"higher"`` or ``"neutral"`` (closer
    to 0 is better). A point is dominated when another is no worse on both axes and strictly
    better on one; ties on both axes keep both points.
    """
    scored = [(x, _badness(y, direction)) for x, y in points]
    out = []
    for i, (xi, bi) in enumerate(scored):
        dominated = any(
            xj <= xi and bj <= bi and (xj < xi or bj < bi) for j, (xj, bj) in enumerate(scored) if j != i
        )
        out.append(not dominated)
    return out


def tradeoff_chart(
    points: Sequence[TradeoffPoint],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_fmt: Callable[[float], str],
    y_fmt: Callable[[float], str],
    direction: str,
    width: float = 340,
    height: float = 236,
) -> Markup:
    """A scatter of one metric against cost or latency, with interval whiskers and Pareto markers."""
    svg = _Svg(width, height, title)
    left, right, top, bottom = 56.0, 30.0, 28.0, 42.0
    xs = [v for p in points for v in (p.x, p.x_lo, p.x_hi) if v is not None]
    ys = [v for p in points for v in (p.y, p.lo, p.hi) if v is not None]
    y_lo, y_hi = min([0.0, *ys]), max([0.0, *ys])
    if y_hi - y_lo < 1e-9:
        y_hi = y_lo + 1.0
    yt = nice_ticks(y_lo, y_hi + (y_hi - y_lo) * 0.05, 4)
    xt = nice_ticks(0.0, max(xs) * 1.12 if xs and max(xs) > 0 else 1.0, 4)
    sx = _Linear(xt[0], xt[-1], left, width - right)
    sy = _Linear(yt[0], yt[-1], height - bottom, top)
    for t in yt:
        svg.line(left, sy(t), width - right, sy(t), stroke=_GRID)
        svg.text(left - 6, sy(t) + 4, y_fmt(t), text_anchor="end", fill=_MUTED, font_size=10)
    for t in xt:
        svg.line(sx(t), height - bottom, sx(t), height - bottom + 4)
        svg.text(sx(t), height - bottom + 16, x_fmt(t), text_anchor="middle", fill=_MUTED, font_size=10)
    if yt[0] < 0 < yt[-1]:
        svg.line(left, sy(0), width - right, sy(0), stroke=_AXIS, stroke_dasharray="3 3")
    svg.line(left, height - bottom, width - right, height - bottom)
    svg.text((left + width - right) / 2, height - 6, x_label, text_anchor="middle")
    better = {"lower": "\u2193 better", "higher": "\u2191 better", "neutral": "closer to 0 is better"}[
        direction
    ]
    svg.text(4, 12, f"{_truncate(y_label, 40)} ({better})", fill=_MUTED, font_size=10)
    # Whiskers and markers first, labels last (on top, with a halo).
    for p in points:
        px, py = sx(p.x), sy(p.y)
        if p.lo is not None and p.hi is not None:
            svg.line(px, sy(p.lo), px, sy(p.hi), stroke=p.color, stroke_width=1.4)
            for v in (p.lo, p.hi):
                svg.line(px - 4, sy(v), px + 4, sy(v), stroke=p.color, stroke_width=1.4)
        if p.x_lo is not None and p.x_hi is not None:
            # The x interval (p95 latency, cost) the Pareto test used: thinner, so y stays primary.
            svg.line(sx(p.x_lo), py, sx(p.x_hi), py, stroke=p.color, stroke_width=0.9)
            for v in (p.x_lo, p.x_hi):
                svg.line(sx(v), py - 3, sx(v), py + 3, stroke=p.color, stroke_width=0.9)
        _marker(svg, p.shape, px, py, 5.0, p.color, p.pareto)
    boxes: list[tuple[float, float, float, float]] = [
        (sx(p.x) - 6, sy(p.y) - 6, sx(p.x) + 6, sy(p.y) + 6) for p in points
    ]
    for p in sorted(points, key=lambda p: (p.x, p.y)):
        px, py = sx(p.x), sy(p.y)
        label = _truncate(p.label, 22) + (" \u2605" if p.pareto else "")
        w = 6.4 * len(label) + 2
        placed = None
        # Try right then left of the point, level first, then stepping up and down, inside the plot.
        for dy in (0, -12, 12, -24, 24, -36, 36, -48, 48):
            for side in (1, -1):
                x0 = px + 9 if side > 0 else px - 9 - w
                y0 = py + dy - 8
                box = (x0, y0, x0 + w, y0 + 11)
                inside = (
                    x0 >= left + 2
                    and x0 + w <= width - 2
                    and y0 >= top - 4
                    and y0 + 11 <= height - bottom - 1
                )
                if inside and not any(
                    box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes
                ):
                    placed = box
                    break
            if placed:
                break
        if placed is None:
            placed = (px + 9, py - 8, px + 9 + w, py + 3)
        boxes.append(placed)
        if abs((placed[1] + 5.5) - py) > 7:
            # The label had to move away from its marker: a leader line says whose it is.
            tx = placed[0] if placed[0] > px else placed[2]
            svg.line(px, py, tx, placed[1] + 5.5, stroke=_MUTED, stroke_width=0.7)
        svg.text(
            placed[0],
            placed[1] + 9,
            label,
            font_size=10.5,
            halo=True,
            font_weight="600" if p.pareto else None,
        )
    return svg.render()


# ---------------------------------------------------------------------------------------------
# Grouped horizontal bars with interval whiskers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarSeries:
    """One provider's values for every group of a grouped bar chart (``None``: no value)."""

    name: str
    color: str
    values: Sequence[Estimate | None]


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[BarSeries],
    *,
    title: str,
    fmt: Callable[[float], str],
    width: float = 1100,
    percent_scale: bool = False,
) -> Markup:
    """Horizontal bars per group (one per series) from 0, with 95% interval whiskers and value labels.

    Each value label carries its ``n`` (``12.3%  n=40``): a whisker means little without it,
    and a hover-only tooltip is lost in print and to keyboard readers.
    """
    label_w = 190.0
    right_pad = 120.0
    bar_h, bar_gap, group_gap = 12.0, 2.0, 12.0
    legend_rows = 1 + int(sum(32 + 6.6 * min(len(s.name), 28) for s in series) // (width - label_w))
    top, axis_h = 12.0 + 16.0 * legend_rows, 26.0
    per_group = len(series) * (bar_h + bar_gap) - bar_gap
    height = top + len(groups) * (per_group + group_gap) + axis_h
    svg = _Svg(width, height, title)
    _legend(svg, label_w, 12.0, [(s.name, s.color) for s in series], width - right_pad)
    vals = [
        v
        for s in series
        for e in s.values
        if e is not None
        for v in (e.value, e.ci_low, e.ci_high)
        if v is not None and math.isfinite(v)
    ]
    lo, hi = min([0.0, *vals]), max([0.0, *vals])
    if percent_scale:
        lo, hi = max(lo, -1.0), min(max(hi, 0.05), 1.0)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    ticks = nice_ticks(lo, hi, 5)
    x0, x1 = label_w + (40.0 if ticks[0] < 0 else 0.0), width - right_pad
    sx = _Linear(ticks[0], ticks[-1], x0, x1)
    plot_bottom = height - axis_h
    for t in ticks:
        svg.line(sx(t), top - 4, sx(t), plot_bottom, stroke=_GRID)
        svg.text(sx(t), plot_bottom + 16, fmt(t), text_anchor="middle", fill=_MUTED, font_size=11)
    svg.line(sx(0.0), top - 4, sx(0.0), plot_bottom, stroke=_AXIS)
    y = top
    for gi, group in enumerate(groups):
        svg.open("g")
        svg.tag("title", group)
        svg.text(label_w - 10, y + per_group / 2 + 4, _truncate(group, 28), text_anchor="end")
        svg.close("g")
        for s in series:
            est = s.values[gi] if gi < len(s.values) else None
            cy = y + bar_h / 2
            if est is None or est.value is None or not math.isfinite(est.value):
                svg.text(sx(0.0) + 4, cy + 4, "n/a", fill=_MUTED, font_size=10)
                y += bar_h + bar_gap
                continue
            a, b = sorted((sx(0.0), sx(est.value)))
            svg.tag("rect", x=a, y=y, width=max(b - a, 0.8), height=bar_h, fill=s.color, fill_opacity="0.85")
            end = sx(est.value)
            if est.ci_low is not None and est.ci_high is not None:
                lo, hi = sx(est.ci_low), sx(est.ci_high)
                svg.line(lo, cy, hi, cy, stroke="#1f2328", stroke_width=1.1)
                svg.line(lo, cy - 3.5, lo, cy + 3.5, stroke="#1f2328", stroke_width=1.1)
                svg.line(hi, cy - 3.5, hi, cy + 3.5, stroke="#1f2328", stroke_width=1.1)
                end = hi if est.value >= 0 else lo
            label = f"{fmt(est.value)}  n={est.n:,}"
            if est.value >= 0:
                svg.text(end + 5, cy + 4, label, font_size=11, fill=_TEXT, halo=True)
            else:
                svg.text(end - 5, cy + 4, label, font_size=11, fill=_TEXT, text_anchor="end", halo=True)
            y += bar_h + bar_gap
        y += group_gap - bar_gap
    return svg.render()


# ---------------------------------------------------------------------------------------------
# Histograms as small multiples
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramSeries:
    """One provider's histogram: counts per bin (bins shared by all series), and markers.

    Attributes:
        name: Provider id.
        color: Bar colour.
        counts: Count per bin.
        markers: ``(value, label)`` pairs drawn as vertical lines (e.g. p50 and p95).
    """

    name: str
    color: str
    counts: Sequence[int]
    markers: Sequence[tuple[float, str]] = ()


def histogram_panels(
    edges: Sequence[float],
    series: Sequence[HistogramSeries],
    *,
    title: str,
    x_fmt: Callable[[float], str],
    log_x: bool = False,
    width: float = 1100,
    panel_h: float = 46.0,
) -> Markup:
    """One histogram per series, stacked, on a shared x axis (linear or log); bar height = share of calls."""
    label_w, right_pad, gap, axis_h, top = 150.0, 16.0, 10.0, 26.0, 6.0
    height = top + len(series) * (panel_h + gap) + axis_h
    svg = _Svg(width, height, title)

    def tx(v: float) -> float:
        return math.log10(max(v, 1e-12)) if log_x else v

    d0, d1 = tx(edges[0]), tx(edges[-1])
    sx = _Linear(d0, d1, label_w, width - right_pad)
    y = top
    for s in series:
        total = sum(s.counts)
        peak = max(s.counts) if s.counts else 0
        svg.open("g")
        svg.tag("title", s.name)
        svg.text(label_w - 10, y + panel_h / 2, _truncate(s.name, 22), text_anchor="end", font_weight="600")
        svg.close("g")
        svg.text(
            label_w - 10, y + panel_h / 2 + 13, f"n = {total:,}", text_anchor="end", fill=_MUTED, font_size=10
        )
        base = y + panel_h
        svg.line(label_w, base, width - right_pad, base, stroke=_GRID)
        if peak > 0:
            path = []
            for i, c in enumerate(s.counts):
                if c <= 0:
                    continue
                xa, xb = sx(tx(edges[i])), sx(tx(edges[i + 1]))
                h = max(1.0, c / peak * (panel_h - 4))
                path.append(
                    f"M{_num(xa + 0.4)},{_num(base)}h{_num(max(xb - xa - 0.8, 0.6))}v{_num(-h)}h{_num(-max(xb - xa - 0.8, 0.6))}z"
                )
            svg.tag("path", d="".join(path), fill=s.color, fill_opacity="0.8")
            svg.text(
                width - right_pad,
                y + 9,
                f"peak {peak / total:.0%} of calls",
                text_anchor="end",
                fill=_MUTED,
                font_size=9,
            )
        for i, (value, label) in enumerate(s.markers):
            if not math.isfinite(value) or (log_x and value <= 0):
                continue
            mx = min(max(sx(tx(value)), label_w), width - right_pad)
            svg.line(
                mx,
                y + 2,
                mx,
                base,
                stroke="#1f2328",
                stroke_width=1.2,
                stroke_dasharray=None if i == 0 else "3 2",
            )
            svg.text(mx + 4, y + 10 + 11 * i, label, font_size=10, fill="#1f2328", halo=True)
        y += panel_h + gap
    axis_y = height - axis_h + 2
    if log_x:
        ticks = [
            m * 10**k
            for k in range(math.floor(d0) - 1, math.ceil(d1) + 1)
            for m in (1, 2, 5)
            if d0 - 1e-9 <= math.log10(m * 10**k) <= d1 + 1e-9
        ]
    else:
        ticks = [t for t in nice_ticks(edges[0], edges[-1], 6) if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9]
    svg.line(label_w, axis_y, width - right_pad, axis_y)
    for t in ticks:
        svg.line(sx(tx(t)), axis_y, sx(tx(t)), axis_y + 4)
        svg.text(sx(tx(t)), axis_y + 16, x_fmt(t), text_anchor="middle", fill=_MUTED, font_size=10)
    return svg.render()


# ---------------------------------------------------------------------------------------------
# 100% stacked bars
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackedRow:
    """One bar of a 100% stacked chart: ``(segment name, count, colour, text colour)`` per segment."""

    label: str
    segments: Sequence[tuple[str, int, str, str]]


def stacked_bars(rows: Sequence[StackedRow], *, title: str, width: float = 1100) -> Markup:
    """Horizontal 100% bars with the share printed in each segment wide enough to hold it, and a legend."""
    label_w, right_pad, bar_h, gap, legend_h = 150.0, 16.0, 22.0, 8.0, 24.0
    height = legend_h + len(rows) * (bar_h + gap) + 4
    svg = _Svg(width, height, title)
    lx = label_w
    if rows:
        for name, _, color, _ in rows[0].segments:
            svg.tag("rect", x=lx, y=4, width=12, height=12, fill=color)
            svg.text(lx + 16, 14, name.replace("_", " "), font_size=11)
            lx += 24 + 7 * len(name)
    sx = _Linear(0.0, 1.0, label_w, width - right_pad)
    y = legend_h
    for row in rows:
        svg.open("g")
        svg.tag("title", row.label)
        svg.text(
            label_w - 10, y + bar_h / 2 + 4, _truncate(row.label, 22), text_anchor="end", font_weight="600"
        )
        svg.close("g")
        total = sum(c for _, c, _, _ in row.segments)
        acc = 0.0
        if total == 0:
            svg.text(label_w + 4, y + bar_h / 2 + 4, "n/a (no scored answers)", fill=_MUTED)
        for name, count, color, text_color in row.segments if total else ():
            share = count / total
            xa, xb = sx(acc), sx(acc + share)
            svg.open("g")
            svg.tag("title", f"{row.label}: {name.replace('_', ' ')} {count:,} of {total:,} ({share:.1%})")
            svg.tag("rect", x=xa, y=y, width=max(xb - xa, 0.0), height=bar_h, fill=color)
            if xb - xa >= 34:
                svg.text(
                    (xa + xb) / 2,
                    y + bar_h / 2 + 4,
                    f"{share:.0%}",
                    text_anchor="middle",
                    fill=text_color,
                    font_weight="600",
                )
            svg.close("g")
            acc += share
        y += bar_h + gap
    return svg.render()


# ---------------------------------------------------------------------------------------------
# Throughput-latency curves (load sweeps)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePoint:
    """One load stage on a throughput-latency curve.

    Attributes:
        x: Achieved throughput (requests/s).
        y: The latency percentile (seconds).
        rate: The stage's target rate (requests/s), shown in the point's tooltip.
        saturated: Whether the stop rule judged the stage saturated (hollow marker).
    """

    x: float
    y: float
    rate: float | None
    saturated: bool = False


@dataclass(frozen=True)
class CurveSeries:
    """One provider's curve: its stages in rate order."""

    label: str
    color: str
    shape: str
    points: Sequence[CurvePoint]


def curve_chart(
    series: Sequence[CurveSeries],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_fmt: Callable[[float], str],
    y_fmt: Callable[[float], str],
    width: float = 520,
    height: float = 280,
) -> Markup:
    """Lines through each provider's load stages: achieved throughput (x) against a latency (y).

    Filled markers are stages the stop rule accepted; hollow ones were saturated (the knee,
    where throughput stops following the offered rate and latency climbs). Every point has a
    tooltip with its rate and values; a legend names the providers (colour and shape).
    """
    svg = _Svg(width, height, title)
    left, right, top, bottom = 60.0, 20.0, 40.0, 42.0
    xs = [p.x for s in series for p in s.points]
    ys = [p.y for s in series for p in s.points]
    xt = nice_ticks(0.0, max(xs) * 1.08 if xs and max(xs) > 0 else 1.0, 5)
    yt = nice_ticks(0.0, max(ys) * 1.08 if ys and max(ys) > 0 else 1.0, 4)
    sx = _Linear(xt[0], xt[-1], left, width - right)
    sy = _Linear(yt[0], yt[-1], height - bottom, top)
    for t in yt:
        svg.line(left, sy(t), width - right, sy(t), stroke=_GRID)
        svg.text(left - 6, sy(t) + 4, y_fmt(t), text_anchor="end", fill=_MUTED, font_size=10)
    for t in xt:
        svg.line(sx(t), height - bottom, sx(t), height - bottom + 4)
        svg.text(sx(t), height - bottom + 16, x_fmt(t), text_anchor="middle", fill=_MUTED, font_size=10)
    svg.line(left, height - bottom, width - right, height - bottom)
    svg.text((left + width - right) / 2, height - 6, x_label, text_anchor="middle")
    svg.text(4, 12, f"{_truncate(y_label, 60)} (\u2193 better)", fill=_MUTED, font_size=10)
    _legend(svg, left, 28, [(s.label, s.color) for s in series], width - right)
    for s in series:
        pts = sorted(s.points, key=lambda p: (p.rate or 0.0, p.x))
        if len(pts) > 1:
            path = " ".join(f"{_num(sx(p.x))},{_num(sy(p.y))}" for p in pts)
            svg.tag("polyline", points=path, fill="none", stroke=s.color, stroke_width=1.6)
        for p in pts:
            svg.open("g")
            rate = f"{p.rate:g} req/s target" if p.rate is not None else "fixed concurrency"
            state = ", saturated" if p.saturated else ""
            svg.tag("title", f"{s.label}: {rate}{state}; {x_fmt(p.x)} achieved, {y_label} {y_fmt(p.y)}")
            _marker(svg, s.shape, sx(p.x), sy(p.y), 4.5, s.color, not p.saturated)
            svg.close("g")
    return svg.render()
