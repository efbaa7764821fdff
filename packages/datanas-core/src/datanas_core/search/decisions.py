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

Spaces whose derivation rule keeps ``k`` inputs per node (``topk_edges``: DARTS, DrNAS, the RNN space's
``k=1``; ``topk_pairs``: GDAS) and whose cells have a ``none`` op that the rule excludes decide node by node,
as SGAS does. A decided edge has probability 1 on its op, so every decided edge of a node ties on the rule's
edge strength and the rule would pick its k among them by row order, not by the decisions. Here, once a node
holds ``k`` decided edges whose op is not ``none``, its remaining undecided edges are fixed to ``none``
(logged as pruned; they count as decided edges in the due count). An edge whose own top op is ``none`` is
decided to ``none`` (it does not count towards the node's ``k``) only while the node's other undecided edges
can still fill its ``k`` places; otherwise it is fixed to its best non-``none`` op, because the rule keeps
``min(k, in-degree)`` inputs per node whatever their probabilities and would fill a missing place with a
``none`` edge under an arbitrary op. So at the end of the window every intermediate node holds exactly
``min(k, in-degree)`` non-``none`` decided edges, all its other edges are ``none``, and the derived cell is
exactly the decided edges, independent of tie-breaking (every estimator gives a one-op row probability
exactly 1 on its op and no gradient, whatever its logit). Only masks set by something else (DrNAS' op pruning) could leave a node
short; decisions never do.

Order of the decisions. Elsewhere (NB201's ``argmax_edge``, DATA's ``data`` rule, no ``none`` op) the
criterion is SGAS' "selection certainty" read as a top-1 margin, unchanged. In keep-k cells the margin is
multiplied by SGAS' edge importance, the probability mass of the edge's non-``none`` ops (``1 - p_none``):
there the decisions that shape the cell are the ``k`` kept edges per node, and an edge that is confidently
``none`` (large margin, little non-``none`` mass) is exactly what the node's pruning drops anyway, so it should
be decided late instead of spending early decisions; among the edges that will carry an op the more certain
still goes first. For an edge that must be kept (see above) the margin is the lead of its best non-``none``
op over the next allowed non-``none`` op (0 when there is none). Ties go to the first cell type, then the
lower edge row. The margin is a guess that fits every estimator's deterministic probabilities; it is
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

__all__ = ["decided_edges", "due_decisions", "node_quota", "progressive_decide"]

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


def node_quota(searcher: Any) -> tuple[int, tuple[str, ...]] | None:
    """``(k, excluded ops)`` when the search's derivation rule keeps ``k`` inputs per node, else ``None``.

    The rule is resolved as :meth:`Searcher.derive` resolves it (``SearchConfig.rule`` / ``rule_options``,
    else the space's default rule with its default options); ``topk_edges`` and ``topk_pairs`` keep ``k``
    inputs per node, every other rule keeps a variable number (``data``, ``threshold``) or every edge
    (``argmax_edge``). A rule that cannot be built here counts as having no ``k``.
    """
    from datanas_core.derive import TopKEdges, TopKPairs, build_rule

    cfg = searcher.config
    space = getattr(searcher, "space", None)
    if space is None:
        space = getattr(searcher.distribution, "space", None)
    default = getattr(space, "default_rule", "topk_edges")
    rule: Any = cfg.rule
    if cfg.rule_options:
        rule = {"type": rule or default, **cfg.rule_options}
    if rule is None:
        options = dict(getattr(space, "default_rule_options", None) or {})
        rule = {"type": default, **options} if options else default
    try:
        built = build_rule(rule)
    except Exception:  # noqa: BLE001 - a rule this module cannot build keeps the plain behaviour
        return None
    if isinstance(built, (TopKEdges, TopKPairs)):
        return int(built.k), tuple(built.exclude)
    return None


def _log_decision(
    spec: Any, r: int, op: int, margin: float, k: int, total: int, decided: int, num_edges: int
) -> None:
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


class _Nodes:
    """Per-node bookkeeping of one keep-k cell type: places ``min(k, in-degree)``, excluded op columns."""

    def __init__(self, spec: Any, k: int, exclude: tuple[str, ...]) -> None:
        self.spec = spec
        self.none = spec.ops.index("none")
        self.excluded = torch.tensor([op in exclude for op in spec.ops], dtype=torch.bool)
        self.node_of = [dst for _, dst in spec.edges]
        self.rows = {node: spec.in_edges(node) for node in set(self.node_of)}
        self.places = {node: min(k, len(rows)) for node, rows in self.rows.items()}

    def state(self, m: torch.Tensor, node: int) -> tuple[int, list[int]]:
        """``(decided non-excluded edges, undecided rows)`` of ``node`` under mask ``m``."""
        kept, open_rows = 0, []
        for r in self.rows[node]:
            n = int(m[r].sum())
            if n > 1:
                open_rows.append(r)
            elif n == 1 and not bool(self.excluded[int(m[r].nonzero()[0, 0])]):
                kept += 1
        return kept, open_rows


def _decide(
    dist: Any,
    masks: dict[str, torch.Tensor],
    probs: dict[str, torch.Tensor],
    decided: int,
    target: int,
    pos: tuple[int, int, int],
    nodes: dict[str, _Nodes],
) -> tuple[int, set[str]]:
    """Decide edges until ``target`` (see the module docstring): the plain top-1 margin in cell types without
    an entry in ``nodes`` (NB201, the ``data`` rule, no ``none`` op), node-aware in the keep-k ones."""
    k, total, num_edges = pos
    changed: set[str] = set()

    def prune(ct: str, node: int) -> int:
        nd = nodes[ct]
        kept, open_rows = nd.state(masks[ct], node)
        if kept < nd.places[node]:
            return 0
        for r in open_rows:
            row = torch.zeros_like(masks[ct][r])
            row[nd.none] = True
            masks[ct][r] = row
            changed.add(ct)
            logger.info(
                "pruned edge %s: none (node %d holds its %d decided input(s)) at architecture step %d of %d "
                "(%d of %d edges decided)",
                nd.spec.edge_key(r),
                node,
                kept,
                k + 1,
                total,
                decided + open_rows.index(r) + 1,
                num_edges,
            )
        return len(open_rows)

    # nodes already full (masks set elsewhere, e.g. DrNAS' pruning) lose their other edges first
    for ct, nd in nodes.items():
        for node in sorted(nd.rows):
            decided += prune(ct, node)
    while decided < target:
        best: tuple[float, float, str, int, int] | None = None
        for ct, spec in dist.cells.items():
            m = masks[ct].cpu()
            p = probs[ct].masked_fill(~m, -1.0)
            nd = nodes.get(ct)
            must_keep: dict[int, bool] = {}
            if nd is not None:
                for node in nd.rows:
                    kept, open_rows = nd.state(m, node)
                    must_keep[node] = len(open_rows) - 1 < nd.places[node] - kept
            for r in range(spec.num_edges):
                if int(m[r].sum()) <= 1:
                    continue
                if nd is None:
                    top = torch.topk(p[r], 2)
                    score = margin = float(top.values[0] - top.values[1])
                    op = int(top.indices[0])
                else:
                    cand = m[r] & ~nd.excluded if must_keep[nd.node_of[r]] else m[r]
                    if not bool(cand.any()):  # only excluded ops left on the row: plain top op
                        cand = m[r]
                    q = probs[ct][r].masked_fill(~cand, -1.0)
                    op = int(torch.argmax(q))  # the first maximum: lower op column on ties
                    runner_up = max(0.0, float(q.masked_fill(torch.arange(len(q)) == op, -1.0).max()))
                    margin = float(q[op]) - runner_up
                    mass = float(probs[ct][r].masked_fill(~m[r] | nd.excluded, 0.0).sum())
                    score = margin * mass
                if best is None or score > best[0]:
                    best = (score, margin, ct, r, op)
        if best is None:  # every edge already holds one op
            break
        _, margin, ct, r, op = best
        row = torch.zeros_like(masks[ct][r])
        row[op] = True
        masks[ct][r] = row
        changed.add(ct)
        decided += 1
        _log_decision(dist.cells[ct], r, op, margin, k, total, decided, num_edges)
        if ct in nodes:
            decided += prune(ct, nodes[ct].node_of[r])
    return decided, changed


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
    quota = node_quota(searcher)
    nodes: dict[str, _Nodes] = {}
    if quota is not None:
        per_node, exclude = quota
        nodes = {
            ct: _Nodes(spec, per_node, exclude)
            for ct, spec in dist.cells.items()
            if "none" in spec.ops and "none" in exclude
        }
    decided, changed = _decide(dist, masks, probs, decided, target, (k, total, num_edges), nodes)
    for ct in changed:
        dist.set_mask(ct, masks[ct])
    return {"decided_edges": float(decided)}
