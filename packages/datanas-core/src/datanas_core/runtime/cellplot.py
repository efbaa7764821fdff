"""Pictures of derived cells: Graphviz DOT text and a self-contained layered-layout SVG writer.

Every cell type can be drawn (CNN normal/reduction cells, NB201 cells, recurrent cells): the picture shows
the cell's input nodes, every intermediate node, one arrow per kept ``(src, dst, op)`` triple (several
arrows between the same two nodes when several ops are kept), and arrows from the ``concat`` nodes into
the cell output. No Graphviz installation is needed; when the ``dot`` program is on ``PATH`` it can be
used instead (``engine="dot"``).

In the SVG, each node is a ``<g class="node" data-node="N">`` (``data-node="out"`` for the output) and
each arrow a ``<g class="edge" data-src="S" data-dst="D" data-op="OP">`` so pictures can be checked by
parsing them.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from datanas_core.errors import ConfigError, GenotypeError, MissingDependencyError
from datanas_core.genotype import CellGenotype, Genotype

__all__ = [
    "CellGraph",
    "cell_graph",
    "cell_to_dot",
    "cell_to_svg",
    "genotype_to_dot",
    "genotype_to_svgs",
    "is_param_free_op",
]

OUT = "out"
_PARAM_FREE_WORDS = ("skip", "identity", "pool", "none", "zero", "noise")
_RECURRENT_TYPES = ("recurrent", "rnn", "recur")


def is_param_free_op(op: str) -> bool:
    """Heuristic: whether an op name denotes a parameter-free op (skip/identity/pooling/none/zero)."""
    low = op.lower()
    return any(w in low for w in _PARAM_FREE_WORDS)


@dataclass
class CellGraph:
    """A cell as a drawable graph.

    Attributes:
        cell_type: name of the cell type.
        inputs: input node ids (``0 .. num_inputs-1``).
        intermediates: intermediate node ids used by the genotype (source, destination or concat).
        edges: kept ``(src, dst, op)`` triples.
        concat: nodes feeding the output node.
        labels: display label of every node id (and of ``"out"``).
    """

    cell_type: str
    inputs: list[int]
    intermediates: list[int]
    edges: list[tuple[int, int, str]]
    concat: list[int]
    labels: dict[int | str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> list[int | str]:
        return [*self.inputs, *self.intermediates, OUT]

    def all_edges(self) -> list[tuple[int | str, int | str, str | None]]:
        """Op edges plus the ``(concat node, "out", None)`` edges."""
        return [*self.edges, *((c, OUT, None) for c in self.concat)]


def _is_recurrent(cell_type: str) -> bool:
    return any(w in cell_type.lower() for w in _RECURRENT_TYPES)


def cell_graph(cell: CellGenotype, cell_type: str = "cell", *, num_inputs: int | None = None) -> CellGraph:
    """Turn a :class:`CellGenotype` into a :class:`CellGraph`.

    Args:
        cell: the derived cell.
        cell_type: name used for labels ("normal", "reduce", "recurrent", ...).
        num_inputs: number of cell inputs; inferred as the smallest destination node when omitted (pass it
            from the space's ``CellSpec`` when an intermediate node may have no input).

    Raises:
        GenotypeError: the cell has no edges and ``num_inputs`` is not given, or an edge's destination is
            an input node.
    """
    if num_inputs is None:
        if not cell.edges:
            raise GenotypeError(f"cell {cell_type!r} has no edges; pass num_inputs to draw it")
        num_inputs = min(e.dst for e in cell.edges)
    if num_inputs < 1:
        raise ConfigError(f"num_inputs must be >= 1, got {num_inputs}")
    for e in cell.edges:
        if e.dst < num_inputs:
            raise GenotypeError(
                f"cell {cell_type!r}: edge ({e.src}, {e.dst}, {e.op!r}) ends at input node {e.dst} "
                f"(inputs are 0..{num_inputs - 1})"
            )
    inputs = list(range(num_inputs))
    mids = sorted(
        {e.dst for e in cell.edges}
        | {e.src for e in cell.edges if e.src >= num_inputs}
        | {c for c in cell.concat if c >= num_inputs}
    )
    labels: dict[int | str, str] = {}
    if _is_recurrent(cell_type):
        names = ["x_t, h_{t-1}"] if num_inputs == 1 else [f"in{i}" for i in inputs]
        out_label = "h_t"
    elif num_inputs == 2:
        names = ["c_{k-2}", "c_{k-1}"]
        out_label = "c_{k}"
    elif num_inputs == 1:
        names = ["in"]
        out_label = "out"
    else:
        names = [f"in{i}" for i in inputs]
        out_label = "out"
    for i, n in zip(inputs, names, strict=True):
        labels[i] = n
    for m in mids:
        labels[m] = str(m)
    labels[OUT] = out_label
    return CellGraph(
        cell_type=cell_type,
        inputs=inputs,
        intermediates=mids,
        edges=[(e.src, e.dst, e.op) for e in cell.edges],
        concat=[c for c in cell.concat],
        labels=labels,
    )


# ------------------------------------------------------------------------------------------------- DOT
def _dot_id(n: int | str) -> str:
    return f"n{n}" if isinstance(n, int) else "out"


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cell_to_dot(
    cell: CellGenotype | CellGraph, cell_type: str = "cell", *, num_inputs: int | None = None
) -> str:
    """Graphviz DOT source of a cell (left-to-right, DARTS-style colours)."""
    g = cell if isinstance(cell, CellGraph) else cell_graph(cell, cell_type, num_inputs=num_inputs)
    lines = [
        f"digraph {_dot_str(g.cell_type)} {{",
        "  rankdir=LR;",
        '  node [style="filled,rounded", shape=box, fontname="Helvetica", fontsize=12, penwidth=1.5];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for n in g.inputs:
        lines.append(f"  {_dot_id(n)} [label={_dot_str(g.labels[n])}, fillcolor=darkseagreen2];")
    for n in g.intermediates:
        lines.append(f"  {_dot_id(n)} [label={_dot_str(g.labels[n])}, fillcolor=lightblue, shape=ellipse];")
    lines.append(f"  out [label={_dot_str(g.labels[OUT])}, fillcolor=palegoldenrod];")
    for s, d, op in g.edges:
        style = ", style=dashed" if is_param_free_op(op) else ""
        lines.append(f"  {_dot_id(s)} -> {_dot_id(d)} [label={_dot_str(op)}{style}];")
    for c in g.concat:
        lines.append(f"  {_dot_id(c)} -> out [color=gray];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def genotype_to_dot(genotype: Genotype, *, num_inputs: Mapping[str, int] | None = None) -> dict[str, str]:
    """DOT source of every cell type of a genotype."""
    ni = num_inputs or {}
    return {ct: cell_to_dot(c, ct, num_inputs=ni.get(ct)) for ct, c in genotype.cells.items()}


# ------------------------------------------------------------------------------------------------- layout
_Node = int | str | tuple[str, int, int]  # real node id, or ("d", edge index, layer) for a dummy


@dataclass
class _Layout:
    pos: dict[_Node, tuple[float, float]]
    half: dict[_Node, tuple[float, float]]  # half width, half height
    chains: list[list[_Node]]  # per edge of g.all_edges(): the nodes it passes through (dummies included)
    width: float
    height: float


def _layers(g: CellGraph) -> dict[int | str, int]:
    layer: dict[int | str, int] = {n: 0 for n in g.inputs}
    preds: dict[int, list[int]] = defaultdict(list)
    for s, d, _ in g.edges:
        preds[d].append(s)
    for m in g.intermediates:  # ascending ids are a topological order (src < dst)
        layer[m] = 1 + max((layer.get(p, 0) for p in preds[m]), default=0)
    layer[OUT] = 1 + max((layer[n] for n in layer), default=0)
    return layer


def _layout(g: CellGraph, *, dx: float = 170.0, gap: float = 20.0, margin: float = 24.0) -> _Layout:
    """Sugiyama-style layout: longest-path layers, dummy nodes on long edges, barycentre ordering."""
    layer = _layers(g)
    nlayers = max(layer.values()) + 1
    by_layer: list[list[_Node]] = [[] for _ in range(nlayers)]
    for n in g.nodes:
        by_layer[layer[n]].append(n)
    half: dict[_Node, tuple[float, float]] = {
        n: (max(22.0, 4.0 * len(g.labels[n]) + 12.0), 15.0) for n in g.nodes
    }
    chains: list[list[_Node]] = []
    preds: dict[_Node, list[_Node]] = defaultdict(list)
    succs: dict[_Node, list[_Node]] = defaultdict(list)
    for i, (s, d, _) in enumerate(g.all_edges()):
        chain: list[_Node] = [s]
        for li in range(layer[s] + 1, layer[d]):
            dummy = ("d", i, li)
            by_layer[li].append(dummy)
            half[dummy] = (4.0, 8.0)
            chain.append(dummy)
        chain.append(d)
        chains.append(chain)
        for a, b in zip(chain, chain[1:], strict=False):
            preds[b].append(a)
            succs[a].append(b)

    def ys(order: list[list[_Node]]) -> dict[_Node, float]:
        out: dict[_Node, float] = {}
        for nodes in order:
            total = sum(2 * half[n][1] for n in nodes) + gap * (len(nodes) - 1)
            y = -total / 2
            for n in nodes:
                out[n] = y + half[n][1]
                y += 2 * half[n][1] + gap
        return out

    def key(n: _Node, nb: list[_Node], y: dict[_Node, float]) -> tuple[float, str]:
        return (sum(y[p] for p in nb) / len(nb) if nb else y[n], str(n))

    for _ in range(4):
        y = ys(by_layer)
        for li in range(1, nlayers):
            by_layer[li].sort(key=lambda n: key(n, preds[n], y))
            y = ys(by_layer)
        for li in range(nlayers - 2, 0, -1):  # layer 0 keeps the inputs in their natural order
            by_layer[li].sort(key=lambda n: key(n, succs[n], y))
            y = ys(by_layer)
    y = ys(by_layer)
    ymin = min(y[n] - half[n][1] for n in y)
    ymax = max(y[n] + half[n][1] for n in y)
    x0 = margin + max(half[n][0] for n in by_layer[0])
    pos = {n: (x0 + li * dx, margin + 8 + (y[n] - ymin)) for li, nodes in enumerate(by_layer) for n in nodes}
    width = x0 + (nlayers - 1) * dx + half[OUT][0] + margin
    height = margin * 2 + 16 + (ymax - ymin)
    return _Layout(pos, half, chains, width, height)


def _boundary(
    c: tuple[float, float], half: tuple[float, float], toward: tuple[float, float]
) -> tuple[float, float]:
    vx, vy = toward[0] - c[0], toward[1] - c[1]
    if vx == 0 and vy == 0:
        return c
    rx, ry = half
    t = 1.0 / math.sqrt((vx / rx) ** 2 + (vy / ry) ** 2)
    return c[0] + vx * t, c[1] + vy * t


def _smooth_path(pts: list[tuple[float, float]]) -> str:
    """A Catmull-Rom spline through ``pts`` as SVG cubic Beziers."""
    d = f"M {pts[0][0]:.1f} {pts[0][1]:.1f}"
    for i in range(len(pts) - 1):
        p0 = pts[i - 1] if i > 0 else pts[i]
        p1, p2 = pts[i], pts[i + 1]
        p3 = pts[i + 2] if i + 2 < len(pts) else p2
        c1 = (p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6)
        d += f" C {c1[0]:.1f} {c1[1]:.1f} {c2[0]:.1f} {c2[1]:.1f} {p2[0]:.1f} {p2[1]:.1f}"
    return d


Box = tuple[float, float, float, float]


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _render_svg(g: CellGraph, title: str | None = None) -> str:
    lay = _layout(g)
    top = 26.0 if title else 0.0
    W, H = lay.width, lay.height + top
    pos = {n: (x, y + top) for n, (x, y) in lay.pos.items()}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0f}" height="{H:.0f}" '
        f'viewBox="0 0 {W:.0f} {H:.0f}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="11" class="cell" '
        f"data-cell-type={quoteattr(g.cell_type)}>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/>'
        "</marker></defs>",
        f'<rect width="{W:.0f}" height="{H:.0f}" fill="white"/>',
    ]
    if title:
        out.append(f'<text x="{W / 2:.1f}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>')
    all_edges = g.all_edges()
    groups: dict[tuple[int | str, int | str], list[int]] = defaultdict(list)
    for i, (s, d, _) in enumerate(all_edges):
        groups[(s, d)].append(i)
    taken: list[Box] = [
        (
            pos[n][0] - lay.half[n][0],
            pos[n][1] - lay.half[n][1],
            pos[n][0] + lay.half[n][0],
            pos[n][1] + lay.half[n][1],
        )
        for n in g.nodes
    ]
    paths, labels = [], []
    # label the op edges with the fewest placement options first
    order = sorted(range(len(all_edges)), key=lambda i: (len(lay.chains[i]) > 2, i))
    geometry: dict[int, tuple[str, list[tuple[float, float]]]] = {}
    for i in order:
        s, d, op = all_edges[i]
        chain = lay.chains[i]
        a, b = pos[s], pos[d]
        members = groups[(s, d)]
        k, m = members.index(i), len(members)
        offset = (k - (m - 1) / 2) * 26.0
        if len(chain) == 2 and offset:
            length = math.hypot(b[0] - a[0], b[1] - a[1]) or 1.0
            nx, ny = -(b[1] - a[1]) / length, (b[0] - a[0]) / length
            cx, cy = (a[0] + b[0]) / 2 + nx * offset * 2, (a[1] + b[1]) / 2 + ny * offset * 2
            p0, p2 = _boundary(a, lay.half[s], (cx, cy)), _boundary(b, lay.half[d], (cx, cy))
            path = f"M {p0[0]:.1f} {p0[1]:.1f} Q {cx:.1f} {cy:.1f} {p2[0]:.1f} {p2[1]:.1f}"
            cands = [
                (
                    t,
                    (
                        (1 - t) ** 2 * p0[0] + 2 * t * (1 - t) * cx + t * t * p2[0],
                        (1 - t) ** 2 * p0[1] + 2 * t * (1 - t) * cy + t * t * p2[1],
                    ),
                )
                for t in (0.5, 0.4, 0.6, 0.3, 0.7)
            ]
        else:
            mids = [pos[n] for n in chain[1:-1]]
            p0 = _boundary(a, lay.half[s], mids[0] if mids else b)
            p2 = _boundary(b, lay.half[d], mids[-1] if mids else a)
            pts = [p0, *mids, p2]
            path = _smooth_path(pts) if mids else f"M {p0[0]:.1f} {p0[1]:.1f} L {p2[0]:.1f} {p2[1]:.1f}"
            cands = []
            for j in range(len(pts) - 1):
                (x1, y1), (x2, y2) = pts[j], pts[j + 1]
                for t in (0.5, 0.38, 0.62, 0.27, 0.73, 0.18, 0.82):
                    cands.append((t, (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t)))
            cands += [(0.0, pt) for pt in mids]
        geometry[i] = (path, [])
        if op is None:
            continue
        tw = 6.0 * len(op) + 6
        best, best_cost = None, math.inf
        for _, (lx, ly) in cands:
            box = (lx - tw / 2, ly - 8, lx + tw / 2, ly + 6)
            cost = sum(_overlap(box, t) for t in taken)
            if cost < best_cost:
                best, best_cost = (lx, ly, box), cost
            if cost == 0:
                break
        assert best is not None
        lx, ly, box = best
        taken.append(box)
        labels.append((i, lx, ly, tw))
    label_of = {i: (lx, ly, tw) for i, lx, ly, tw in labels}
    for i, (s, d, op) in enumerate(all_edges):
        path = geometry[i][0]
        if op is None:
            paths.append(
                f'<g class="edge" data-src="{s}" data-dst="{d}" data-op=""><path d="{path}" fill="none" '
                f'stroke="#999" stroke-width="1.2" marker-end="url(#arrow)"/></g>'
            )
            continue
        dash = ' stroke-dasharray="5,3"' if is_param_free_op(op) else ""
        lx, ly, tw = label_of[i]
        paths.append(
            f'<g class="edge" data-src="{s}" data-dst="{d}" data-op={quoteattr(op)}>'
            f'<path d="{path}" fill="none" stroke="#444" stroke-width="1.4"{dash} marker-end="url(#arrow)"/>'
            f'<rect x="{lx - tw / 2:.1f}" y="{ly - 8:.1f}" width="{tw:.1f}" height="14" rx="3" fill="white" '
            f'fill-opacity="0.85"/>'
            f'<text x="{lx:.1f}" y="{ly + 3:.1f}" text-anchor="middle" font-size="10">{escape(op)}</text></g>'
        )
    out.extend(paths)
    for n in g.nodes:
        x, y = pos[n]
        rx, ry = lay.half[n]
        if n == OUT:
            fill = "#eee8aa"
        elif isinstance(n, int) and n in g.inputs:
            fill = "#b4eeb4"
        else:
            fill = "#add8e6"
        out.append(
            f'<g class="node" data-node="{n}"><ellipse cx="{x:.1f}" cy="{y:.1f}" rx="{rx:.1f}" ry="{ry:.1f}" '
            f'fill="{fill}" stroke="#333" stroke-width="1.3"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{escape(g.labels[n])}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cell_to_svg(
    cell: CellGenotype | CellGraph,
    cell_type: str = "cell",
    *,
    num_inputs: int | None = None,
    title: str | None = None,
    engine: str = "builtin",
) -> str:
    """SVG picture of a cell.

    Args:
        cell: the cell (or a prepared :class:`CellGraph`).
        cell_type: cell type name (labels).
        num_inputs: number of cell inputs (see :func:`cell_graph`).
        title: optional title above the picture.
        engine: ``"builtin"`` (pure-Python layered layout), ``"dot"`` (Graphviz, must be on PATH) or
            ``"auto"`` (``dot`` when available, otherwise builtin).

    Raises:
        ConfigError: unknown engine. MissingDependencyError: ``engine="dot"`` without Graphviz.
    """
    g = cell if isinstance(cell, CellGraph) else cell_graph(cell, cell_type, num_inputs=num_inputs)
    if engine not in ("builtin", "dot", "auto"):
        raise ConfigError(f"unknown drawing engine {engine!r}; valid: builtin, dot, auto")
    dot_exe = shutil.which("dot") if engine in ("dot", "auto") else None
    if engine == "dot" and dot_exe is None:
        raise MissingDependencyError(
            "engine='dot' needs the Graphviz 'dot' program on PATH; use engine='builtin'"
        )
    if dot_exe is not None:
        res = subprocess.run(
            [dot_exe, "-Tsvg"], input=cell_to_dot(g), capture_output=True, text=True, timeout=60, check=False
        )
        if res.returncode == 0:
            return res.stdout
        if engine == "dot":
            raise MissingDependencyError(f"Graphviz 'dot' failed: {res.stderr.strip()}")
    return _render_svg(g, title)


def genotype_to_svgs(
    genotype: Genotype, *, num_inputs: Mapping[str, int] | None = None, engine: str = "builtin"
) -> dict[str, str]:
    """SVG picture of every cell type of a genotype, keyed by cell type."""
    ni = num_inputs or {}
    return {
        ct: cell_to_svg(c, ct, num_inputs=ni.get(ct), title=f"{genotype.space}: {ct}", engine=engine)
        for ct, c in genotype.cells.items()
    }
