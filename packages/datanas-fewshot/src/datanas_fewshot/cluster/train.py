"""Unsupervised training of a fixed (derived) clustering network, and its evaluation.

:func:`train_clustering` sees only images. :func:`evaluate_clustering` is the single place where labels are
used:
k-means on the embeddings and the head's own argmax assignments are both scored with NMI, ARI and ACC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datanas_core.errors import ConfigError, NumericalError
from datanas_fewshot.cluster.augment import PairAugment
from datanas_fewshot.cluster.heads import ClusteringNetwork
from datanas_fewshot.cluster.kmeans import KMeansEvaluator
from datanas_fewshot.cluster.metrics import ClusteringScores, clustering_scores
from datanas_fewshot.cluster.objectives import ClusteringObjective, IICLoss
from datanas_fewshot.cluster.task import ClusteringSearchTask, PairLoader

__all__ = ["ClusteringEvaluation", "TrainConfig", "evaluate_clustering", "train_clustering"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of unsupervised training (Adam, as in IIC).

    Attributes:
        epochs: passes over the images.
        batch_size: images per batch (both views of each image are in the batch).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        max_batches: cap on batches per epoch (``None``: all).
        grad_clip: gradient-norm clip (``None``: off).
        seed: seeds the order and the augmentations.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_batches: int | None = None
    grad_clip: float | None = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ConfigError(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")


def train_clustering(
    network: ClusteringNetwork,
    images: Tensor,
    config: TrainConfig,
    *,
    objective: ClusteringObjective | None = None,
    augment: PairAugment | None = None,
    overcluster_weight: float = 1.0,
    nce_weight: float = 0.0,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``network`` on ``images`` with an unsupervised objective; returns per-epoch mean logs.

    Args:
        network: backbone + head (its parameters are updated in place).
        images: ``[N, C, H, W]`` training images; labels are not an argument, by design.
        config: training hyper-parameters.
        objective: the clustering objective (default IIC).
        augment: pair augmentation.
        overcluster_weight: weight of the over-clustering head's term.
        nce_weight: weight of the auxiliary InfoNCE term on the embeddings (0: off).
        on_epoch_end: called with ``(epoch, logs)`` (progress reporting in CLIs).
    """
    task = ClusteringSearchTask(
        objective or IICLoss(), overcluster_weight=overcluster_weight, nce_weight=nce_weight
    )
    bs = min(config.batch_size, images.shape[0])
    loader = PairLoader(images, bs, augment=augment, seed=config.seed, max_batches=config.max_batches)
    params = [p for p in network.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    network.train()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        total, n = 0.0, 0
        for batch in loader:
            loss, _ = task.loss(network, batch, None)
            if not torch.isfinite(loss.detach()):
                raise NumericalError(f"clustering loss became {loss.item()} at epoch {epoch}; lower the lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            total += float(loss.detach())
            n += 1
        logs = {"epoch": float(epoch), "loss": total / max(n, 1)}
        history.append(logs)
        logger.info("clustering train epoch %d: loss %.4f", epoch, logs["loss"])
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    return history


@dataclass
class ClusteringEvaluation:
    """Scores of one trained network on one labelled image set.

    Attributes:
        kmeans: k-means on the embeddings.
        head: the head's own argmax assignments.
        embeddings: ``[N, D]`` numpy embeddings (for the report's 2-D projection).
        kmeans_pred: ``[N]`` k-means cluster ids.
        head_pred: ``[N]`` head cluster ids.
    """

    kmeans: ClusteringScores
    head: ClusteringScores
    embeddings: np.ndarray = field(repr=False)
    kmeans_pred: np.ndarray = field(repr=False)
    head_pred: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kmeans": self.kmeans.to_dict(), "head": self.head.to_dict()}


def evaluate_clustering(
    network: ClusteringNetwork,
    images: Tensor,
    labels: Tensor,
    evaluator: KMeansEvaluator,
    *,
    batch_size: int = 512,
) -> ClusteringEvaluation:
    """Embed ``images`` (eval mode), run k-means, and score k-means and head assignments against
    ``labels``."""
    dev = next(network.parameters()).device
    embs, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        e, lg = network.embed(images[i : i + batch_size].to(dev), batch_size=batch_size)
        embs.append(e.cpu())
        logits.append(lg.cpu())
    emb = torch.cat(embs).numpy()
    head_pred = torch.cat(logits).argmax(1).numpy().astype(np.int64)
    km_pred = evaluator.fit_predict(emb)
    return ClusteringEvaluation(
        kmeans=clustering_scores(labels, km_pred),
        head=clustering_scores(labels, head_pred),
        embeddings=emb,
        kmeans_pred=km_pred,
        head_pred=head_pred,
    )
