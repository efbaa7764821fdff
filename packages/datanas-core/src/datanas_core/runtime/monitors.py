"""Per-epoch monitors (search callbacks): search/child consistency, collapse, NaN/inf guard.

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

from datanas_core.genotype import Genotype
from datanas_core.runtime._jsonutil import is_number
from datanas_core.runtime.cellplot import is_param_free_op

__all__ = ["CollapseMonitor", "ConsistencyMonitor", "NaNGuard", "collapse_stats"]

logger = logging.getLogger(__name__)


class _Limited:
    """The first ``n`` batches of a loader (re-iterable)."""

    def __init__(self, loader: Iterable[Any], n: int | None) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Any:
        it = iter(self.loader)
        return it if self.n is None else itertools.islice(it, self.n)


class ConsistencyMonitor:
    """Search/child consistency (DATA Table 8 protocol), every ``every`` epochs.

    Evaluates the supernet on ``loader`` twice, without fine-tuning: with freshly sampled codes ("search",
    ``searcher.evaluate(loader, arch="sample")``) and with the code of the architecture derived at this
    epoch ("child", ``arch="derived"``: inherited weights, ops outside the genotype switched off). Adds
    ``search_<m>``, ``child_<m>`` for every metric ``m`` the task reports, plus for ``metric``:
    ``consistency_drop = search - child`` (positive: the child is worse, for accuracy-like metrics) and
    ``consistency_gap = |search - child|`` (Table 8's "gap").

    If the epoch record already holds ``search_<metric>``/``child_<metric>`` (``fit(eval_loader=...)``)
    those values are used and nothing is re-evaluated.

    Args:
        loader: validation batches (a held-out split; the searcher's validation loader is fine).
        metric: the metric for the gap (``"acc"``; ``"loss"`` when the task reports no accuracy).
        max_batches: evaluate at most this many batches (``None``: all).
        every: run every ``every`` epochs (and always at the last epoch).
    """

    def __init__(
        self,
        loader: Iterable[Any] | None,
        *,
        metric: str = "acc",
        max_batches: int | None = None,
        every: int = 1,
    ) -> None:
        self.loader = loader
        self.metric = metric
        self.max_batches = max_batches
        self.every = max(1, int(every))

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        epoch = int(record.get("epoch", searcher.epoch - 1))
        last = epoch + 1 >= searcher.config.epochs
        if not (f"search_{self.metric}" in record and f"child_{self.metric}" in record):
            if self.loader is None or ((epoch + 1) % self.every and not last):
                return
            data = _Limited(self.loader, self.max_batches)
            search = searcher.evaluate(data, arch="sample")
            child = searcher.evaluate(data, arch="derived")
            record.update({f"search_{k}": v for k, v in search.items()})
            record.update({f"child_{k}": v for k, v in child.items()})
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
    """

    def __init__(
        self,
        *,
        max_param_free_share: float = 0.5,
        max_skip: int | None = None,
        early_stop: bool = False,
        patience: int = 3,
        param_free_ops: Iterable[str] | None = None,
    ) -> None:
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
        for ct, s in stats.items():
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
