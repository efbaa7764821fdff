"""Self-contained clustering report: confusion matrix and 2-D PCA projection as SVG, plus an HTML page.

Only the standard library and numpy are used (no plotting dependency). Files are written atomically.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datanas_core.errors import DataError
from datanas_core.io import atomic_write_text
from datanas_fewshot.cluster.metrics import contingency_matrix, hungarian_match

__all__ = ["confusion_svg", "matched_confusion", "pca_2d", "projection_svg", "write_report"]

logger = logging.getLogger(__name__)

_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def matched_confusion(labels_true: Any, labels_pred: Any) -> tuple[np.ndarray, list[int], list[int]]:
    """Confusion matrix with rows = classes and columns = clusters reordered by their Hungarian match.

    Returns:
        ``(matrix, class_ids, cluster_ids)``; matched clusters come first, in the order of their classes.
    """
    table, pred_ids, true_ids = contingency_matrix(labels_true, labels_pred)
    match = hungarian_match(labels_true, labels_pred)
    by_class = {c: p for p, c in match.items()}
    order = [by_class[c] for c in true_ids.tolist() if c in by_class]
    order += [p for p in pred_ids.tolist() if p not in match]
    pos = {p: i for i, p in enumerate(pred_ids.tolist())}
    mat = table.T[:, [pos[p] for p in order]]
    return mat, true_ids.tolist(), order


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project ``[N, D]`` onto its first two principal components (deterministic sign)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[0] < 2:
        raise DataError(f"PCA needs at least 2 points, got {x.shape[0]}")
    xc = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
    signs[signs == 0] = 1
    return xc @ (comps * signs[:, None]).T


def confusion_svg(
    matrix: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], *, title: str = "", cell: int = 34
) -> str:
    """A heat-map SVG of a count matrix with the counts written in the cells."""
    rows, cols = matrix.shape
    left, top = 70, 50 if title else 30
    w, h = left + cols * cell + 10, top + rows * cell + 40
    vmax = max(int(matrix.max()), 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="10">'
    ]
    if title:
        out.append(f'<text x="{left}" y="18" font-size="13">{html.escape(title)}</text>')
    for j, name in enumerate(col_names):
        x = left + j * cell + cell / 2
        out.append(f'<text x="{x:.1f}" y="{top - 6}" text-anchor="middle">{html.escape(str(name))}</text>')
    for i, name in enumerate(row_names):
        y = top + i * cell + cell / 2 + 4
        out.append(f'<text x="{left - 6}" y="{y:.1f}" text-anchor="end">{html.escape(str(name))}</text>')
        for j in range(cols):
            v = int(matrix[i, j])
            shade = int(255 - 215 * v / vmax)
            out.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                f'fill="rgb({shade},{shade},255)" stroke="#ddd"/>'
            )
            colour = "#fff" if v > vmax * 0.6 else "#000"
            out.append(
                f'<text x="{left + j * cell + cell / 2:.1f}" y="{top + i * cell + cell / 2 + 4:.1f}" '
                f'text-anchor="middle" fill="{colour}">{v}</text>'
            )
    out.append(f'<text x="{left}" y="{h - 8}">rows: true class; columns: matched cluster</text>')
    out.append("</svg>")
    return "\n".join(out)


def projection_svg(
    points: np.ndarray,
    labels: Any,
    *,
    title: str = "",
    size: int = 420,
    max_points: int = 3000,
    seed: int = 0,
) -> str:
    """Scatter SVG of 2-D points coloured by ``labels`` (a seeded subsample of at most ``max_points``)."""
    pts = np.asarray(points, dtype=np.float64)
    lab = np.asarray(labels).astype(np.int64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(lab) != len(pts):
        raise DataError(f"need [N, 2] points and N labels, got {pts.shape} and {lab.shape}")
    if len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts, lab = pts[keep], lab[keep]
    lo, hi = pts.min(0), pts.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pad, top = 10, 30 if title else 10
    xy = (pts - lo) / span * (size - 2 * pad) + pad
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 90}" height="{size + top}" '
        'font-family="sans-serif" font-size="11">'
    ]
    if title:
        out.append(f'<text x="{pad}" y="18" font-size="13">{html.escape(title)}</text>')
    out.append(f'<rect x="0" y="{top}" width="{size}" height="{size}" fill="none" stroke="#ccc"/>')
    for (x, y), c in zip(xy, lab, strict=True):
        colour = _PALETTE[int(c) % len(_PALETTE)]
        out.append(
            f'<circle cx="{x:.1f}" cy="{top + size - y:.1f}" r="1.8" fill="{colour}" fill-opacity="0.7"/>'
        )
    for i, c in enumerate(sorted(set(lab.tolist()))):
        out.append(
            f'<circle cx="{size + 15}" cy="{top + 12 + 16 * i}" r="5" fill="{_PALETTE[c % len(_PALETTE)]}"/>'
        )
        out.append(f'<text x="{size + 25}" y="{top + 16 + 16 * i}">{c}</text>')
    out.append("</svg>")
    return "\n".join(out)


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    labels: Any,
    predictions: Mapping[str, Any],
    embeddings: np.ndarray,
    scores: Mapping[str, Mapping[str, float]],
    title: str = "datanas clustering report",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``confusion_<name>.svg`` per prediction, ``projection.svg`` and ``report.html`` into ``out_dir``.

    Args:
        labels: ground-truth class ids.
        predictions: name -> cluster ids (e.g. ``{"kmeans": ..., "head": ...}``).
        embeddings: ``[N, D]`` embeddings, projected with PCA.
        scores: name -> metric dict (rows of the HTML table).
        extra: more key/value pairs for the HTML page (genotype, configuration).

    Returns:
        The path of ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif'>",
        f"<h1>{html.escape(title)}</h1>",
        "<table border='1' cellpadding='4' style='border-collapse:collapse'><tr><th>assignment</th>",
    ]
    metric_names = sorted({m for s in scores.values() for m in s})
    parts += [f"<th>{html.escape(m)}</th>" for m in metric_names] + ["</tr>"]
    for name, s in scores.items():
        cells = "".join(f"<td>{s[m]:.4f}</td>" if m in s else "<td></td>" for m in metric_names)
        parts.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    parts.append("</table>")
    for name, pred in predictions.items():
        mat, rows, cols = matched_confusion(labels, pred)
        svg = confusion_svg(mat, [str(r) for r in rows], [str(c) for c in cols], title=f"confusion ({name})")
        atomic_write_text(out / f"confusion_{name}.svg", svg)
        parts.append(f"<h2>Confusion matrix: {html.escape(name)}</h2>{svg}")
    proj = pca_2d(embeddings)
    svg = projection_svg(proj, labels, title="PCA of embeddings (colour: true class)")
    atomic_write_text(out / "projection.svg", svg)
    parts.append(f"<h2>2-D projection</h2>{svg}")
    if extra:
        parts.append("<h2>Details</h2><pre>")
        parts += [html.escape(f"{k}: {v}") + "\n" for k, v in extra.items()]
        parts.append("</pre>")
    parts.append("</body></html>")
    path = atomic_write_text(out / "report.html", "\n".join(parts))
    logger.info("clustering report written to %s", path)
    return path
