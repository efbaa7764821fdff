"""Progressive edge decisions: fix the search's most certain edges one at a time.

A sampled estimator at a short budget keeps moving its architecture distribution until the last step, and
the longer the supernet trains the more it drifts to parameter-free ops (skip, pooling): the cell derived at
the end is neither decided nor the best the search saw. With ``SearchConfig.progressive_decisions =
(start, end)`` the searcher decides the edges greedily, in the spirit of SGAS (Li et al., CVPR 2020, "SGAS:
Sequential Greedy Architecture Search"): between the fractions ``start`` and ``end`` of the architecture
steps (counted after the warm-up, as in :func:`~datanas_core.schedules.arch_step_position`) the number of
decided edges grows linearly from 0 to all; each time one is due, the undecided edge whose top op leads the
runner-up by the largest probability margin is fixed to that op (a one-op pruning mask on the estimator:
probability 1, always sampled, no further gradient to that row). The remaining edges keep searching with the
decided ones in place; after ``end`` the search only trains the weights of the chosen cell, so the derived
cell cannot change any more.

The criterion is SGAS' "selection certainty" read as a top-1 margin (SGAS multiplies it by an edge-importance
term that only matters where edges compete for a node's inputs; the derivation rule still selects edges in
DARTS-like spaces). The margin is a guess that fits every estimator's deterministic probabilities; it is
configurable only through the window.

Everything is a pure function of the architecture parameters, the masks (saved in checkpoints with the
estimator state) and the global step, so a resumed search decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from datanas_core.schedules import arch_step_position

__all__ = ["decided_edges", "due_decisions", "progressive_decide"]

logger = logging.getLogger(__name__)


def due_decisions(window: tuple[float, float], k: int, total: int, num_edges: int) -> int:
    """How many edges must be decided once architecture step ``k`` (0-based) of ``total`` has run.

    Grows linearly from 0 at the fraction ``start`` of the architecture steps to ``num_edges`` at ``end``
    (rounded down, so the first decision happens strictly after ``start``).

    Example:
        >>> [due_decisions((0.0, 0.5), k, 10, 4) for k in range(10)]
        [0, 1, 2, 3, 4, 4, 4, 4, 4, 4]
    """
    start, end = float(window[0]), float(window[1])
    frac = (int(k) + 1) / max(1, int(total))
    if frac >= end:
        return num_edges
    share = (frac - start) / (end - start)
    return max(0, min(num_edges, math.floor(share * num_edges + 1e-9)))


def _masks(distribution: Any) -> dict[str, torch.Tensor]:
    out = {}
    for ct, spec in distribution.cells.items():
        logits = distribution.logits[ct]
        m = distribution.estimator.mask_of(spec, logits)
        out[ct] = torch.ones_like(logits, dtype=torch.bool) if m is None else m.clone()
    return out


def _one_op_rows(masks: dict[str, torch.Tensor]) -> int:
    return sum(int((m.sum(dim=-1) == 1).sum()) for m in masks.values())


def decided_edges(distribution: Any) -> int:
    """Edges whose mask keeps exactly one op (decided, or pruned to one op by DrNAS' progressive stages)."""
    return _one_op_rows(_masks(distribution))


def progressive_decide(searcher: Any) -> dict[str, float]:
    """Decide the edges that are due at ``searcher.global_step`` (see the module docstring).

    Returns ``{"decided_edges": n}`` for the step logs, empty when ``progressive_decisions`` is off or the
    architecture warm-up is not over.
    """
    cfg = searcher.config
    window = cfg.progressive_decisions
    if window is None or searcher.epoch < cfg.arch_warmup_epochs:
        return {}
    dist = searcher.distribution
    k, total = arch_step_position(cfg, getattr(searcher, "steps_per_epoch", None), searcher.global_step)  # type: ignore[arg-type]
    masks = _masks(dist)
    num_edges = sum(spec.num_edges for spec in dist.cells.values())
    decided = _one_op_rows(masks)
    target = due_decisions(window, k, total, num_edges)
    if decided >= target:
        return {"decided_edges": float(decided)}
    with torch.no_grad():
        probs = {ct: p.detach().float().cpu() for ct, p in dist.probs().items()}
    changed: set[str] = set()
    while decided < target:
        best: tuple[float, str, int, int] | None = None
        for ct, spec in dist.cells.items():
            m = masks[ct].cpu()
            p = probs[ct].masked_fill(~m, -1.0)
            for r in range(spec.num_edges):
                if int(m[r].sum()) <= 1:
                    continue
                top = torch.topk(p[r], 2)
                margin = float(top.values[0] - top.values[1])
                if best is None or margin > best[0]:
                    best = (margin, ct, r, int(top.indices[0]))
        if best is None:  # every edge already holds one op
            break
        margin, ct, r, op = best
        row = torch.zeros_like(masks[ct][r])
        row[op] = True
        masks[ct][r] = row
        changed.add(ct)
        decided += 1
        spec = dist.cells[ct]
        logger.info(
            "decided edge %s: %s (margin %.3f) at architecture step %d of %d (%d of %d edges decided)",
            spec.edge_key(r),
            spec.ops[op],
            margin,
            k + 1,
            total,
            decided,
            num_edges,
        )
    for ct in changed:
        dist.set_mask(ct, masks[ct])
    return {"decided_edges": float(decided)}
