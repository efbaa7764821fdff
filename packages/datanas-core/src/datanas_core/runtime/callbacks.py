"""Search callbacks that write the run directory: metrics/genotypes and checkpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from datanas_core.genotype import Genotype
from datanas_core.runtime.checkpoint import CheckpointManager
from datanas_core.runtime.rundir import RunDir

__all__ = ["CheckpointCallback", "MetricsLogger", "StepCounter"]

logger = logging.getLogger(__name__)


class StepCounter:
    """Tracks how many batches of the current epoch are done, independently of when the searcher
    updates ``batch_in_epoch`` (it is incremented after the step callbacks run)."""

    def __init__(self) -> None:
        self.epoch_start_step = 0

    def on_search_start(self, searcher: Any) -> None:
        self.epoch_start_step = searcher.global_step - int(getattr(searcher, "batch_in_epoch", 0))

    def on_epoch_end(self, searcher: Any, record: Mapping[str, Any]) -> None:
        self.epoch_start_step = searcher.global_step

    def batches_done(self, searcher: Any) -> int:
        return searcher.global_step - self.epoch_start_step


class MetricsLogger:
    """Writes step and epoch records to metrics.jsonl/TensorBoard and every epoch's genotype.

    Epoch records also get the architecture probabilities of every cell type (``probs``), used for the
    alpha-evolution heatmaps of the report.

    Args:
        run_dir: the run directory (a disabled one on non-zero ranks).
        counter: shared :class:`StepCounter`.
        log_every: write a step record every ``log_every`` steps.
    """

    def __init__(self, run_dir: RunDir, counter: StepCounter, *, log_every: int = 1) -> None:
        self.run_dir = run_dir
        self.counter = counter
        self.log_every = max(1, int(log_every))
        self._t0 = time.time()

    def on_search_start(self, searcher: Any) -> None:
        self._t0 = time.time()

    def on_step_end(self, searcher: Any, logs: Mapping[str, Any]) -> None:
        if not self.run_dir.enabled or searcher.global_step % self.log_every:
            return
        self.run_dir.append_metrics(
            {
                "kind": "step",
                "epoch": searcher.epoch,
                "batch": self.counter.batches_done(searcher) - 1,
                "step": searcher.global_step,
                **logs,
            }
        )

    def on_epoch_end(self, searcher: Any, record: dict[str, Any]) -> None:
        if not self.run_dir.enabled:
            return
        with torch.no_grad():
            probs = {ct: p.detach().float().cpu().tolist() for ct, p in searcher.distribution.probs().items()}
        rec = {"kind": "epoch", "step": searcher.global_step, "time": time.time() - self._t0, **record}
        rec["probs"] = probs
        tau = getattr(searcher.distribution, "temperature", None)
        if isinstance(tau, (int, float)):
            rec.setdefault("tau", float(tau))
        self.run_dir.append_metrics(rec)
        g = record.get("genotype")
        if isinstance(g, Mapping):
            self.run_dir.save_epoch_genotype(
                int(record.get("epoch", searcher.epoch - 1)), Genotype.from_dict(g)
            )


class CheckpointCallback:
    """Saves a checkpoint at the end of every ``every_epochs`` epochs and every ``every_steps`` steps.

    Args:
        manager: the checkpoint manager (disabled on non-zero ranks).
        state_fn: ``state_fn(searcher, batches_done) -> dict``, the full checkpoint content.
        counter: shared :class:`StepCounter`.
        every_steps: mid-epoch checkpoints every this many optimisation steps (``None``: off).
        every_epochs: epoch-end checkpoints every this many epochs (the last epoch is always saved).
        steps_per_epoch: skip a mid-epoch save on the last batch (the epoch-end save follows at once).
        healthy: ``healthy(searcher) -> bool``; no checkpoint is written when it returns False (NaN guard).
    """

    def __init__(
        self,
        manager: CheckpointManager,
        state_fn: Callable[[Any, int], dict[str, Any]],
        counter: StepCounter,
        *,
        every_steps: int | None = None,
        every_epochs: int = 1,
        steps_per_epoch: int | None = None,
        healthy: Callable[[Any], bool] | None = None,
    ) -> None:
        self.manager = manager
        self.state_fn = state_fn
        self.counter = counter
        self.every_steps = every_steps if every_steps and every_steps > 0 else None
        self.every_epochs = max(1, int(every_epochs))
        self.steps_per_epoch = steps_per_epoch
        self.healthy = healthy
        self.last_path: Any = None
        self.saves = 0

    def _save(self, searcher: Any, batches_done: int) -> None:
        if self.healthy is not None and not self.healthy(searcher):
            logger.warning(
                "not writing a checkpoint: the run is unhealthy (NaN/inf); keeping %s", self.last_path
            )
            return
        state = self.state_fn(searcher, batches_done)
        path = self.manager.save(state, step=searcher.global_step, epoch=searcher.epoch, batch=batches_done)
        if path is not None:
            self.last_path = path
            self.saves += 1

    def on_step_end(self, searcher: Any, logs: Mapping[str, Any]) -> None:
        if self.every_steps is None or searcher.global_step % self.every_steps:
            return
        done = self.counter.batches_done(searcher)
        if self.steps_per_epoch is not None and done >= self.steps_per_epoch:
            return
        if getattr(searcher, "stop_requested", False):
            return
        self._save(searcher, done)

    def on_epoch_end(self, searcher: Any, record: Mapping[str, Any]) -> None:
        last = searcher.epoch >= searcher.config.epochs
        if searcher.epoch % self.every_epochs and not last and not getattr(searcher, "stop_requested", False):
            return
        self._save(searcher, 0)
