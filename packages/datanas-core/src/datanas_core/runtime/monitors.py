"""Per-epoch monitors (search callbacks): search/child consistency, decision, collapse, NaN/inf guard.

Each monitor is a :class:`~datanas_core.search.Searcher` callback. Monitors add their measurements to the
epoch record (so they reach metrics.jsonl, TensorBoard and the report) and may set
``searcher.stop_requested``. Monitors that carry state across epochs implement
``state_dict()``/``load_state_dict()``; the runtime stores that state in checkpoints.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.runtime._jsonutil import is_number
from datanas_core.runtime.cellplot import is_param_free_op
from datanas_core.search.config import BUDGET_AWARE_SCHEDULE

__all__ = [
    "BUDGET_AWARE_ARGV",
    "CONSISTENCY_SAMPLES",
    "PROGRESSIVE_DECISIONS_ARGV",
    "CollapseMonitor",
    "ConsistencyMonitor",
    "DecisionMonitor",
    "NaNGuard",
    "collapse_stats",
    "decision_stats",
]

logger = logging.getLogger(__name__)


class _Limited:
    """The first batches of a loader (re-iterable): at most ``n`` batches (``None``: no cap)."""

    def __init__(self, loader: Iterable[Any], n: int | None) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Any:
        it = iter(self.loader)
        return it if self.n is None else itertools.islice(it, self.n)


#: Default size of the consistency check's held-out set (images / examples).
CONSISTENCY_SAMPLES = 2048


def _batch_size(task: Any, batch: Any) -> int:
    size_fn = getattr(task, "batch_size", None)
    if callable(size_fn):
        return int(size_fn(batch))
    return len(batch[0])


def _batch_metrics(task: Any, model: Any, batch: Any, arch: Any) -> dict[str, float]:
    from datanas_core.search.task import split_loss

    metrics_fn = getattr(task, "metrics", None)
    if callable(metrics_fn):
        return {k: float(v) for k, v in metrics_fn(model, batch, arch).items()}
    loss, m = split_loss(task.loss(model, batch, arch))
    return {"loss": float(loss), **{k: float(v) for k, v in m.items()}}


def _weighted_mean_se(values: list[float], sizes: list[int]) -> tuple[float, float]:
    """Size-weighted mean of per-batch values and its standard error (ratio estimator over batches)."""
    n_total = float(sum(sizes))
    mean = sum(v * n for v, n in zip(values, sizes, strict=True)) / n_total
    b = len(values)
    if b < 2:
        return mean, float("nan")
    ss = sum((n * (v - mean)) ** 2 for v, n in zip(values, sizes, strict=True))
    return mean, math.sqrt(ss * b / (b - 1)) / n_total


class ConsistencyMonitor:
    """Search/child consistency (DATA Table 8 protocol), every ``every`` epochs.

    Evaluates the supernet, without fine-tuning, on a fixed held-out set: the first ``min_samples`` examples
    (default 2,048, or the whole loader if it holds fewer) of ``loader``, which must yield the same batches
    in the same order every epoch (the CLIs pass a fixed-order view of the validation split). Per batch it
    computes the task metrics with a freshly sampled code ("search", the generator seeded by the seed and
    the epoch) and with the code of the architecture derived at this epoch ("child": inherited weights, ops
    outside the genotype switched off, and - as in DATA's ``genotype2weight`` - weight ``1/n`` on an edge
    that keeps ``n`` ops). Adds ``search_<m>``, ``child_<m>`` for every metric ``m``, and for ``metric``:
    ``consistency_drop = search - child`` (positive: the child is worse, for accuracy-like metrics),
    ``consistency_gap = |search - child|`` (Table 8's "gap"), their standard error ``consistency_drop_se``
    (paired, from the per-batch differences), ``search_<metric>_se`` / ``child_<metric>_se`` and
    ``consistency_samples`` (examples evaluated).

    If the epoch record already holds ``search_<metric>``/``child_<metric>`` (``fit(eval_loader=...)``)
    those values are used and nothing is re-evaluated.

    Args:
        loader: held-out batches in a fixed order.
        metric: the metric for the gap (``"acc"``; ``"loss"`` when the task reports no accuracy).
        max_batches: evaluate at most this many batches (``None``: as many as ``min_samples`` needs).
        every: run every ``every`` epochs (and always at the last epoch).
        min_samples: examples to evaluate (the batches are taken until at least this many are seen).
        weighting: ``"mean"`` (DATA: ``1/n`` per op on an edge with ``n`` ops) or ``"one"`` (weight 1).
    """

    def __init__(
        self,
        loader: Iterable[Any] | None,
        *,
        metric: str = "acc",
        max_batches: int | None = None,
        every: int = 1,
        min_samples: int | None = CONSISTENCY_SAMPLES,
        weighting: str = "mean",
    ) -> None:
        if weighting not in ("mean", "one"):
            raise ConfigError(f"weighting must be 'mean' or 'one', got {weighting!r}")
        if min_samples is not None and min_samples < 1:
            raise ConfigError(f"min_samples must be >= 1 or None, got {min_samples!r}")
        self.loader = loader
        self.metric = metric
        self.max_batches = max_batches
        self.every = max(1, int(every))
        self.min_samples = min_samples
        self.weighting = weighting

    def _evaluate(self, searcher: Any, epoch: int) -> dict[str, Any]:
        from datanas_core.search.searcher import arch_from_genotype

        assert self.loader is not None
        child_arch = arch_from_genotype(
            searcher.derive(), searcher.space, searcher.device, weighting=self.weighting
        )
        gen = torch.Generator().manual_seed(int(searcher.config.seed) + 10_000 + int(epoch))
        per: dict[str, list[float]] = {}
        sizes: list[int] = []
        model = searcher.supernet
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in _Limited(self.loader, self.max_batches):
                    sampled = searcher.distribution.sample(generator=gen)
                    s = _batch_metrics(searcher.task, model, batch, sampled)
                    c = _batch_metrics(searcher.task, model, batch, child_arch)
                    for k, v in s.items():
                        per.setdefault(f"search_{k}", []).append(v)
                    for k, v in c.items():
                        per.setdefault(f"child_{k}", []).append(v)
                    sizes.append(_batch_size(searcher.task, batch))
                    if self.min_samples is not None and sum(sizes) >= self.min_samples:
                        break
        finally:
            model.train(was_training)
        if not sizes:
            return {}
        out: dict[str, Any] = {}
        for k, vals in per.items():
            mean, se = _weighted_mean_se(vals, sizes)
            out[k] = mean
            out[f"{k}_se"] = se
        metric = self.metric if f"search_{self.metric}" in per else "loss"
        if f"search_{metric}" in per and f"child_{metric}" in per:
            diffs = [a - b for a, b in zip(per[f"search_{metric}"], per[f"child_{metric}"], strict=True)]
            _, se = _weighted_mean_se(diffs, sizes)
            out["consistency_drop_se"] = se
        out["consistency_samples"] = int(sum(sizes))
        out["consistency_weighting"] = self.weighting
        return out

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        epoch = int(record.get("epoch", searcher.epoch - 1))
        last = epoch + 1 >= searcher.config.epochs
        if not (f"search_{self.metric}" in record and f"child_{self.metric}" in record):
            if self.loader is None or ((epoch + 1) % self.every and not last):
                return
            record.update(self._evaluate(searcher, epoch))
        metric = self.metric
        if f"search_{metric}" not in record and "search_loss" in record:
            metric = "loss"
        s, c = record.get(f"search_{metric}"), record.get(f"child_{metric}")
        if is_number(s) and is_number(c):
            record["consistency_metric"] = metric
            record["consistency_drop"] = float(s) - float(c)
            record["consistency_gap"] = abs(float(s) - float(c))


def collapse_stats(
    genotype: Genotype,
    probs: Mapping[str, torch.Tensor] | None = None,
    *,
    param_free: Iterable[str] | None = None,
    ops: Mapping[str, list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Collapse indicators per cell type.

    Returns, per cell type: ``edges`` (kept edges), ``param_free`` (kept edges with a parameter-free op),
    ``param_free_share``, ``skip`` (kept skip/identity edges), ``dominant_op`` and ``dominant_share`` (the
    most frequent kept op and its share) and, when ``probs`` is given, ``entropy`` (mean per-edge entropy of
    the probabilities, normalised to [0, 1] by ``log K``), ``max_prob`` (mean largest probability per edge)
    and ``param_free_mass`` (mean probability mass on parameter-free ops).

    Args:
        genotype: the derived genotype.
        probs: ``[E, K]`` probabilities per cell type.
        param_free: names of the parameter-free ops (default: a name heuristic — skip, identity, pooling,
            none, zero).
        ops: candidate op names per cell type (columns of ``probs``), needed for ``param_free_mass``.
    """
    pf = set(param_free) if param_free is not None else None

    def is_pf(op: str) -> bool:
        return op in pf if pf is not None else is_param_free_op(op)

    out: dict[str, dict[str, Any]] = {}
    for ct, cell in genotype.cells.items():
        kept = [e.op for e in cell.edges]
        n = len(kept)
        counts = Counter(kept)
        dom, dom_n = counts.most_common(1)[0] if counts else ("", 0)
        st: dict[str, Any] = {
            "edges": n,
            "param_free": sum(1 for o in kept if is_pf(o)),
            "param_free_share": (sum(1 for o in kept if is_pf(o)) / n) if n else 0.0,
            "skip": sum(1 for o in kept if "skip" in o or "identity" in o),
            "dominant_op": dom,
            "dominant_share": dom_n / n if n else 0.0,
        }
        if probs is not None and ct in probs:
            p = probs[ct].detach().float().cpu()
            k = p.shape[-1]
            ent = -(torch.special.xlogy(p, p)).sum(-1)
            st["entropy"] = float(ent.mean() / math.log(k)) if k > 1 else 0.0
            st["max_prob"] = float(p.max(-1).values.mean())
            if ops is not None and ct in ops:
                cols = [i for i, o in enumerate(ops[ct]) if is_pf(o) and o != "none"]
                st["param_free_mass"] = float(p[:, cols].sum(-1).mean()) if cols else 0.0
        out[ct] = st
    return out


class CollapseMonitor:
    """Warns when the derived cells collapse to parameter-free ops; optionally stops the search.

    Collapse is flagged when, in any cell type, the share of kept edges with a parameter-free op exceeds
    ``max_param_free_share`` or the number of skip connections exceeds ``max_skip``. With ``early_stop``,
    the search stops after ``patience`` consecutive flagged epochs (``record["stop_reason"] = "collapse"``).

    Adds ``collapse`` (per-cell :func:`collapse_stats`), ``collapse_param_free_share`` (max over cell types),
    ``collapse_entropy`` (mean over cell types) and ``collapse_flag`` to the epoch record.

    Not checked (``collapse_flag`` false, ``collapse_skipped`` says why): during the weights-only warm-up and
    while every edge's probabilities are still exactly equal, when the derived cell comes from ties and says
    nothing about the search; and cell types in
    ``exempt_cell_types`` (default ``("reduce",)``: pooling is a legitimate choice in a reduction cell, and
    the published DARTS-V2 reduction cell is itself all max pooling; the DARTS collapse is a normal-cell
    effect). Their statistics are still recorded.
    """

    def __init__(
        self,
        *,
        max_param_free_share: float = 0.5,
        max_skip: int | None = None,
        early_stop: bool = False,
        patience: int = 3,
        param_free_ops: Iterable[str] | None = None,
        exempt_cell_types: Iterable[str] = ("reduce",),
    ) -> None:
        self.exempt_cell_types = tuple(exempt_cell_types)
        self.max_param_free_share = max_param_free_share
        self.max_skip = max_skip
        self.early_stop = early_stop
        self.patience = max(1, int(patience))
        self.param_free_ops = list(param_free_ops) if param_free_ops is not None else None
        self.flagged_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"flagged_epochs": self.flagged_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.flagged_epochs = int(state.get("flagged_epochs", 0))

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        g = record.get("genotype")
        genotype = Genotype.from_dict(g) if isinstance(g, Mapping) else searcher.derive()
        with torch.no_grad():
            probs = searcher.distribution.probs()
        ops = {ct: list(spec.ops) for ct, spec in searcher.space.cells().items()}
        stats = collapse_stats(genotype, probs, param_free=self.param_free_ops, ops=ops)
        record["collapse"] = stats
        share = max((s["param_free_share"] for s in stats.values()), default=0.0)
        record["collapse_param_free_share"] = share
        ents = [s["entropy"] for s in stats.values() if "entropy" in s]
        if ents:
            record["collapse_entropy"] = sum(ents) / len(ents)
        reasons = []
        skipped = None
        warmup = int(getattr(getattr(searcher, "config", None), "arch_warmup_epochs", 0) or 0)
        epoch = record.get("epoch")
        if isinstance(epoch, int) and epoch < warmup:
            skipped = "weights-only warm-up"
        elif all(bool((p == p[..., :1]).all()) for p in probs.values()):
            skipped = "uniform architecture distribution (the derived cell comes from ties)"
        if skipped is not None:
            record["collapse_skipped"] = skipped
            stats = {}
        for ct, s in stats.items():
            if ct in self.exempt_cell_types:
                continue
            if s["param_free_share"] > self.max_param_free_share:
                reasons.append(
                    f"{ct}: {s['param_free']}/{s['edges']} kept edges are parameter-free "
                    f"(> {self.max_param_free_share:.0%})"
                )
            if self.max_skip is not None and s["skip"] > self.max_skip:
                reasons.append(f"{ct}: {s['skip']} skip connections (> {self.max_skip})")
        record["collapse_flag"] = bool(reasons)
        if not reasons:
            self.flagged_epochs = 0
            return
        self.flagged_epochs += 1
        logger.warning(
            "possible collapse at epoch %s: %s (alpha entropy %.3f)",
            record.get("epoch"),
            "; ".join(reasons),
            record.get("collapse_entropy", float("nan")),
        )
        if self.early_stop and self.flagged_epochs >= self.patience:
            logger.warning("stopping the search: collapse for %d consecutive epochs", self.flagged_epochs)
            record["stop_reason"] = "collapse"
            searcher.stop_requested = True


def decision_stats(probs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, list[float]]]:
    """Per cell type and edge: ``margin`` (largest minus second-largest probability) and ``entropy``
    (normalised to [0, 1] by ``log K``; 1 = uniform, undecided)."""
    out: dict[str, dict[str, list[float]]] = {}
    for ct, p in probs.items():
        p = p.detach().double().cpu()
        k = p.shape[-1]
        top = torch.topk(p, min(2, k), dim=-1).values
        margin = (top[:, 0] - top[:, 1]) if k > 1 else top[:, 0]
        ent = -(torch.special.xlogy(p, p)).sum(-1) / (math.log(k) if k > 1 else 1.0)
        out[ct] = {
            "margin": [round(float(v), 6) for v in margin],
            "entropy": [round(float(v), 6) for v in ent],
        }
    return out


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return 0.0 if n == 0 else (ys[n // 2] if n % 2 else 0.5 * (ys[n // 2 - 1] + ys[n // 2]))


#: The flags of progressive edge decisions that the undecided-search verdict suggests; every domain search CLI
#: takes them (``tools/tests/test_cli_shared_options.py`` parses the verdict's flags with each CLI).
PROGRESSIVE_DECISIONS_ARGV = ("--progressive-decisions", "0.3", "0.7")
#: The flags of the budget-aware architecture schedule that the undecided-search verdict suggests (per-step
#: schedules, lr = 24 / architecture steps under a cosine decay to 0); every domain search CLI takes them.
BUDGET_AWARE_ARGV = (
    "--schedule-unit",
    str(BUDGET_AWARE_SCHEDULE["schedule_unit"]),
    "--arch-travel",
    f"{BUDGET_AWARE_SCHEDULE['arch_travel']:g}",
    "--a-lr-schedule",
    str(BUDGET_AWARE_SCHEDULE["a_lr_schedule"]),
)


class DecisionMonitor:
    """Whether the search has decided: per-edge decision statistics every epoch, a verdict at the end.

    Adds to every epoch record ``decision`` (per cell type and edge: top-op ``margin`` and normalised
    ``entropy``, see :func:`decision_stats`), ``decision_entropy`` (mean over all edges),
    ``decision_margin`` (median top-op margin), ``decision_weak_edges`` (share of edges whose margin is below
    ``min_margin``), ``genotype_stable_epochs`` (epochs the derived genotype has been unchanged, counting
    this one) and ``decided``. A search is *decided* when the mean normalised entropy is below
    ``max_entropy`` and the median margin is at least ``min_margin``. At the last epoch the record also gets
    ``decision_verdict``, a plain sentence; an undecided search is logged as a warning that says the
    derived cell is not supported by the search and what to change.

    Args:
        max_entropy: largest mean normalised entropy of a decided search.
        min_margin: smallest median top-op margin of a decided search.
    """

    def __init__(self, *, max_entropy: float = 0.7, min_margin: float = 0.05) -> None:
        self.max_entropy = float(max_entropy)
        self.min_margin = float(min_margin)
        self.stable_epochs = 0
        self._last_genotype: Any = None
        self.verdict: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"stable_epochs": self.stable_epochs, "last_genotype": self._last_genotype}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stable_epochs = int(state.get("stable_epochs", 0))
        self._last_genotype = state.get("last_genotype")

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        with torch.no_grad():
            probs = searcher.distribution.probs()
        stats = decision_stats(probs)
        margins = [m for st in stats.values() for m in st["margin"]]
        ents = [e for st in stats.values() for e in st["entropy"]]
        if not margins:
            return
        entropy = sum(ents) / len(ents)
        margin = _median(margins)
        weak = sum(1 for m in margins if m < self.min_margin) / len(margins)
        g = record.get("genotype")
        cells = g.get("cells") if isinstance(g, Mapping) else None
        self.stable_epochs = (
            self.stable_epochs + 1 if cells is not None and cells == self._last_genotype else 1
        )
        self._last_genotype = cells
        decided = entropy < self.max_entropy and margin >= self.min_margin
        record.update(
            decision=stats,
            decision_entropy=entropy,
            decision_margin=margin,
            decision_weak_edges=weak,
            genotype_stable_epochs=self.stable_epochs,
            decided=decided,
        )
        epoch = int(record.get("epoch", searcher.epoch - 1))
        if epoch + 1 >= int(searcher.config.epochs):
            self.verdict = self._verdict(searcher, entropy, margin, weak, decided)
            record["decision_verdict"] = self.verdict
            if decided:
                logger.info("%s", self.verdict)
            else:
                logger.warning("%s", self.verdict)

    def _verdict(self, searcher: Any, entropy: float, margin: float, weak: float, decided: bool) -> str:
        total = int(searcher.config.epochs)
        stable = f"the derived cell has been unchanged for the last {self.stable_epochs} of {total} epochs"
        if decided:
            return (
                f"decided search: mean normalised entropy {entropy:.3f} (< {self.max_entropy}), median top-op "
                f"margin {margin:.3f}; {stable}"
            )
        cfg = searcher.config
        steps = getattr(searcher, "steps_per_epoch", None)
        budget = (
            f"{(total - int(cfg.arch_warmup_epochs)) * steps} architecture steps"
            if isinstance(steps, int)
            else f"{total} epochs"
        )
        if cfg.arch_travel is None:
            fields = ", ".join(f"{k}={v!r}" for k, v in BUDGET_AWARE_SCHEDULE.items())
            lr = (
                f"use a budget-aware schedule ({' '.join(BUDGET_AWARE_ARGV)}; SearchConfig({fields})), raise the "
                f"architecture learning rate (--a-lr, now {cfg.a_lr:g})"
            )
        else:  # the lr is already budget-aware: --a-lr is ignored
            lr = f"raise the architecture travel (--arch-travel, now {cfg.arch_travel:g})"
        ties = f"median top-op margin {margin:.3f}, {weak:.0%} of the edges below {self.min_margin}"
        if entropy >= self.max_entropy:
            why = (
                f"The architecture probabilities are still close to uniform (mean normalised entropy "
                f"{entropy:.3f}, decided below {self.max_entropy}; {ties})"
            )
        else:  # concentrated, but on near-equal ops: which of them is kept is noise
            why = (
                f"The architecture probabilities have concentrated (mean normalised entropy {entropy:.3f}, below "
                f"{self.max_entropy}) but on near-equal ops: on most edges the two most probable ops are tied "
                f"({ties})"
            )
        return (
            f"UNDECIDED SEARCH: the derived cell is not supported by the search. {why}, so the kept ops won "
            f"by differences the search cannot tell from noise; "
            f"{stable}. To decide within {budget}: decide the edges progressively "
            f"({' '.join(PROGRESSIVE_DECISIONS_ARGV)}; SearchConfig(progressive_decisions=(0.3, 0.7)); the preset "
            f"data_decide does this in the spaces it supports), {lr} or search for more epochs."
        )


class NaNGuard:
    """Stops the search when a logged loss or a parameter becomes NaN/inf.

    Checks the step logs and the architecture parameters after every step, and the weights every
    ``check_weights_every`` steps and before every checkpoint (see :meth:`healthy`). Once tripped, the
    searcher is asked to stop, the runtime writes no further checkpoint (the last good one is kept) and
    :func:`~datanas_core.runtime.run_search` raises :class:`~datanas_core.errors.NumericalError`.
    """

    def __init__(self, *, check_weights_every: int = 1) -> None:
        self.check_weights_every = max(1, int(check_weights_every))
        self.reason: str | None = None

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    @staticmethod
    def _bad_params(module: torch.nn.Module) -> str | None:
        for name, p in module.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                return name
        return None

    def healthy(self, searcher: Any) -> bool:
        """Full check of the logs seen so far and of every parameter; trips the guard when not finite."""
        if self.tripped:
            return False
        for what, mod in (("weight", searcher.supernet), ("architecture parameter", searcher.distribution)):
            bad = self._bad_params(mod)
            if bad is not None:
                self._trip(searcher, f"{what} {bad!r} is not finite")
                return False
        return True

    def _trip(self, searcher: Any, reason: str) -> None:
        self.reason = f"{reason} at epoch {searcher.epoch}, step {searcher.global_step}"
        logger.error("NaN/inf guard: %s; stopping the search (no further checkpoints)", self.reason)
        searcher.stop_requested = True

    def on_step_end(self, searcher: Any, logs: Mapping[str, Any]) -> None:
        if self.tripped:
            return
        for k, v in logs.items():
            if is_number(v) and not math.isfinite(float(v)):
                self._trip(searcher, f"{k}={v}")
                return
        bad = self._bad_params(searcher.distribution)
        if bad is not None:
            self._trip(searcher, f"architecture parameter {bad!r} is not finite")
            return
        if searcher.global_step % self.check_weights_every == 0:
            bad = self._bad_params(searcher.supernet)
            if bad is not None:
                self._trip(searcher, f"weight {bad!r} is not finite")
