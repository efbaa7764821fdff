"""Line charts for run reports: drawn with matplotlib when it is installed (the ``report`` extra), with the
pure-Python SVG writer of :mod:`datanas_core.runtime.svg` otherwise.

Either way the result is an SVG document in which every drawn series is an element with
``class="series"`` and ``data-name="<series name>"``, so charts can be checked by parsing them.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import quoteattr

from datanas_core.errors import ConfigError, MissingDependencyError
from datanas_core.runtime.svg import PALETTE, line_chart_svg

__all__ = ["have_matplotlib", "line_chart"]

_BACKENDS = ("auto", "matplotlib", "svg")


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    width: int = 600,
    height: int = 300,
    backend: str = "auto",
) -> str:
    """An SVG line chart of named ``[(x, y), ...]`` series; non-finite points are skipped.

    Args:
        series: name -> points.
        title, xlabel, ylabel: texts.
        width, height: size in pixels.
        backend: ``"auto"`` (matplotlib when installed, else the built-in writer), ``"matplotlib"`` or
            ``"svg"`` (the built-in writer).

    Raises:
        ConfigError: unknown backend. MissingDependencyError: ``backend="matplotlib"`` without matplotlib.
    """
    if backend not in _BACKENDS:
        raise ConfigError(f"unknown chart backend {backend!r}; valid: {', '.join(_BACKENDS)}")
    use_mpl = backend == "matplotlib" or (backend == "auto" and have_matplotlib())
    if backend == "matplotlib" and not have_matplotlib():
        raise MissingDependencyError(
            "backend='matplotlib' needs matplotlib: pip install 'datanas-core[report]'"
        )
    if not use_mpl:
        return line_chart_svg(series, title=title, xlabel=xlabel, ylabel=ylabel, width=width, height=height)
    return _mpl_line_chart(series, title=title, xlabel=xlabel, ylabel=ylabel, width=width, height=height)


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for x, y in points:
        fx, fy = float(x), float(y)
        if math.isfinite(fx) and math.isfinite(fy):
            out.append((fx, fy))
    return out


def _mpl_line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int,
    height: int,
) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pts = {name: _finite(p) for name, p in series.items()}
    rc = {"svg.fonttype": "none", "svg.hashsalt": "datanas-report", "font.size": 9}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width / 100, height / 100), dpi=100)
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        names: dict[str, str] = {}
        for i, (name, p) in enumerate(pts.items()):
            if not p:
                continue
            gid = f"datanas-series-{i}"
            names[gid] = name
            (line,) = ax.plot(
                [x for x, _ in p],
                [y for _, y in p],
                color=PALETTE[i % len(PALETTE)],
                linewidth=1.5,
                marker="o" if len(p) <= 60 else None,
                markersize=2.5,
                label=name[:40],
            )
            line.set_gid(gid)
        if title:
            ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if names:
            allp = [q for p in pts.values() for q in p]
            if all(x.is_integer() for x, _ in allp):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ys = [y for _, y in allp]
            if min(ys) >= 1 and max(ys) / min(ys) > 50:  # e.g. perplexities falling from thousands
                ax.set_yscale("log")
            ax.grid(True, color="#e5e5e5", linewidth=0.8)
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()

    def mark(m: re.Match[str]) -> str:
        gid = m.group(1)
        return f'<g id="{gid}" class="series" data-name={quoteattr(names.get(gid, gid))}'

    return re.sub(r'<g id="(datanas-series-\d+)"', mark, svg)
