"""Meta-learners for few-shot cell search and evaluation: Prototypical Networks and MAML (through
learn2learn).

The architecture distribution always stays **outside** the meta-learner: networks take the architecture sample
as a forward argument (``model(x, arch)``), so MAML's inner loop (``learn2learn.algorithms.MAML.adapt``, which
differentiates with respect to ``module.parameters()``) adapts network weights only. The architecture step of
the search backpropagates the **query** loss of fresh episodes into the distribution.

learn2learn is imported lazily (by :class:`MAMLLearner` only); Prototypical Networks need torch alone.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError, DataError, NumericalError
from datanas_core.sample import ArchSample
from datanas_fewshot.episodes import Episode, import_learn2learn
from datanas_fewshot.stats import MeanCI, mean_confidence_interval

__all__ = [
    "Conv4",
    "FewShotModel",
    "FewShotSearchTask",
    "MAMLLearner",
    "MetaLearner",
    "MetaTrainConfig",
    "ProtoNetLearner",
    "build_learner",
    "evaluate_runs",
    "meta_test",
    "meta_train",
    "prototypical_logits",
]

logger = logging.getLogger(__name__)


class Conv4(nn.Module):
    """The standard four-block few-shot backbone (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017):
    ``[conv 3x3 -> BN -> ReLU -> max-pool 2] x 4``.

    Args:
        in_channels: image channels.
        hidden: channels of every block (64 in the papers).
        blocks: number of blocks.

    Example:
        >>> Conv4(1, hidden=8).forward_features(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 8, 1, 1])
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, blocks: int = 4) -> None:
        super().__init__()
        if hidden < 1 or blocks < 1 or in_channels < 1:
            raise ConfigError(
                f"in_channels, hidden and blocks must be >= 1, got {in_channels}, {hidden}, {blocks}"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(blocks):
            layers += [
                nn.Conv2d(c, hidden, 3, padding=1),
                nn.BatchNorm2d(hidden),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=False),
            ]
            c = hidden
        self.features = nn.Sequential(*layers)
        self.num_features = hidden

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


class FewShotModel(nn.Module):
    """A backbone (Conv-4, a derived cell network, or a supernet) plus an optional linear classifier.

    ``embed(x, arch=None)`` gives pooled features ``[N, D]`` (ProtoNet); ``forward(x, arch=None)`` gives
    ``[N, ways]`` logits (MAML). ``arch`` is passed to supernets only; it is never a parameter of this module.

    Args:
        backbone: module with ``forward_features(x)`` or ``forward_features(x, arch)`` and ``num_features``.
        ways: classifier outputs (``None``: no classifier, embedding only).
    """

    def __init__(self, backbone: nn.Module, ways: int | None = None) -> None:
        super().__init__()
        if not callable(getattr(backbone, "forward_features", None)):
            raise ConfigError(f"backbone {type(backbone).__name__} has no forward_features method")
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        self.ways = ways
        self.classifier = nn.Linear(self.num_features, ways) if ways else None

    def embed(self, x: Tensor, arch: ArchSample | None = None) -> Tensor:
        f = self.backbone.forward_features(x) if arch is None else self.backbone.forward_features(x, arch)
        return f.mean(dim=(2, 3)) if f.ndim == 4 else f.flatten(1)

    def forward(self, x: Tensor, arch: ArchSample | None = None) -> Tensor:
        if self.classifier is None:
            raise ConfigError("this FewShotModel has no classifier (ways=None); use embed()")
        return self.classifier(self.embed(x, arch))

    def with_fresh_head(self, ways: int) -> FewShotModel:
        """A copy whose classifier has ``ways`` outputs, zero-initialised (so any number of ways can be
        adapted)."""
        clone = copy.deepcopy(self)
        head = nn.Linear(self.num_features, ways)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        dev = next(self.parameters()).device
        clone.classifier = head.to(dev)
        clone.ways = ways
        return clone


def prototypical_logits(support: Tensor, support_y: Tensor, query: Tensor, ways: int | None = None) -> Tensor:
    """Negative squared Euclidean distances of query embeddings to class prototypes (Snell et al. 2017).

    Args:
        support: ``[S, D]`` support embeddings; support_y: ``[S]`` labels in ``0..ways-1``.
        query: ``[Q, D]`` query embeddings.
        ways: number of classes (default ``max(support_y) + 1``).

    Returns:
        ``[Q, ways]`` logits.

    Raises:
        DataError: a class without support samples.
    """
    n = int(support_y.max()) + 1 if ways is None else ways
    counts = torch.bincount(support_y, minlength=n)
    if bool((counts == 0).any()):
        raise DataError(f"every class needs a support sample; counts per class {counts.tolist()}")
    protos = torch.zeros(n, support.shape[1], dtype=support.dtype, device=support.device)
    protos = protos.index_add(0, support_y, support) / counts.to(support.dtype)[:, None]
    return -torch.cdist(query, protos).pow(2)


def _accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(1) == y).float().mean()


@runtime_checkable
class MetaLearner(Protocol):
    """``episode_loss(model, episode, arch) -> (query loss, query accuracy)``; ``evaluate`` for test
    episodes."""

    def episode_loss(
        self, model: FewShotModel, episode: Episode, arch: ArchSample | None
    ) -> tuple[Tensor, Tensor]: ...

    def evaluate(self, model: FewShotModel, episode: Episode, arch: ArchSample | None = None) -> float: ...

    needs_classifier: bool


class ProtoNetLearner:
    """Prototypical Networks: no inner loop; support and query go through the network in one batch.

    Args:
        distance_scale: divide the squared distances by this number, or by the embedding width with
            ``"dim"`` (softer logits for wide, un-normalised embeddings such as a supernet's batch-normalised
            cell outputs; 1.0 is the original ProtoNet).
    """

    needs_classifier = False

    def __init__(self, distance_scale: float | Literal["dim"] = 1.0) -> None:
        if distance_scale != "dim" and not (isinstance(distance_scale, (int, float)) and distance_scale > 0):
            raise ConfigError(f"distance_scale must be a positive number or 'dim', got {distance_scale!r}")
        self.distance_scale = distance_scale

    def episode_loss(
        self, model: FewShotModel, episode: Episode, arch: ArchSample | None
    ) -> tuple[Tensor, Tensor]:
        dev = next(model.parameters()).device
        ep = episode.to(dev)
        n_s = ep.support_x.shape[0]
        emb = model.embed(torch.cat([ep.support_x, ep.query_x]), arch)
        logits = prototypical_logits(emb[:n_s], ep.support_y, emb[n_s:])
        scale = float(emb.shape[1]) if self.distance_scale == "dim" else float(self.distance_scale)
        if scale != 1.0:
            logits = logits / scale
        return F.cross_entropy(logits, ep.query_y), _accuracy(logits, ep.query_y).detach()

    @torch.no_grad()
    def evaluate(self, model: FewShotModel, episode: Episode, arch: ArchSample | None = None) -> float:
        was = model.training
        model.eval()
        try:
            _, acc = self.episode_loss(model, episode, arch)
        finally:
            model.train(was)
        return float(acc)

    def __repr__(self) -> str:
        return f"ProtoNetLearner(distance_scale={self.distance_scale!r})"


class MAMLLearner:
    """MAML (Finn et al. 2017) through ``learn2learn.algorithms.MAML``, wrapping the network only.

    The inner loop adapts a clone of the network's weights on the support set; the query loss of the adapted
    clone is the meta-loss (its gradient reaches the original weights and, through the forward argument
    ``arch``, the architecture distribution, which MAML never sees). Batch norm uses batch statistics (train
    mode) as in the original MAML.

    Args:
        inner_lr: inner-loop learning rate.
        inner_steps: adaptation steps during meta-training; test_inner_steps: at evaluation.
        first_order: first-order MAML (no second derivatives; much cheaper).
    """

    needs_classifier = True

    def __init__(
        self,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        *,
        test_inner_steps: int = 3,
        first_order: bool = True,
    ) -> None:
        if not inner_lr > 0:
            raise ConfigError(f"inner_lr must be > 0, got {inner_lr!r}")
        if inner_steps < 1 or test_inner_steps < 1:
            raise ConfigError(
                f"inner_steps and test_inner_steps must be >= 1, got {inner_steps}, {test_inner_steps}"
            )
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.test_inner_steps = int(test_inner_steps)
        self.first_order = bool(first_order)

    def wrap(self, model: FewShotModel) -> Any:
        """``learn2learn.algorithms.MAML`` around ``model`` (its parameters only)."""
        l2l = import_learn2learn()
        return l2l.algorithms.MAML(model, lr=self.inner_lr, first_order=self.first_order, allow_unused=True)

    def adapt(self, model: FewShotModel, episode: Episode, arch: ArchSample | None, steps: int) -> Any:
        """A clone of ``model`` adapted on the support set (``steps`` SGD steps on its weights)."""
        learner = self.wrap(model).clone()
        for _ in range(steps):
            loss = F.cross_entropy(learner(episode.support_x, arch), episode.support_y)
            if not torch.isfinite(loss.detach()):
                raise NumericalError(
                    f"MAML inner loss became {loss.item()}; lower inner_lr ({self.inner_lr})"
                )
            learner.adapt(loss)
        return learner

    def episode_loss(
        self, model: FewShotModel, episode: Episode, arch: ArchSample | None
    ) -> tuple[Tensor, Tensor]:
        if model.classifier is None or model.ways != episode.ways:
            raise ConfigError(
                f"MAML needs a classifier with {episode.ways} outputs, the model has {model.ways}"
            )
        ep = episode.to(next(model.parameters()).device)
        learner = self.adapt(model, ep, arch, self.inner_steps)
        logits = learner(ep.query_x, arch)
        return F.cross_entropy(logits, ep.query_y), _accuracy(logits, ep.query_y).detach()

    def evaluate(self, model: FewShotModel, episode: Episode, arch: ArchSample | None = None) -> float:
        ep = episode.to(next(model.parameters()).device)
        target = model if model.ways == ep.ways else model.with_fresh_head(ep.ways)
        was = target.training
        target.train()
        try:
            learner = self.adapt(target, ep, arch, self.test_inner_steps)
            with torch.no_grad():
                acc = _accuracy(learner(ep.query_x, arch), ep.query_y)
        finally:
            target.train(was)
        return float(acc)

    def __repr__(self) -> str:
        return (
            f"MAMLLearner(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, "
            f"test_inner_steps={self.test_inner_steps}, first_order={self.first_order})"
        )


_LEARNERS = ("maml", "protonet")


def build_learner(name: Literal["protonet", "maml"], **options: Any) -> ProtoNetLearner | MAMLLearner:
    """``"protonet"`` or ``"maml"`` (with :class:`MAMLLearner` options).

    Raises:
        ConfigError: unknown name (listing the valid ones) or options for ProtoNet.
    """
    if name == "protonet":
        unknown = sorted(set(options) - {"distance_scale"})
        if unknown:
            raise ConfigError(f"protonet takes only distance_scale, got {unknown}")
        return ProtoNetLearner(**options)
    if name == "maml":
        return MAMLLearner(**options)
    raise ConfigError(f"unknown meta-learner {name!r}; valid meta-learners: {', '.join(_LEARNERS)}")


class FewShotSearchTask:
    """:class:`~datanas_core.search.SearchTask` whose batches are episodes and whose loss is the query loss.

    The searcher's weight step uses training episodes and its architecture step fresh episodes of held-out
    classes, so the architecture is chosen for how well the meta-learner generalises to new classes.
    """

    def __init__(self, learner: ProtoNetLearner | MAMLLearner) -> None:
        self.learner = learner

    def loss(
        self, model: nn.Module, batch: Episode, arch: ArchSample | None
    ) -> tuple[Tensor, Mapping[str, Any]]:
        loss, acc = self.learner.episode_loss(model, batch, arch)  # type: ignore[arg-type]
        return loss, {"acc": acc}

    def batch_size(self, batch: Episode) -> int:
        return int(batch.query_y.shape[0])


@dataclass(frozen=True)
class MetaTrainConfig:
    """Meta-training of a fixed network (Adam on the meta-loss).

    Attributes:
        episodes: meta-training episodes; meta_batch: episodes averaged per optimiser step.
        lr: Adam learning rate; lr_min: cosine floor.
        grad_clip: gradient-norm clip (``None``: off).
    """

    episodes: int = 2000
    meta_batch: int = 1
    lr: float = 1e-3
    lr_min: float = 1e-4
    grad_clip: float | None = 10.0

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.meta_batch < 1:
            raise ConfigError(f"episodes and meta_batch must be >= 1, got {self.episodes}, {self.meta_batch}")
        if not self.lr > 0 or self.lr_min < 0:
            raise ConfigError(f"lr must be > 0 and lr_min >= 0, got {self.lr}, {self.lr_min}")


def meta_train(
    model: FewShotModel,
    learner: ProtoNetLearner | MAMLLearner,
    episodes: Iterable[Episode],
    config: MetaTrainConfig,
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Meta-train ``model`` on ``episodes`` (at least ``config.episodes`` of them are consumed).

    Returns:
        One record per optimiser step (``loss``, ``acc``, ``lr``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)
    steps = math.ceil(config.episodes / config.meta_batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=config.lr_min)
    model.train()
    history: list[dict[str, float]] = []
    it = iter(episodes)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        tot_loss, tot_acc = 0.0, 0.0
        for _ in range(config.meta_batch):
            try:
                ep = next(it)
            except StopIteration:
                raise DataError(f"the episode stream ended before {config.episodes} episodes") from None
            loss, acc = learner.episode_loss(model, ep, None)
            if not torch.isfinite(loss.detach()):
                raise NumericalError(
                    f"meta-loss became {loss.item()} at step {step}; lower the learning rate"
                )
            (loss / config.meta_batch).backward()
            tot_loss += float(loss.detach())
            tot_acc += float(acc)
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        sched.step()
        rec = {"step": float(step), "loss": tot_loss / config.meta_batch, "acc": tot_acc / config.meta_batch,
               "lr": float(opt.param_groups[0]["lr"])}  # fmt: skip
        history.append(rec)
        if on_step is not None:
            on_step(step, rec)
    return history


def meta_test(
    model: FewShotModel,
    learner: ProtoNetLearner | MAMLLearner,
    episodes: Iterable[Episode],
    *,
    arch: ArchSample | None = None,
    confidence: float = 0.95,
) -> MeanCI:
    """Mean query accuracy over ``episodes`` with its confidence interval."""
    accs = [learner.evaluate(model, ep, arch) for ep in episodes]
    return mean_confidence_interval(accs, confidence)


def evaluate_runs(
    model: FewShotModel, learner: ProtoNetLearner | MAMLLearner, runs: Sequence[Any]
) -> tuple[float, list[float]]:
    """Accuracy on the official 20-way one-shot runs (:func:`~datanas_fewshot.sources.load_omniglot_runs`).

    Returns:
        ``(mean accuracy, per-run accuracies)``.
    """
    accs = []
    for run in runs:
        ep = Episode(run.support_x, run.support_y, run.query_x, run.query_y)
        accs.append(learner.evaluate(model, ep))
    if not accs:
        raise DataError("no runs to evaluate")
    return sum(accs) / len(accs), accs
