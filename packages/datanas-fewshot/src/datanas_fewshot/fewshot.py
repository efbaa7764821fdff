"""Few-shot cell search and evaluation protocol (what the ``search`` and ``train`` CLIs run).

Search: a DARTS supernet embedding (ProtoNet) or classifier (MAML) is meta-trained with the core
:class:`~datanas_core.search.Searcher`; the weight step uses meta-train episodes and the architecture step the
query loss of fresh episodes from the meta-validation classes. The architecture distribution is never part of
the network handed to the meta-learner.

Evaluation: a network (derived cell, Conv-4, or random cell) is meta-trained from scratch, then tested on
``test_episodes`` meta-test episodes (mean accuracy with a 95 % confidence interval) and on the 20 official
20-way one-shot Omniglot runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.search import SearchConfig, Searcher
from datanas_core.space.darts import DartsSpace
from datanas_fewshot.cellnets import build_space, count_parameters, seeded_build, use_weight_optimizer
from datanas_fewshot.episodes import EpisodeLoader, EpisodeSampler
from datanas_fewshot.meta import (
    Conv4,
    FewShotModel,
    FewShotSearchTask,
    MAMLLearner,
    MetaTrainConfig,
    ProtoNetLearner,
    build_learner,
    evaluate_runs,
    meta_test,
    meta_train,
)
from datanas_fewshot.sources import FewShotSplits, OneShotRun
from datanas_fewshot.stats import MeanCI

__all__ = [
    "FewShotConfig",
    "FewShotResult",
    "build_backbone",
    "build_fewshot_searcher",
    "cell_channels_for",
    "conv4_hidden_for",
    "evaluate_backbone",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FewShotConfig:
    """A few-shot search / evaluation run (CPU-sized defaults: ProtoNet, small ops, C=8, 3 cells of 3 nodes).

    Attributes:
        ways, shots: task size; queries: query samples per class in training and test episodes.
        learner: ``"protonet"`` or ``"maml"``; ``maml`` holds :class:`~datanas_fewshot.meta.MAMLLearner`
            options (``inner_lr``, ``inner_steps``, ``test_inner_steps``, ``first_order``).
        ops, steps, C, layers: the DARTS space and network size.
        search: the core search configuration; ``search_episodes``: weight-step episodes per search epoch
            (each paired with one fresh meta-validation episode for the architecture step).
        weight_optimizer: supernet weight optimiser, ``"adam"`` (default) or the core's ``"sgd"``.
        train: meta-training of the evaluated network.
        test_episodes: meta-test episodes for the confidence interval (>= 600 for reporting).
        search_distance_scale: ProtoNet distance scale during the search (``"dim"`` divides squared distances
            by the embedding width: the supernet's embeddings are wide and batch-normalised).
        seed: seeds initialisation and episode streams.
    """

    ways: int = 5
    shots: int = 1
    queries: int = 15
    learner: Literal["protonet", "maml"] = "protonet"
    maml: Mapping[str, Any] = field(default_factory=dict)
    ops: str | tuple[str, ...] = "small"
    steps: int = 3
    C: int = 8
    layers: int = 3
    search: SearchConfig = field(
        default_factory=lambda: SearchConfig(
            epochs=4,
            arch_warmup_epochs=1,
            w_lr=1e-3,
            w_lr_min=1e-4,
            w_weight_decay=0.0,
            a_lr=0.03,
        )
    )
    search_episodes: int = 60
    weight_optimizer: Literal["adam", "sgd"] = "adam"
    train: MetaTrainConfig = field(default_factory=lambda: MetaTrainConfig(episodes=600, lr=2e-3))
    test_episodes: int = 600
    search_distance_scale: float | Literal["dim"] = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "queries", "search_episodes", "test_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.ways < 2:
            raise ConfigError(f"ways must be >= 2, got {self.ways}")
        if self.learner not in ("protonet", "maml"):
            raise ConfigError(f"unknown meta-learner {self.learner!r}; valid meta-learners: maml, protonet")
        object.__setattr__(self, "maml", dict(self.maml))
        if not isinstance(self.ops, str):
            object.__setattr__(self, "ops", tuple(self.ops))

    def space(self) -> DartsSpace:
        return build_space(self.ops, steps=self.steps)

    def make_learner(self, *, search: bool = False) -> ProtoNetLearner | MAMLLearner:
        """The meta-learner (``search=True``: with the search-time ProtoNet distance scale)."""
        if self.learner == "maml":
            return build_learner("maml", **self.maml)
        return build_learner("protonet", distance_scale=self.search_distance_scale if search else 1.0)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["search"] = self.search.to_dict()
        d["train"] = dataclasses.asdict(self.train)
        d["ops"] = self.ops if isinstance(self.ops, str) else list(self.ops)
        d["maml"] = dict(self.maml)
        return d


def _ways_head(config: FewShotConfig) -> int | None:
    return config.ways if config.learner == "maml" else None


def build_fewshot_searcher(
    config: FewShotConfig, splits: FewShotSplits, *, callbacks: Sequence[Any] = ()
) -> tuple[Searcher, EpisodeLoader, EpisodeLoader]:
    """The searcher plus its episode loaders (weights: meta-train classes; architecture: meta-val classes).

    Raises:
        MissingDependencyError: learn2learn is missing.
    """
    space = config.space()
    in_ch = int(splits.train.images.shape[1])

    def make() -> FewShotModel:
        sn = space.build_supernet(C=config.C, layers=config.layers, num_classes=0, in_channels=in_ch)
        return FewShotModel(sn, _ways_head(config))

    model = seeded_build(make, config.seed)
    q = config.queries
    train_s = EpisodeSampler(splits.train, config.ways, config.shots, q, seed=config.seed * 3 + 1)
    val_s = EpisodeSampler(splits.val, config.ways, config.shots, q, seed=config.seed * 3 + 2)
    train_loader = EpisodeLoader(train_s, config.search_episodes, stream=0)
    val_loader = EpisodeLoader(val_s, config.search_episodes, stream=1)
    task = FewShotSearchTask(config.make_learner(search=True))
    search_cfg = dataclasses.replace(config.search, seed=config.seed)
    searcher = Searcher(space, task, search_cfg, supernet=model, callbacks=callbacks)
    use_weight_optimizer(searcher, config.weight_optimizer, search_cfg.w_lr, search_cfg.w_lr_min)
    return searcher, train_loader, val_loader


def conv4_hidden_for(params: int, in_channels: int = 1, blocks: int = 4) -> int:
    """The Conv-4 width whose parameter count is closest to ``params`` (the equal-parameter baseline)."""
    best, best_gap = 1, math.inf
    for h in range(1, 257):
        n = count_parameters(Conv4(in_channels, h, blocks))
        if abs(n - params) < best_gap:
            best, best_gap = h, abs(n - params)
        if n > params:
            break
    return best


def cell_channels_for(config: FewShotConfig, genotype: Genotype, params: int, in_channels: int = 1) -> int:
    """The initial width ``C`` whose derived network of ``genotype`` has the parameter count closest to
    ``params`` (random cells at equal parameters)."""
    best, best_gap = config.C, math.inf
    for c in range(2, 65):
        n = count_parameters(build_backbone(dataclasses.replace(config, C=c), genotype, in_channels))
        if abs(n - params) < best_gap:
            best, best_gap = c, abs(n - params)
        if n > params:
            break
    return best


def build_backbone(
    config: FewShotConfig, arch: Genotype | Literal["conv4"], in_channels: int = 1, *, conv4_hidden: int = 64
) -> nn.Module:
    """A derived cell network of ``arch`` (no classifier), or Conv-4 of width ``conv4_hidden``."""
    if isinstance(arch, str):
        if arch != "conv4":
            raise ConfigError(f"unknown backbone {arch!r}; valid: a genotype or 'conv4'")
        return Conv4(in_channels, conv4_hidden)
    return config.space().build_derived(
        arch, C=config.C, layers=config.layers, num_classes=0, in_channels=in_channels
    )


@dataclass
class FewShotResult:
    """Meta-test accuracy (with CI) and official-run accuracy of one evaluated network."""

    name: str
    parameters: int
    meta_test: MeanCI
    runs_mean: float | None
    runs: list[float] | None
    train_history: list[dict[str, float]] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameters": self.parameters,
            "meta_test": self.meta_test.to_dict(),
            "official_runs_mean": self.runs_mean,
            "official_runs": self.runs,
        }


def evaluate_backbone(
    name: str,
    backbone_factory: Callable[[], nn.Module],
    config: FewShotConfig,
    splits: FewShotSplits,
    *,
    runs: Sequence[OneShotRun] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | str | None = None,
) -> FewShotResult:
    """Meta-train a fresh network from ``backbone_factory`` and evaluate it.

    Every network sees the same training and test episodes (same seeds), so comparisons are paired.
    """
    model = seeded_build(lambda: FewShotModel(backbone_factory(), _ways_head(config)), config.seed + 17)
    if device is not None:
        model = model.to(device)
    learner = config.make_learner()
    q = config.queries
    train_s = EpisodeSampler(splits.train, config.ways, config.shots, q, seed=config.seed * 3 + 11)
    test_s = EpisodeSampler(splits.test, config.ways, config.shots, q, seed=config.seed * 3 + 12)
    train_eps = (train_s.episode(i) for i in range(config.train.episodes))
    history = meta_train(model, learner, train_eps, config.train, on_step=on_step)
    ci = meta_test(model, learner, (test_s.episode(i) for i in range(config.test_episodes)))
    runs_mean, per_run = (None, None)
    if runs:
        runs_mean, per_run = evaluate_runs(model, learner, runs)
    params = count_parameters(model)
    logger.info("%s: %d parameters, meta-test %s, official runs %s", name, params, ci, runs_mean)
    return FewShotResult(name, params, ci, runs_mean, per_run, history)
