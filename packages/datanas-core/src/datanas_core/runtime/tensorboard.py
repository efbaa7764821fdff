"""What a run writes to TensorBoard, record by record (called by :meth:`RunDir.append_metrics`).

Step and epoch records of metrics.jsonl become:

* scalars ``<kind>/<key>`` for numbers and ``<kind>/<key>/<sub>`` for numbers one mapping deep (e.g.
  ``epoch/benchmark/cifar10``); the genotype document and the probabilities are not scalars;
* per epoch and cell type, the architecture probabilities as a histogram ``alpha/<cell type>`` and as an
  image ``alpha_image/<cell type>`` (edges as rows, ops as columns, coloured relative to the uniform ``1/K``
  like the report's heatmaps: white uniform, red above (full at the largest), blue below (full at the
  smallest));
* per epoch, the derived genotype as text ``genotype`` (one line per kept edge).

Everything is plotted at the record's global step. Writers without ``add_histogram``/``add_image``/
``add_text`` (test doubles) get the scalars only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datanas_core.runtime._jsonutil import is_number
from datanas_core.runtime.svg import diverging_color

__all__ = ["alpha_image", "genotype_text", "log_record"]

_SKIP = frozenset({"kind", "step", "epoch", "batch", "time", "genotype", "probs"})


def log_record(writer: Any, record: Mapping[str, Any]) -> None:
    """Write one metrics record (``kind`` ``"step"`` or ``"epoch"``) to a TensorBoard ``SummaryWriter``."""
    kind = record.get("kind")
    if kind not in ("step", "epoch"):
        return
    x = record.get("step")
    if not is_number(x):
        return
    step = int(x)
    for k, v in record.items():
        if k in _SKIP:
            continue
        if is_number(v):
            writer.add_scalar(f"{kind}/{k}", float(v), step)
        elif isinstance(v, Mapping):
            for k2, v2 in v.items():
                if is_number(v2):
                    writer.add_scalar(f"{kind}/{k}/{k2}", float(v2), step)
    probs = record.get("probs")
    if isinstance(probs, Mapping):
        hist = getattr(writer, "add_histogram", None)
        image = getattr(writer, "add_image", None)
        for ct, rows in probs.items():
            if not rows:
                continue
            if hist is not None:
                import numpy as np

                hist(f"alpha/{ct}", np.asarray(rows, dtype=np.float64).ravel(), step)
            if image is not None:
                image(f"alpha_image/{ct}", alpha_image(rows), step, dataformats="HWC")
    genotype = record.get("genotype")
    text = getattr(writer, "add_text", None)
    if isinstance(genotype, Mapping) and text is not None:
        text("genotype", genotype_text(genotype), step)


def alpha_image(rows: Sequence[Sequence[float]], *, cell: int = 12) -> Any:
    """``(edges * cell, ops * cell, 3)`` uint8 image of one cell type's probabilities, relative to uniform."""
    import numpy as np

    k = max(len(r) for r in rows)
    center = 1.0 / k
    flat = [float(v) for r in rows for v in r]
    above = max(max(flat) - center, 1e-4)
    below = max(center - min(flat), 1e-4)
    img = np.full((len(rows), k, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            d = float(v) - center
            c = diverging_color(d / above if d >= 0 else d / below)
            img[i, j] = [int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)]
    return np.repeat(np.repeat(img, cell, axis=0), cell, axis=1)


def genotype_text(genotype: Mapping[str, Any]) -> str:
    """Markdown of a genotype document: one line per kept ``src -> dst: op`` edge per cell type."""
    lines = [f"space `{genotype.get('space', '?')}`", ""]
    for ct, cell in (genotype.get("cells") or {}).items():
        edges = cell.get("edges", []) if isinstance(cell, Mapping) else []
        body = ", ".join(f"{e[0]}->{e[1]} {e[2]}" for e in edges if isinstance(e, Sequence) and len(e) >= 3)
        concat = cell.get("concat") if isinstance(cell, Mapping) else None
        lines.append(f"- **{ct}**: {body}" + (f" (concat {list(concat)})" if concat else ""))
    return "\n".join(lines)
