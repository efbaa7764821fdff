"""DrNAS progressive learning: stages with their own partial-channel ratio and number of kept ops.

:class:`ProgressiveSearcher` is a :class:`~datanas_core.search.Searcher` (so the runtime's ``run_search``,
checkpoints, resume, monitors and reports work unchanged) that follows a list of :class:`Stage`\\ s whose
epochs add up to ``config.epochs``. When the first step of a stage's first epoch runs, it performs the
transition (methods.md §6d):

1. **prune**: per edge, keep the ``keep_ops`` ops with the largest α among those still kept (ties: lower
   column), via :meth:`ArchitectureDistribution.set_mask` (pruned ops get weight 0 and are never sampled or
   run) and, when the supernet supports it, delete the pruned op modules;
2. **widen**: lower the partial-channel ratio to the stage's ``k``, widening every remaining op Net2Net-style
   (:mod:`datanas_core.drnas.widen`; a generator seeded from ``config.seed`` and the stage index);
3. **rebuild the optimisers**: :meth:`Searcher.rebuild_optimizers` with a carry that moves the SGD momentum
   buffers, transformed with the same channel mapping; the cosine schedule keeps its position over the
   total epochs; the α optimiser (Adam) is untouched.

α is frozen for the first ``config.arch_warmup_epochs`` epochs *of each stage* (DrNAS' stage-local
``epoch >= 10``). The current stage and every transition's masks are part of :meth:`state_dict`, so a run
resumes in the right structure (the pruning and widening are replayed on the fresh supernet before its
state is loaded).
"""

from __future__ import annotations

import bisect
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.drnas.widen import ParamChange, carry_optimizer_state
from datanas_core.errors import CheckpointError, ConfigError
from datanas_core.search.config import SearchConfig
from datanas_core.search.searcher import Searcher
from datanas_core.search.task import SearchTask
from datanas_core.space.base import SearchSpace

__all__ = [
    "STAGES_HELP",
    "ProgressiveSearcher",
    "Stage",
    "build_searcher",
    "format_stages",
    "parse_stages",
    "prune_mask",
]

logger = logging.getLogger(__name__)

#: Help text for a ``--stages`` command-line flag.
STAGES_HELP = (
    "DrNAS progressive stages 'EPOCHS[:K[:KEEP]],...': epochs, partial-channel ratio K (default 1) and ops "
    "kept per edge (default all) of each stage, e.g. '25:6:7,25:4:4'; the epochs must add up to --epochs"
)


@dataclass(frozen=True)
class Stage:
    """One stage of a progressive search.

    Attributes:
        epochs: epochs of the stage.
        k: partial-channel ratio (``1``: every channel goes through the ops). Non-increasing over stages.
        keep_ops: ops kept per edge during the stage (pruned by α at its start); ``None`` keeps the previous
            stage's ops. Non-increasing over stages; the first stage keeps every op.
    """

    epochs: int
    k: int = 1
    keep_ops: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"stage {name} must be a positive integer, got {v!r}")
        v = self.keep_ops
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"stage keep_ops must be a positive integer or None, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_stages(text: str | Sequence[Stage | Mapping[str, Any]]) -> tuple[Stage, ...]:
    """Stages from ``"EPOCHS[:K[:KEEP]],..."`` (e.g. ``"25:6:7,25:4:4"``) or a list of Stages / dicts.

    Raises:
        ConfigError: malformed text (naming the bad part and the expected form) or invalid values.

    Example:
        >>> parse_stages("25:6:7,25:4:4")
        (Stage(epochs=25, k=6, keep_ops=7), Stage(epochs=25, k=4, keep_ops=4))
    """
    if not isinstance(text, str):
        out = []
        for s in text:
            if isinstance(s, Stage):
                out.append(s)
            elif isinstance(s, Mapping):
                unknown = sorted(set(s) - {"epochs", "k", "keep_ops"})
                if unknown:
                    raise ConfigError(f"unknown stage key(s) {unknown}; valid keys: epochs, k, keep_ops")
                out.append(Stage(**dict(s)))
            else:
                raise ConfigError(f"a stage must be a Stage or a mapping, got {type(s).__name__}")
        if not out:
            raise ConfigError("at least one stage is needed")
        return tuple(out)
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(
            f"cannot parse stages {text!r}: expected 'EPOCHS[:K[:KEEP]],...', e.g. '25:6:7,25:4:4'"
        )
    stages = []
    for part in parts:
        fields = part.split(":")
        if len(fields) > 3:
            raise ConfigError(
                f"stage {part!r} in {text!r} has {len(fields)} fields; expected EPOCHS[:K[:KEEP]]"
            )
        try:
            nums = [int(f) for f in fields]
        except ValueError:
            raise ConfigError(
                f"stage {part!r} in {text!r} is not EPOCHS[:K[:KEEP]] with integers, e.g. '25:6:7'"
            ) from None
        stages.append(Stage(nums[0], nums[1] if len(nums) > 1 else 1, nums[2] if len(nums) > 2 else None))
    return tuple(stages)


def format_stages(stages: Iterable[Stage]) -> str:
    """The inverse of :func:`parse_stages` (``"25:6:7,25:4:4"``)."""
    out = []
    for s in stages:
        out.append(f"{s.epochs}:{s.k}" + ("" if s.keep_ops is None else f":{s.keep_ops}"))
    return ",".join(out)


def prune_mask(logits: Tensor, keep: int, available: Tensor | None = None) -> Tensor:
    """Bool ``[E, K]``: per row the ``keep`` largest logits among the ``available`` columns.

    Ties go to the lower column. Rows with at most ``keep`` available columns keep all of them.
    """
    scores = logits.detach().to("cpu", torch.float64)
    avail = (
        torch.ones_like(scores, dtype=torch.bool)
        if available is None
        else torch.as_tensor(available).to(device="cpu", dtype=torch.bool)
    )
    scores = scores.masked_fill(~avail, float("-inf"))
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :keep]
    mask = torch.zeros_like(avail).scatter(1, order, True)
    return mask & avail


def _check_stages(stages: Sequence[Stage], config: SearchConfig, space: SearchSpace) -> None:
    total = sum(s.epochs for s in stages)
    if total != config.epochs:
        raise ConfigError(
            f"the stages {format_stages(stages)!r} last {total} epochs but config.epochs is {config.epochs}; "
            "they must be equal (the cosine schedule spans all stages)"
        )
    for prev, cur in zip(stages, stages[1:], strict=False):
        if cur.k > prev.k:
            raise ConfigError(
                f"partial-channel ratios must not increase over stages (ops are only widened), got "
                f"{format_stages(stages)!r}"
            )
    for ct, spec in space.cells().items():
        keep = spec.num_ops
        for i, s in enumerate(stages):
            if s.keep_ops is None:
                continue
            if i == 0 and s.keep_ops != spec.num_ops:
                raise ConfigError(
                    f"the first stage must keep every op ({spec.num_ops} in cell type {ct!r}), got "
                    f"keep_ops={s.keep_ops}; prune in a later stage"
                )
            if s.keep_ops > keep:
                raise ConfigError(
                    f"stage {i} keeps {s.keep_ops} ops but cell type {ct!r} has {keep} left (ops cannot be "
                    f"restored); stages {format_stages(stages)!r}"
                )
            keep = s.keep_ops


class ProgressiveSearcher(Searcher):
    """A :class:`Searcher` that runs DrNAS' progressive stages (see the module docstring).

    Args:
        space: the search space; stages with ``k > 1`` need a partial-channel space (``"drnas_darts"``,
            ``"drnas_nb201"``), whose supernet also deletes pruned ops. With ``k = 1`` throughout any space
            works (pruning then only masks the ops).
        task, config, supernet, distribution, callbacks, device, weight_loss: as for :class:`Searcher`.
        stages: :class:`Stage` list or ``"25:6:7,25:4:4"``; epochs must add up to ``config.epochs``.
        supernet_kwargs: options of ``space.build_supernet``; ``partial_channels`` is set to the first
            stage's ``k`` (giving another value is an error).
        widen_seed: seed of the widening channel mappings (default ``config.seed + 3``; stage ``i`` uses
            ``widen_seed + i``).

    Attributes:
        stages: the stages.
        stage_index: the stage whose structure the supernet has now.
        transitions: one record per performed transition (stage, epoch, k, keep_ops, masks).

    Raises:
        ConfigError: inconsistent stages, or ``k > 1`` with a space that has no partial-channel supernet.

    Example:
        >>> searcher = ProgressiveSearcher(get_space("drnas_darts"), task, SearchConfig.preset("drnas"),
        ...                                stages="25:6:7,25:4:4", supernet_kwargs={"C": 36, "layers": 20})
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        space: SearchSpace,
        task: SearchTask,
        config: SearchConfig | None = None,
        *,
        stages: str | Sequence[Stage | Mapping[str, Any]],
        supernet: nn.Module | None = None,
        distribution: nn.Module | None = None,
        supernet_kwargs: Mapping[str, Any] | None = None,
        callbacks: Sequence[Any] = (),
        device: torch.device | str | None = None,
        weight_loss: Callable[[Searcher, Any], tuple[Tensor, Mapping[str, float]]] | None = None,
        widen_seed: int | None = None,
    ) -> None:
        config = config or SearchConfig()
        parsed = parse_stages(stages)
        _check_stages(parsed, config, space)
        kwargs = dict(supernet_kwargs or {})
        needs_pc = any(s.k != 1 for s in parsed)
        if supernet is None:
            accepts = "partial_channels" in inspect.signature(space.build_supernet).parameters
            if "partial_channels" in kwargs and kwargs["partial_channels"] != parsed[0].k:
                raise ConfigError(
                    f"supernet_kwargs partial_channels={kwargs['partial_channels']} contradicts the first "
                    f"stage's K={parsed[0].k}; leave it out (the stages set it)"
                )
            if accepts:
                kwargs["partial_channels"] = parsed[0].k
            elif needs_pc:
                raise ConfigError(
                    f"space {space.name!r} ({type(space).__name__}) builds no partial-channel supernet, "
                    f"but the stages {format_stages(parsed)!r} use K > 1; use space 'drnas_darts' or "
                    "'drnas_nb201', or K=1 in every stage"
                )
        super().__init__(
            space,
            task,
            config,
            supernet=supernet,
            distribution=distribution,
            supernet_kwargs=kwargs,
            callbacks=callbacks,
            device=device,
            weight_loss=weight_loss,
        )
        current_k = int(getattr(self.supernet, "partial_channels", 1))
        if current_k != parsed[0].k:
            raise ConfigError(
                f"the supernet has partial-channel ratio K={current_k}, the first stage wants K={parsed[0].k}"
            )
        if needs_pc and not callable(getattr(self.supernet, "set_partial_channels", None)):
            raise ConfigError(
                f"the supernet ({type(self.supernet).__name__}) cannot change its partial-channel ratio; the "
                f"stages {format_stages(parsed)!r} need set_partial_channels (use a drnas_* space)"
            )
        short = [i for i, st in enumerate(parsed) if st.epochs <= config.arch_warmup_epochs]
        if short:
            logger.warning(
                "α is frozen for the first %d epochs of each stage, so it is never updated in stage(s) %s "
                "(stages %s)",
                config.arch_warmup_epochs,
                [i + 1 for i in short],
                format_stages(parsed),
            )
        self.stages: tuple[Stage, ...] = parsed
        self.stage_index = 0
        self.transitions: list[dict[str, Any]] = []
        self.widen_seed = int(config.seed + 3 if widen_seed is None else widen_seed)
        self._starts = [sum(s.epochs for s in parsed[:i]) for i in range(len(parsed))]

    # ------------------------------------------------------------------ schedule
    def stage_start(self, index: int) -> int:
        """First epoch (0-based) of stage ``index``."""
        return self._starts[index]

    def stage_at(self, epoch: int) -> int:
        """Index of the stage that contains ``epoch`` (the last stage for epochs past the end)."""
        return max(0, bisect.bisect_right(self._starts, epoch) - 1)

    @property
    def arch_active(self) -> bool:
        """Whether α is updated now: ``config.arch_warmup_epochs`` or more epochs into the current stage."""
        stage = self.stage_at(self.epoch)
        return self.epoch - self._starts[stage] >= self.config.arch_warmup_epochs

    @property
    def partial_channels(self) -> int:
        """Current partial-channel ratio of the supernet."""
        return int(getattr(self.supernet, "partial_channels", 1))

    # ------------------------------------------------------------------ transitions
    def sync_stage(self) -> bool:
        """Perform the transitions up to the stage of the current epoch; returns whether any happened."""
        target = self.stage_at(self.epoch)
        changed = False
        while self.stage_index < target:
            self._advance()
            changed = True
        return changed

    def _advance(self, masks: Mapping[str, Any] | None = None, *, carry: bool = True) -> None:
        index = self.stage_index + 1
        stage = self.stages[index]
        dist = self.distribution
        new_masks: dict[str, Tensor] = {}
        removed = 0
        prune = getattr(self.supernet, "prune", None)
        for ct, spec in dist.cells.items():  # type: ignore[union-attr]
            logits = dist.logits[ct]  # type: ignore[index]
            available = dist.estimator.mask_of(spec, logits)  # type: ignore[union-attr]
            if masks is not None:
                if ct not in masks:
                    raise CheckpointError(f"transition to stage {index} has no mask for cell type {ct!r}")
                mask = torch.as_tensor(masks[ct]).to(dtype=torch.bool, device="cpu")
            else:
                keep = spec.num_ops if stage.keep_ops is None else stage.keep_ops
                mask = prune_mask(logits, keep, available)
            dist.set_mask(ct, mask)  # type: ignore[operator]
            if callable(prune):
                removed += int(prune(ct, mask))
            new_masks[ct] = mask
        changes: list[ParamChange] = []
        if stage.k != self.partial_channels:
            gen = torch.Generator().manual_seed(self.widen_seed + index)
            changes = self.supernet.set_partial_channels(stage.k, gen)  # type: ignore[operator]
        # Searcher.rebuild_optimizers re-creates the cosine schedule with ``last_epoch``, which advances it
        # one epoch; restore the schedule and learning rates exactly (as DrNAS' configure_scheduler does).
        schedule = self.w_scheduler.state_dict()
        lrs = [group["lr"] for group in self.w_optimizer.param_groups]
        self.rebuild_optimizers(carry_optimizer_state(changes) if carry else None)
        self.w_scheduler.load_state_dict(schedule)
        for group, lr in zip(self.w_optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self.stage_index = index
        record = {
            "stage": index,
            "epoch": int(self.epoch),
            "k": stage.k,
            "keep_ops": stage.keep_ops,
            "masks": {ct: m.clone() for ct, m in new_masks.items()},
        }
        self.transitions.append(record)
        kept = {ct: int(m.sum(-1).max()) for ct, m in new_masks.items()}
        logger.info(
            "DrNAS stage %d/%d from epoch %d: K=%d, up to %s ops per edge kept, %d op modules removed, "
            "%d parameters widened",
            index + 1,
            len(self.stages),
            self.epoch,
            stage.k,
            kept,
            removed,
            len(changes),
        )

    # ------------------------------------------------------------------ steps
    def step(self, train_batch: Any, val_batch: Any | None = None) -> dict[str, float]:
        """One search step in the structure of the current epoch's stage (transitions happen here first)."""
        if self.stage_index != self.stage_at(self.epoch):
            self.sync_stage()
        logs = super().step(train_batch, val_batch)
        logs["stage"] = float(self.stage_index)
        logs["partial_channels"] = float(self.partial_channels)
        return logs

    def _arch_first_order(self, val_batch: Any) -> dict[str, float]:
        if not self.arch_active:
            return {}
        return super()._arch_first_order(val_batch)

    def _arch_second_order(self, train_batch: Any, val_batch: Any) -> dict[str, float]:
        if not self.arch_active:
            return {}
        return super()._arch_second_order(train_batch, val_batch)

    def _apply_arch_grads(self, params: Sequence[nn.Parameter], grads: Iterable[Tensor | None]) -> None:
        if not self.arch_active:  # single-level search: the α gradient exists but α is frozen
            return
        super()._apply_arch_grads(params, grads)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """:meth:`Searcher.state_dict` plus ``"progressive"``: stages, current stage and transition masks."""
        state = super().state_dict()
        state["progressive"] = {
            "stages": [s.to_dict() for s in self.stages],
            "stage": self.stage_index,
            "widen_seed": self.widen_seed,
            "transitions": [
                {**rec, "masks": {ct: m.clone() for ct, m in rec["masks"].items()}}
                for rec in self.transitions
            ],
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Bring the supernet to the saved stage (replaying the saved pruning masks and widening), then load.

        Raises:
            CheckpointError: the state is not from a progressive search, has other stages, or is at an
                earlier stage than this searcher (structures cannot be narrowed back).
        """
        prog = state.get("progressive")
        if not isinstance(prog, Mapping):
            raise CheckpointError(
                "the state has no 'progressive' entry; it was not saved by a ProgressiveSearcher"
            )
        saved = parse_stages(prog.get("stages", []))
        if saved != self.stages:
            raise CheckpointError(
                f"the state was saved with stages {format_stages(saved)!r}, this searcher runs "
                f"{format_stages(self.stages)!r}"
            )
        target = int(prog["stage"])
        records = list(prog.get("transitions", []))
        if target < self.stage_index:
            raise CheckpointError(
                f"cannot load a stage-{target} state into a searcher already in stage {self.stage_index}"
            )
        if len(records) < target:
            raise CheckpointError(f"the state is in stage {target} but records {len(records)} transition(s)")
        while self.stage_index < target:
            self._advance(records[self.stage_index]["masks"], carry=False)
        super().load_state_dict(state)
        self.transitions = [
            {**rec, "masks": {ct: torch.as_tensor(m, dtype=torch.bool) for ct, m in rec["masks"].items()}}
            for rec in records[:target]
        ]
        self.widen_seed = int(prog.get("widen_seed", self.widen_seed))


def build_searcher(
    space: SearchSpace,
    task: SearchTask,
    config: SearchConfig,
    *,
    stages: str | Sequence[Stage | Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> Searcher:
    """A :class:`ProgressiveSearcher` when ``stages`` is given (text or list), else a plain :class:`Searcher`.

    ``kwargs`` go to the searcher (``supernet_kwargs``, ``device``, ``callbacks``, ...). This is what a domain
    CLI calls for ``--stages``.
    """
    if stages is None or (isinstance(stages, str) and not stages.strip()):
        return Searcher(space, task, config, **kwargs)
    return ProgressiveSearcher(space, task, config, stages=stages, **kwargs)
