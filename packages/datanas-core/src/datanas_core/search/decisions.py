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

Measured criteria (``SearchConfig.decision_criterion``). The margin is read off the architecture parameters,
and at a short budget the margins are tiny (0.002-0.005 on NB201 at a few hundred CPU steps): the decisions
then follow the noise and bias of the architecture gradient, and the cells found vary widely between seeds.
DARTS-PT (Wang et al., ICLR 2021, "Rethinking Architecture Selection in Differentiable NAS") showed that
choosing an op by its measured effect on the supernet's validation performance is far more reliable than by
its parameter's size. Two such criteria are available; they are options of progressive decisions, not part of
DATA's published method:

- ``"fix"``: for every undecided edge ``r`` (every cell type) and every op ``j`` its mask still allows, the mean
  task loss (``Searcher.forward_loss(batch, arch, kind="decision")``, the supernet's validation loss without
  regularisers, under ``torch.no_grad()``) of the supernet with ``r`` fixed to ``j`` (a one-op mask row) and
  every other edge drawn from the current distribution by the estimator's own ``sample`` (honouring the other
  masks). The edge decided next is the one with the largest gap between its runner-up op's loss and its best
  op's loss; it is fixed to its best (lowest-loss) op.
- ``"remove"`` (DARTS-PT's perturbation): candidate ``(r, j)`` is the supernet with op ``j`` *removed* from
  ``r``'s mask (the estimator samples among the remaining ops). The op whose removal increases the loss most
  is the edge's op; the edge decided next is the one with the largest gap between its best and second-best
  op's loss increase (the increase over the unperturbed supernet is logged; the gap does not depend on it).
  On a row with two allowed ops both criteria measure the same two networks. With a hard-sampling estimator
  (EGS, GDAS) and common random numbers, removing an op that none of the measured samples drew on that edge
  leaves every sample unchanged (an increase of exactly 0), so ``"remove"`` tells apart only the ops the
  samples contain; ``"fix"`` measures every allowed op. DARTS-PT's own setting is the deterministic mixture
  (``estimator="softmax"``), where every op contributes.

Measured outcome (NB201 study budget, EGS M=4 ``data_decide``, seed 0, 2026-12-07): ``"fix"`` is *not* a
better criterion there. Its first four decisions were ``0->3 skip_connect``, ``2->3 none``, ``1->3
avg_pool_3x3`` and ``0->1 none``: with the other edges drawn from the ensemble sampler, the supernet's loss is
lowest when an edge contributes nothing or little (loss gaps of 0.002-0.025), so the criterion walks the cell
to ``none``/pooling, and each round cost 12-52 s on the shared machine. The search was stopped there. What
helped instead was deciding later (``progressive_decisions=(0.3, 0.8)``, see the NB201 study README).

Each candidate's loss is the mean over ``decision_samples`` architecture samples x ``decision_batches``
held-out batches, with common random numbers: every candidate sees the same batches, and its samples come from
a dedicated ``torch.Generator`` re-seeded for each candidate from ``(config.seed, global_step)`` (never the
searcher's generator), so candidates differ only in the measured edge and the searcher's random streams are
unchanged. The global RNG (dropout in the RNN space) is forked and re-seeded the same way, then restored. A
decision round costs ``candidates x decision_samples x decision_batches`` forward passes per decided edge
(``"remove"`` one set more for the unperturbed baseline), with ``candidates`` the allowed ops of all undecided
edges: NB201's first decision measures 6 edges x 5 ops = 30 candidates, 480 forwards at the defaults (8
batches x 2 samples): 35 s for a C=8, N=1 supernet at batch 64 of 32x32 images on one CPU thread of a shared
machine, about 60 search steps (EGS M=4) of the same supernet; the six decisions of a search measure 105
candidate sets in all, about 3.5 times that. When several edges are due at one step they are decided one after the other, each
measured with the previous ones in place.

The supernet is measured in training mode, as the search steps compute the architecture loss: NB201's and
DARTS' supernets use non-affine BatchNorm that tracks running statistics, but those are a running mean over
the sampled mixtures of every past step, not the statistics of a network with one edge fixed, so eval mode
would score candidates with mismatched normalisation. Every buffer (the running statistics included) is saved
before the measurement and restored after it, so a measurement changes neither the weights, the BN buffers,
the architecture parameters, the masks (each temporary mask is restored with ``set_mask``; a cell type without
a mask gets none back) nor any generator.

The held-out batches are ``searcher.decision_batches``. :meth:`Searcher.fit` fills them once, before the first
step (also after a resume), with the first ``decision_batches`` batches of the validation loader (the
architecture split) at a fixed epoch: a loader with ``set_epoch`` (the vision loaders, core's
``DeterministicLoader``; the runner's ``EpochStream`` is unwrapped to the loader it cycles) is set to epoch 0,
read, and set back to the epoch it was at, so the batches are the same in a resumed run and the search's own
validation stream is untouched; another iterable gives the first batches of a fresh iterator (deterministic
when its order is). The consistency monitor's fixed ``eval_loader`` is not used: ``run_search`` does not pass
it to ``fit``, and the decision batches should be what every caller of ``fit`` gets. Code that calls
``Searcher.step`` directly sets ``searcher.decision_batches = [...]``; a measured criterion without batches is a
:class:`~datanas_core.errors.ConfigError`, never a silent fallback to the margin.

Keep-k cells (the node rules above: ``topk_edges``/``topk_pairs`` with an excluded ``none`` op, i.e. DARTS-like
spaces and the RNN space's ``k=1``) support only the margin: a measured criterion there is refused with a
:class:`~datanas_core.errors.ConfigError` when the search starts (and at the first decision of a searcher
stepped by hand). NB201 (``argmax_edge``), the ``data`` rule and spaces without a ``none`` op are supported.

Everything is a pure function of the architecture parameters, the masks (saved in checkpoints with the
estimator state), the global step and, for the measured criteria, the weights and the held-out batches, so a
resumed search decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from datanas_core.errors import ConfigError, NumericalError
from datanas_core.schedules import arch_step_position

__all__ = [
    "check_decision_criterion",
    "decided_edges",
    "decision_batches_from",
    "due_decisions",
    "measure_candidates",
    "node_quota",
    "prepare_decision_batches",
    "progressive_decide",
]

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


def _decided_row(row: torch.Tensor, op: int) -> torch.Tensor:
    """A mask row that keeps only op column ``op`` (a decided or pruned edge)."""
    out = torch.zeros_like(row)
    out[op] = True
    return out


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
            masks[ct][r] = _decided_row(masks[ct][r], nd.none)
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
        masks[ct][r] = _decided_row(masks[ct][r], op)
        changed.add(ct)
        decided += 1
        _log_decision(dist.cells[ct], r, op, margin, k, total, decided, num_edges)
        if ct in nodes:
            decided += prune(ct, nodes[ct].node_of[r])
    return decided, changed


def _keep_k_nodes(searcher: Any) -> dict[str, _Nodes]:
    """The keep-k cell types of the search (see the module docstring), empty when the rule keeps no ``k``."""
    quota = node_quota(searcher)
    if quota is None:
        return {}
    per_node, exclude = quota
    return {
        ct: _Nodes(spec, per_node, exclude)
        for ct, spec in searcher.distribution.cells.items()
        if "none" in spec.ops and "none" in exclude
    }


_MEASURED = ("fix", "remove")


def check_decision_criterion(searcher: Any) -> None:
    """Refuse a measured ``decision_criterion`` in keep-k cells (see the module docstring).

    Raises:
        ConfigError: ``decision_criterion`` is ``"fix"`` or ``"remove"`` and the derivation rule keeps ``k``
            inputs per node of a cell type with an excluded ``none`` op.
    """
    cfg = searcher.config
    criterion = cfg.decision_criterion
    if cfg.progressive_decisions is None or criterion == "margin":
        return
    nodes = _keep_k_nodes(searcher)
    if nodes:
        raise ConfigError(
            f"decision_criterion={criterion!r} is not supported in keep-k cells (cell type(s) "
            f"{', '.join(sorted(nodes))}: the derivation rule keeps k inputs per node and excludes 'none'); "
            "valid there: 'margin' (the measured criteria 'fix' and 'remove' work with argmax_edge, e.g. NB201, "
            "and the data rule)"
        )


def decision_batches_from(loader: Iterable[Any], n: int) -> list[Any]:
    """The first ``n`` batches of ``loader`` at a fixed epoch (see the module docstring).

    A loader with ``set_epoch`` (or a wrapper whose ``.loader`` has one, the runner's ``EpochStream``) is set
    to epoch 0, read, and set back to the epoch it would have run next; any other iterable gives the first
    batches of a fresh iterator.
    """
    inner: Any = loader
    if not callable(getattr(inner, "set_epoch", None)):
        wrapped = getattr(loader, "loader", None)
        if callable(getattr(wrapped, "set_epoch", None)):
            inner = wrapped
    set_epoch = getattr(inner, "set_epoch", None)
    if not callable(set_epoch):
        return list(_take(iter(loader), n))
    pending = getattr(inner, "next_epoch", None)  # core's DeterministicLoader
    if isinstance(pending, bool) or not isinstance(pending, int):
        pending = getattr(inner, "epoch", None)  # the vision ImageLoader: the epoch of the next iteration
    set_epoch(0)
    try:
        return list(_take(iter(inner), n))
    finally:
        if isinstance(pending, int) and not isinstance(pending, bool):
            set_epoch(pending)


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for i, batch in enumerate(it):
        if i >= n:
            break
        yield batch


def prepare_decision_batches(searcher: Any, loader: Iterable[Any] | None) -> None:
    """Check the criterion and fill ``searcher.decision_batches`` from ``loader`` when a measured criterion
    needs them and none are set (called by :meth:`Searcher.fit` before the first step)."""
    cfg = searcher.config
    if cfg.progressive_decisions is None or cfg.decision_criterion == "margin":
        return
    check_decision_criterion(searcher)
    if getattr(searcher, "decision_batches", None):
        return
    if loader is None:
        raise ConfigError(
            f"decision_criterion={cfg.decision_criterion!r} measures the supernet on held-out batches, but the "
            "search has no validation loader; pass one to fit or set searcher.decision_batches = [batch, ...]"
        )
    searcher.decision_batches = decision_batches_from(loader, int(cfg.decision_batches))


def _held_out(searcher: Any) -> list[Any]:
    cfg = searcher.config
    batches = list(getattr(searcher, "decision_batches", None) or [])[: int(cfg.decision_batches)]
    if not batches:
        raise ConfigError(
            f"decision_criterion={cfg.decision_criterion!r} measures the supernet on held-out batches, but "
            "searcher.decision_batches is empty: Searcher.fit takes them from the validation loader; set "
            "searcher.decision_batches = [batch, ...] when calling step() yourself"
        )
    return batches


def _measure_seed(seed: int, global_step: int) -> int:
    """The seed of a decision round's sample generator: a function of the config seed and the step only."""
    return (int(seed) * 1_000_003 + 7_919 * (int(global_step) + 1) + 424_242) % (2**62)


def _seed_global(seed: int, device: torch.device) -> None:
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index or torch.cuda.current_device()].manual_seed(seed)


def _mean_loss(searcher: Any, batches: list[Any], seed: int) -> float:
    """The mean task loss over ``decision_samples`` samples x ``batches``, the samples drawn from a generator
    seeded with ``seed`` (the same for every candidate: common random numbers)."""
    from datanas_core.search.task import split_loss

    dist = searcher.distribution
    gen = torch.Generator().manual_seed(seed)
    _seed_global(seed, searcher.device)
    forward = getattr(searcher, "forward_loss", None)
    total, count = 0.0, 0
    for _ in range(int(searcher.config.decision_samples)):
        arch = dist.sample(generator=gen)
        for batch in batches:
            if callable(forward):
                out = forward(batch, arch, kind="decision")
            else:
                out = searcher.task.loss(searcher.supernet, batch, arch)
            loss, _ = split_loss(out)
            value = float(loss)
            if not math.isfinite(value):
                raise NumericalError(
                    f"a progressive decision measured a task loss of {value} at step {searcher.global_step}"
                )
            total += value
            count += 1
    return total / count


def measure_candidates(
    searcher: Any, criterion: str | None = None
) -> tuple[dict[tuple[str, int], torch.Tensor], float | None]:
    """Measure every candidate of a decision round (see the module docstring).

    Returns:
        ``(scores, baseline)``: ``scores[(cell type, edge row)]`` for every undecided edge, a float64 ``[K]``
        tensor with, per op the row allows, the mean loss with the edge fixed to that op (``"fix"``) or the
        loss increase when the op is removed (``"remove"``), NaN for the ops it does not allow; ``baseline``
        the unperturbed supernet's mean loss (``"remove"``; ``None`` for ``"fix"``). Nothing of the searcher
        changes.

    Raises:
        ConfigError: an unknown criterion, or no held-out batches.
    """
    cfg = searcher.config
    criterion = criterion or cfg.decision_criterion
    if criterion not in _MEASURED:
        raise ConfigError(
            f"a measured decision criterion must be one of {', '.join(_MEASURED)}; got {criterion!r}"
        )
    batches = _held_out(searcher)
    dist = searcher.distribution
    net = searcher.supernet
    saved = {ct: dist.estimator.mask_of(spec, dist.logits[ct]) for ct, spec in dist.cells.items()}
    saved = {ct: None if m is None else m.detach().cpu().clone() for ct, m in saved.items()}
    masks = _masks(dist)
    buffers = {n: b.detach().clone() for n, b in net.named_buffers()}
    was_training = net.training
    device = searcher.device
    seed = _measure_seed(cfg.seed, searcher.global_step)
    devices = [device.index or torch.cuda.current_device()] if device.type == "cuda" else []
    scores: dict[tuple[str, int], torch.Tensor] = {}
    baseline: float | None = None
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            if not was_training:
                net.train()
            if criterion == "remove":
                baseline = _mean_loss(searcher, batches, seed)
            for ct, spec in dist.cells.items():
                m = masks[ct].cpu()
                for r in range(spec.num_edges):
                    allowed = m[r].nonzero().flatten().tolist()
                    if len(allowed) <= 1:
                        continue
                    values = torch.full((spec.num_ops,), math.nan, dtype=torch.float64)
                    for j in allowed:
                        cand = m.clone()
                        if criterion == "fix":
                            cand[r] = False
                            cand[r, j] = True
                        else:
                            cand[r, j] = False
                        dist.set_mask(ct, cand)
                        loss = _mean_loss(searcher, batches, seed)
                        values[j] = loss if baseline is None else loss - baseline
                    dist.set_mask(ct, saved[ct])
                    scores[(ct, r)] = values
    finally:
        for ct, m in saved.items():
            dist.set_mask(ct, m)
        with torch.no_grad():
            for n, b in net.named_buffers():
                if n in buffers:
                    b.copy_(buffers[n])
        if not was_training:
            net.eval()
    return scores, baseline


def _rank(values: torch.Tensor, criterion: str) -> tuple[int, float, int]:
    """``(best op, gap to the runner-up, runner-up op)`` of one edge's measured values: the lowest loss
    (``"fix"``) or the largest loss increase (``"remove"``); ties go to the lower op column."""
    key = values if criterion == "fix" else -values
    key = torch.where(torch.isnan(key), torch.full_like(key, math.inf), key)
    order = torch.sort(key, stable=True).indices
    best, second = int(order[0]), int(order[1])
    return best, float(key[second] - key[best]), second


def _decide_measured(
    searcher: Any, masks: dict[str, torch.Tensor], decided: int, target: int, pos: tuple[int, int, int]
) -> int:
    """Decide edges until ``target`` with the measured criterion (one measurement per decision)."""
    cfg = searcher.config
    criterion = cfg.decision_criterion
    dist = searcher.distribution
    k, total, num_edges = pos
    while decided < target:
        t0 = time.perf_counter()
        scores, baseline = measure_candidates(searcher, criterion)
        seconds = time.perf_counter() - t0
        best: tuple[float, str, int, int, int] | None = None
        for ct, spec in dist.cells.items():  # ties: the first cell type, then the lower edge row
            for r in range(spec.num_edges):
                values = scores.get((ct, r))
                if values is None:
                    continue
                op, gap, second = _rank(values, criterion)
                if best is None or gap > best[0]:
                    best = (gap, ct, r, op, second)
        if best is None:  # every edge already holds one op
            break
        gap, ct, r, op, second = best
        masks[ct][r] = _decided_row(masks[ct][r], op)
        dist.set_mask(ct, masks[ct])
        decided += 1
        spec = dist.cells[ct]
        values = scores[(ct, r)]
        what = "loss" if criterion == "fix" else "loss increase when removed"
        logger.info(
            "decided edge %s: %s (criterion %s: gap %.4f in loss units; %s %.4f, runner-up %s %.4f%s; "
            "measured %d candidates x %d samples x %d batches in %.2f s) at architecture step %d of %d "
            "(%d of %d edges decided)",
            spec.edge_key(r),
            spec.ops[op],
            criterion,
            gap,
            what,
            float(values[op]),
            spec.ops[second],
            float(values[second]),
            "" if baseline is None else f", unperturbed loss {baseline:.4f}",
            sum(int((~torch.isnan(v)).sum()) for v in scores.values()),
            int(cfg.decision_samples),
            len(_held_out(searcher)),
            seconds,
            k + 1,
            total,
            decided,
            num_edges,
        )
    return decided


def progressive_decide(searcher: Any) -> dict[str, float]:
    """Decide the edges that are due at ``searcher.global_step`` (see the module docstring).

    Returns ``{"decided_edges": n}`` for the step logs, empty when ``progressive_decisions`` is off or the
    architecture warm-up is not over.

    Raises:
        ConfigError: a measured ``decision_criterion`` in keep-k cells, or without held-out batches.
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
    if cfg.decision_criterion != "margin":
        check_decision_criterion(searcher)
        decided = _decide_measured(searcher, masks, decided, target, (k, total, num_edges))
        return {"decided_edges": float(decided)}
    with torch.no_grad():
        probs = {ct: p.detach().float().cpu() for ct, p in dist.probs().items()}
    nodes = _keep_k_nodes(searcher)
    decided, changed = _decide(dist, masks, probs, decided, target, (k, total, num_edges), nodes)
    for ct in changed:
        dist.set_mask(ct, masks[ct])
    return {"decided_edges": float(decided)}
