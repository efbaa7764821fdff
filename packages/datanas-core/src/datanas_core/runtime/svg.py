"""Small pure-Python SVG charts for run reports: line charts and heatmaps (no matplotlib).

Heatmaps take a ``center`` to colour values relative to a reference (architecture probabilities relative
to the uniform ``1/K``): a diverging ramp, blue below, white at the centre, red above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = ["PALETTE", "diverging_color", "heat_color", "heatmap_svg", "line_chart_svg", "nice_ticks"]

#: Line colours (colour-blind friendly, Okabe-Ito order).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

# viridis-like anchors for heatmaps (value 0 -> light, 1 -> dark)
_RAMP = (
    (0.0, (253, 231, 37)),
    (0.25, (94, 201, 98)),
    (0.5, (33, 145, 140)),
    (0.75, (59, 82, 139)),
    (1.0, (68, 1, 84)),
)

# diverging anchors (t = -1 -> blue, 0 -> white, +1 -> red; colour-blind safe RdBu-like)
_DIVERGING = (
    (-1.0, (33, 102, 172)),
    (-0.5, (146, 197, 222)),
    (0.0, (247, 247, 247)),
    (0.5, (244, 165, 130)),
    (1.0, (178, 24, 43)),
)


def _interp(ramp: Sequence[tuple[float, tuple[int, int, int]]], t: float) -> str:
    for (t0, c0), (t1, c1) in zip(ramp, ramp[1:], strict=False):
        if t <= t1:
            u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            r, g, b = (round(a + (bb - a) * u) for a, bb in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    r, g, b = ramp[-1][1]
    return f"#{r:02x}{g:02x}{b:02x}"


def diverging_color(t: float) -> str:
    """Hex colour of ``t`` in [-1, 1] on a blue-white-red ramp (0 is white)."""
    if not math.isfinite(t):
        return "#ff00ff"
    return _interp(_DIVERGING, min(max(t, -1.0), 1.0))


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def heat_color(t: float) -> str:
    """Hex colour of ``t`` in [0, 1] on a viridis-like ramp (reversed: 0 light, 1 dark)."""
    if not math.isfinite(t):
        return "#ff00ff"
    return _interp(_RAMP, min(max(t, 0.0), 1.0))


def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (1-2-5 steps; whole numbers with ``integer``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


def line_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    width: int = 560,
    height: int = 300,
) -> str:
    """An SVG line chart of named ``[(x, y), ...]`` series; non-finite points are skipped.

    Each series is a ``<polyline class="series" data-name=...>``; no data gives a chart saying so.
    """
    longest = max((len(k) for k in series), default=0)
    ml, mr, mt, mb = 60, max(130, 7 * min(longest, 32) + 40), 30 if title else 12, 40
    width = max(width, ml + mr + 200)
    pw, ph = width - ml - mr, height - mt - mb
    pts = {
        k: [(float(x), float(y)) for x, y in v if math.isfinite(float(x)) and math.isfinite(float(y))]
        for k, v in series.items()
    }
    allp = [p for v in pts.values() for p in v]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(
            f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>'
        )
    if not allp:
        out.append(
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">no data</text></svg>'
        )
        return "\n".join(out)
    x0, x1 = min(p[0] for p in allp), max(p[0] for p in allp)
    y0, y1 = min(p[1] for p in allp), max(p[1] for p in allp)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        pad = abs(y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in nice_ticks(y0, y1):
        if y0 <= t <= y1:
            y = sy(t)
            out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{ml - 4}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(t)}</text>')
    for t in nice_ticks(x0, x1, integer=all(float(x).is_integer() for x, _ in allp)):
        if x0 <= t <= x1:
            x = sx(t)
            out.append(f'<line x1="{x:.1f}" y1="{mt + ph}" x2="{x:.1f}" y2="{mt + ph + 4}" stroke="#999"/>')
            out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle">{_tick_label(t)}</text>')
    if xlabel:
        out.append(
            f'<text x="{ml + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(xlabel)}</text>'
        )
    if ylabel:
        out.append(
            f'<text x="14" y="{mt + ph / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {mt + ph / 2:.1f})">{escape(ylabel)}</text>'
        )
    for i, (name, p) in enumerate(pts.items()):
        color = PALETTE[i % len(PALETTE)]
        if p:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
            out.append(
                f'<polyline class="series" data-name={quoteattr(name)} points="{coords}" fill="none" '
                f'stroke="{color}" stroke-width="1.5"/>'
            )
            if len(p) <= 60:
                for x, y in p:
                    out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>')
        ly = mt + 8 + 16 * i
        out.append(
            f'<line x1="{ml + pw + 8}" y1="{ly}" x2="{ml + pw + 24}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"/>'
        )
        out.append(f'<text x="{ml + pw + 28}" y="{ly + 4}">{escape(name[:32])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def heatmap_svg(
    values: Sequence[Sequence[float]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cell: int = 14,
    max_width: int = 900,
    center: float | None = None,
    center_label: str = "",
) -> str:
    """An SVG heatmap (rows x columns) with labels and a colour bar; each cell is a
    ``<rect class="cell" data-row data-col data-value>``.

    Without ``center``, values map linearly from ``vmin`` (light) to ``vmax`` (dark). With ``center``, a
    diverging scale: ``center`` is white, values above it red (full at ``vmax``) and below it blue (full at
    ``vmin``); the colour bar marks the centre (``center_label``).
    """
    nrows = len(values)
    ncols = max((len(r) for r in values), default=0)
    label_w = 7 * max((len(s) for s in row_labels), default=4) + 10
    cw = max(3, min(max(cell, 36), (max_width - label_w - 80) // max(ncols, 1)))
    ch = cell
    mt = (30 if title else 10) + 7 * min(max((len(s) for s in col_labels), default=2), 14) + 6
    bar_w = 80 if center is None else 40 + 7 * max(len(center_label), 8)
    width = max(label_w + ncols * cw + bar_w, 7 * len(title) + 20)
    height = mt + max(nrows * ch, 60) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        out.append(
            f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>'
        )
    span = (vmax - vmin) or 1.0
    above = (vmax - center) if center is not None and vmax > center else 1.0
    below = (center - vmin) if center is not None and vmin < center else 1.0

    def color_of(v: float) -> str:
        if center is None:
            return heat_color((v - vmin) / span)
        return diverging_color((v - center) / (above if v >= center else below))

    show_every = max(1, math.ceil(12 / cw))
    for j, lab in enumerate(col_labels[:ncols]):
        if j % show_every:
            continue
        x = label_w + j * cw + cw / 2
        out.append(
            f'<text x="{x:.1f}" y="{mt - 4}" transform="rotate(-60 {x:.1f} {mt - 4})">'
            f"{escape(str(lab)[:14])}</text>"
        )
    for i, row in enumerate(values):
        y = mt + i * ch
        lab = row_labels[i] if i < len(row_labels) else str(i)
        out.append(f'<text x="{label_w - 4}" y="{y + ch - 3}" text-anchor="end">{escape(lab)}</text>')
        for j, v in enumerate(row):
            v = float(v)
            color = color_of(v)
            out.append(
                f'<rect class="cell" data-row="{i}" data-col="{j}" data-value="{_fmt(v)}" '
                f'x="{label_w + j * cw}" y="{y}" width="{cw}" height="{ch}" fill="{color}">'
                f"<title>{escape(lab)} / {escape(str(col_labels[j]) if j < len(col_labels) else str(j))}: "
                f"{v:.3f}</title></rect>"
            )
    bx = label_w + ncols * cw + 16
    steps = 20
    bh = max(nrows * ch, 60)
    lo, hi = vmin, vmax
    for s in range(steps):
        t = 1 - s / (steps - 1)
        out.append(
            f'<rect x="{bx}" y="{mt + s * bh / steps:.1f}" width="12" height="{bh / steps + 0.5:.1f}" '
            f'fill="{color_of(lo + t * (hi - lo))}"/>'
        )
    out.append(f'<text x="{bx + 16}" y="{mt + 8}">{_tick_label(hi)}</text>')
    out.append(f'<text x="{bx + 16}" y="{mt + bh}">{_tick_label(lo)}</text>')
    if center is not None and lo < center < hi:
        cy = mt + (hi - center) / (hi - lo) * bh
        out.append(f'<line x1="{bx - 2}" y1="{cy:.1f}" x2="{bx + 14}" y2="{cy:.1f}" stroke="#333"/>')
        out.append(
            f'<text x="{bx + 16}" y="{cy + 4:.1f}">{escape(center_label or _tick_label(center))}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
