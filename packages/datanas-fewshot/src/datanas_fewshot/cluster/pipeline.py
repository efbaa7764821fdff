"""Search, train and evaluate a clustering network end to end (what ``python -m datanas_fewshot.cluster``
runs).

Labels flow into exactly one function, :func:`~datanas_fewshot.cluster.train.evaluate_clustering`. The search
(:func:`search_clustering`) and the training (:func:`train_clustering`) receive images only, and the
architecture step of the search uses the unsupervised objective on held-out images.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.search import SearchConfig, Searcher, SearchResult
from datanas_core.space.darts import DartsSpace
from datanas_fewshot.cellnets import (
    build_space,
    count_parameters,
    random_genotype,
    resize_images,
    seeded_build,
    use_weight_optimizer,
)
from datanas_fewshot.cluster.augment import PairAugment, RandomAffine
from datanas_fewshot.cluster.data import ClusteringData
from datanas_fewshot.cluster.heads import ClusteringHead, ClusteringNetwork
from datanas_fewshot.cluster.kmeans import KMeansEvaluator
from datanas_fewshot.cluster.metrics import ClusteringScores
from datanas_fewshot.cluster.objectives import build_objective
from datanas_fewshot.cluster.task import ClusteringSearchTask, PairLoader, split_images
from datanas_fewshot.cluster.train import (
    ClusteringEvaluation,
    TrainConfig,
    evaluate_clustering,
    train_clustering,
)

__all__ = [
    "ClusterConfig",
    "ClusteringRun",
    "build_clustering_network",
    "build_clustering_searcher",
    "build_clustering_supernet",
    "evaluate_random_cells",
    "kmeans_on_pixels",
    "run_clustering",
    "search_clustering",
    "train_network",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    """Everything that defines a clustering search + training run (CPU-sized defaults).

    Attributes:
        n_clusters: clusters ``K`` (the number of classes for evaluation).
        image_size: images are resized to this side (``None`` keeps them; 16 keeps CPU runs fast).
        ops: op set of the DARTS space (``"compact"``, ``"darts"`` or a list).
        steps: intermediate nodes per cell.
        C: initial channels; ``layers``: cells (3 = normal, reduce, reduce).
        embed_dim: embedding width of the head.
        objective: ``"iic"`` (default), ``"scan"`` or ``"dec"``; ``objective_options`` its options.
        assignment: head assignment (``"linear"``, or ``"student_t"`` for DEC).
        overcluster: IIC over-clustering head size (0: off); ``overcluster_weight`` its loss weight.
        nce_weight: weight of an auxiliary InfoNCE term between the two views' embeddings (0: off).
        search: the core search configuration (epochs, estimator, learning rates, ...).
        weight_optimizer: supernet weight optimiser, ``"adam"`` (default) or the core's ``"sgd"``; it uses
            ``search.w_lr`` / ``search.w_lr_min``.
        search_batch_size: images per search batch; ``search_max_batches`` caps batches per search epoch.
        val_fraction: share of images held out for the architecture step.
        train: training of the derived network.
        kmeans_n_init: k-means restarts at evaluation.
        augment: the pair augmentation.
        seed: seeds splits, initialisation, order and augmentations.
        search_seed: seeds the search alone (its split, supernet initialisation, batch order, augmentations
            and architecture draws); ``None``: ``seed``. Training and evaluation always use ``seed``, so
            searches with several seeds are compared under one training protocol.
    """

    n_clusters: int = 10
    image_size: int | None = 12
    ops: str | tuple[str, ...] = "small"
    steps: int = 3
    C: int = 8
    layers: int = 3
    embed_dim: int = 64
    objective: Literal["iic", "scan", "dec"] = "iic"
    objective_options: Mapping[str, Any] = field(default_factory=dict)
    assignment: Literal["linear", "student_t"] = "linear"
    overcluster: int = 0
    overcluster_weight: float = 1.0
    nce_weight: float = 1.0
    search: SearchConfig = field(
        default_factory=lambda: SearchConfig(
            epochs=3,
            arch_warmup_epochs=1,
            w_lr=3e-3,
            w_lr_min=3e-4,
            w_weight_decay=0.0,
            a_lr=0.03,
        )
    )
    weight_optimizer: Literal["adam", "sgd"] = "adam"
    search_batch_size: int = 64
    search_max_batches: int | None = 30
    val_fraction: float = 0.5
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=3, batch_size=64, lr=3e-3, max_batches=100)
    )

    kmeans_n_init: int = 10
    augment: PairAugment = field(
        default_factory=lambda: PairAugment(
            RandomAffine(degrees=15, translate=0.1, thickness=0.5, contrast=0.3)
        )
    )
    seed: int = 0
    search_seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_clusters, int) or self.n_clusters < 2:
            raise ConfigError(f"n_clusters must be an integer >= 2, got {self.n_clusters!r}")
        if self.objective == "dec" and self.assignment != "student_t":
            logger.debug("DEC objective with a linear head (softmax assignments)")
        object.__setattr__(self, "objective_options", dict(self.objective_options))
        if not isinstance(self.ops, str):
            object.__setattr__(self, "ops", tuple(self.ops))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["search"] = self.search.to_dict()
        d["train"] = dataclasses.asdict(self.train)
        d["augment"] = dataclasses.asdict(self.augment)
        d["ops"] = self.ops if isinstance(self.ops, str) else list(self.ops)
        d["objective_options"] = dict(self.objective_options)
        return d

    def space(self) -> DartsSpace:
        return build_space(self.ops, steps=self.steps)


def _head(config: ClusterConfig, in_features: int) -> ClusteringHead:
    return ClusteringHead(
        in_features,
        config.n_clusters,
        embed_dim=config.embed_dim,
        assignment=config.assignment,
        overcluster=config.overcluster,
    )


def build_clustering_supernet(
    config: ClusterConfig, in_channels: int, *, seed: int | None = None
) -> ClusteringNetwork:
    """Supernet backbone + clustering head (seeded initialisation)."""
    space = config.space()

    def make() -> ClusteringNetwork:
        backbone = space.build_supernet(
            C=config.C, layers=config.layers, num_classes=0, in_channels=in_channels
        )
        return ClusteringNetwork(backbone, _head(config, backbone.num_features))

    return seeded_build(make, config.seed if seed is None else seed)


def build_clustering_network(
    config: ClusterConfig, genotype: Genotype, in_channels: int, *, seed: int | None = None
) -> ClusteringNetwork:
    """Derived network of ``genotype`` + clustering head (seeded initialisation)."""
    space = config.space()

    def make() -> ClusteringNetwork:
        backbone = space.build_derived(
            genotype, C=config.C, layers=config.layers, num_classes=0, in_channels=in_channels
        )
        return ClusteringNetwork(backbone, _head(config, backbone.num_features))

    return seeded_build(make, config.seed + 17 if seed is None else seed)


def build_clustering_searcher(
    images: Tensor, config: ClusterConfig, *, callbacks: Sequence[Any] = ()
) -> tuple[Searcher, PairLoader, PairLoader]:
    """The core searcher for an unsupervised cell search, with its pair loaders.

    The weight step uses the objective on the training images, the architecture step the same objective on
    held-out images (``config.val_fraction``). ``images`` only: labels are not an argument.
    """
    images = resize_images(images, config.image_size)
    seed = config.seed if config.search_seed is None else config.search_seed
    train_x, val_x = split_images(images, config.val_fraction, seed)
    bs = min(config.search_batch_size, train_x.shape[0], val_x.shape[0])
    train_loader = PairLoader(
        train_x, bs, augment=config.augment, seed=seed * 2 + 1, max_batches=config.search_max_batches
    )
    val_loader = PairLoader(
        val_x, bs, augment=config.augment, seed=seed * 2 + 2, max_batches=config.search_max_batches
    )
    net = build_clustering_supernet(config, images.shape[1], seed=seed)
    task = ClusteringSearchTask(
        build_objective(config.objective, **config.objective_options),
        overcluster_weight=config.overcluster_weight,
        nce_weight=config.nce_weight,
    )
    search_cfg = dataclasses.replace(config.search, seed=seed)
    searcher = Searcher(config.space(), task, search_cfg, supernet=net, callbacks=callbacks)
    use_weight_optimizer(searcher, config.weight_optimizer, search_cfg.w_lr, search_cfg.w_lr_min)
    return searcher, train_loader, val_loader


def search_clustering(
    images: Tensor, config: ClusterConfig, *, callbacks: Sequence[Any] = ()
) -> tuple[SearchResult, Searcher]:
    """Run :func:`build_clustering_searcher`'s search to the end (no run directory; see the CLI for one).

    Returns:
        ``(result, searcher)``; ``result.genotype`` is the derived cell.
    """
    searcher, train_loader, val_loader = build_clustering_searcher(images, config, callbacks=callbacks)
    result = searcher.fit(train_loader, val_loader)
    logger.info("clustering search derived %s", result.genotype.to_json(indent=None))
    return result, searcher


def _init_dec_centroids(net: ClusteringNetwork, images: Tensor, config: ClusterConfig) -> None:
    """DEC: centroids from k-means on the initial embeddings (no labels)."""
    emb, _ = net.embed(images[: min(len(images), 2000)])
    km = KMeansEvaluator(config.n_clusters, n_init=4, seed=config.seed)
    pred = km.fit_predict(emb)
    centres = torch.stack(
        [
            emb[torch.as_tensor(pred == k)].mean(0) if (pred == k).any() else emb[0]
            for k in range(config.n_clusters)
        ]
    )
    net.head.init_centroids(centres)


def train_network(
    images: Tensor, genotype: Genotype, config: ClusterConfig, *, seed: int | None = None
) -> tuple[ClusteringNetwork, list[dict[str, float]]]:
    """Build and train the derived clustering network of ``genotype`` on (unlabelled) ``images``."""
    images = resize_images(images, config.image_size)
    net = build_clustering_network(config, genotype, images.shape[1], seed=seed)
    if config.assignment == "student_t":
        _init_dec_centroids(net, images, config)
    train_cfg = config.train if seed is None else dataclasses.replace(config.train, seed=seed)
    history = train_clustering(
        net,
        images,
        train_cfg,
        objective=build_objective(config.objective, **config.objective_options),
        augment=config.augment,
        overcluster_weight=config.overcluster_weight,
        nce_weight=config.nce_weight,
    )
    return net, history


@dataclass
class ClusteringRun:
    """Outcome of :func:`run_clustering`."""

    genotype: Genotype
    search_history: list[dict[str, Any]]
    train_history: list[dict[str, float]]
    evaluation: ClusteringEvaluation
    parameters: int
    network: ClusteringNetwork = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "genotype": self.genotype.to_dict(),
            "parameters": self.parameters,
            **{k: v for k, v in self.evaluation.to_dict().items()},
        }


def run_clustering(
    data: ClusteringData,
    config: ClusterConfig,
    *,
    genotype: Genotype | None = None,
    callbacks: Sequence[Any] = (),
) -> ClusteringRun:
    """Search (unless ``genotype`` is given), train and evaluate on ``data``.

    Only ``data.images`` reach search and training; ``data.labels`` are used by the final evaluation only.

    Raises:
        DataError: evaluation requested on data without labels.
    """
    images = data.images  # the only thing search and training see
    history: list[dict[str, Any]] = []
    if genotype is None:
        result, _ = search_clustering(images, config, callbacks=callbacks)
        genotype, history = result.genotype, result.history
    net, train_hist = train_network(images, genotype, config)
    evaluation = _evaluate(net, data, config)
    return ClusteringRun(genotype, history, train_hist, evaluation, count_parameters(net), net)


def _evaluate(net: ClusteringNetwork, data: ClusteringData, config: ClusterConfig) -> ClusteringEvaluation:
    from datanas_core.errors import DataError

    if data.labels is None:
        raise DataError(f"dataset {data.name!r} has no labels; clustering can be trained but not scored")
    evaluator = KMeansEvaluator(config.n_clusters, n_init=config.kmeans_n_init, seed=config.seed)
    return evaluate_clustering(net, resize_images(data.images, config.image_size), data.labels, evaluator)


def evaluate_random_cells(
    data: ClusteringData, config: ClusterConfig, n: int = 5, *, seed: int = 1000
) -> list[tuple[Genotype, ClusteringEvaluation]]:
    """Train and evaluate ``n`` random cells with the same training budget as the searched one."""
    space = config.space()
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        genotype = random_genotype(space, g)
        net, _ = train_network(data.images, genotype, config)
        ev = _evaluate(net, data, config)
        logger.info("random cell %d: k-means NMI %.4f, head NMI %.4f", i, ev.kmeans.nmi, ev.head.nmi)
        out.append((genotype, ev))
    return out


def kmeans_on_pixels(
    data: ClusteringData, n_clusters: int, *, n_init: int = 10, seed: int = 0
) -> ClusteringScores:
    """The raw-pixel baseline: k-means on flattened images (original resolution)."""
    if data.labels is None:
        from datanas_core.errors import DataError

        raise DataError(f"dataset {data.name!r} has no labels to score against")
    x = data.images.reshape(len(data), -1).numpy().astype(np.float64)
    return KMeansEvaluator(n_clusters, n_init=n_init, seed=seed).evaluate(x, data.labels)
