"""Unsupervised search task and the seeded pair loaders it consumes.

A :class:`PairLoader` yields ``(view_a, view_b)`` batches: two random augmentations of the same images. It
never
sees labels. :class:`ClusteringSearchTask` implements the core :class:`~datanas_core.search.SearchTask`
protocol
with a clustering objective, so :class:`~datanas_core.search.Searcher` updates weights with the objective on
the
training images and the architecture with the same objective on held-out images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, DataError
from datanas_core.sample import ArchSample
from datanas_fewshot.cluster.augment import PairAugment
from datanas_fewshot.cluster.objectives import ClusteringObjective, IICLoss, info_nce

__all__ = ["ClusteringSearchTask", "PairLoader", "split_images"]

logger = logging.getLogger(__name__)


def _mix(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (splitmix-style)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def split_images(images: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of an image tensor into ``(train, held_out)``."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n = images.shape[0]
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise DataError(f"cannot hold out {n_val} of {n} images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return images[perm[n_val:]], images[perm[:n_val]]


class PairLoader:
    """Batches of two augmented views of the same images, reproducible per ``(seed, epoch, batch)``.

    Args:
        images: ``[N, C, H, W]`` images (no labels).
        batch_size: images per batch.
        augment: the pair augmentation.
        seed: base seed of the order and the augmentations.
        shuffle: reshuffle every epoch.
        drop_last: drop the last incomplete batch.
        max_batches: cap on batches per epoch (``None``: all).

    Example:
        >>> loader = PairLoader(torch.rand(10, 1, 8, 8), batch_size=4, seed=0)
        >>> a, b = next(iter(loader))
        >>> a.shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        *,
        augment: PairAugment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        max_batches: int | None = None,
    ) -> None:
        if images.ndim != 4:
            raise DataError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and images.shape[0] < batch_size:
            raise DataError(f"batch_size={batch_size} exceeds the {images.shape[0]} images (drop_last=True)")
        if max_batches is not None and max_batches < 1:
            raise ConfigError(f"max_batches must be >= 1 or None, got {max_batches!r}")
        self.images = images
        self.batch_size = batch_size
        self.augment = augment if augment is not None else PairAugment()
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.max_batches = max_batches
        self.epoch = 0
        self._start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration produce ``epoch`` (order and augmentations) from batch ``start_batch``."""
        if not 0 <= start_batch <= len(self):
            raise ConfigError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        self.epoch = int(epoch)
        self._start_batch = int(start_batch)

    def __len__(self) -> int:
        n = self.images.shape[0]
        full = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    def _order(self) -> Tensor:
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))

    def iter_from(self, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate from batch ``start`` of the current epoch (exactly as a full iteration would continue)."""
        order = self._order()
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, b, 1))
            yield self.augment(self.images[idx], g)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        start, self._start_batch = self._start_batch, 0
        return self.iter_from(start)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class ClusteringSearchTask:
    """:class:`~datanas_core.search.SearchTask` for unsupervised clustering.

    ``loss(model, (view_a, view_b), arch)`` runs ``model(view, arch) -> ClusterOutput`` on both views and
    applies
    the objective to the cluster logits (and, with an over-clustering head, to its logits too, averaged).
    Batches carry images only, so labels cannot reach the search.

    Args:
        objective: a clustering objective (default IIC).
        overcluster_weight: weight of the over-clustering term relative to the main one.
        nce_weight: weight of the auxiliary InfoNCE term on the two views' embeddings (0: off).
        nce_temperature: its temperature.
    """

    def __init__(
        self,
        objective: ClusteringObjective | None = None,
        *,
        overcluster_weight: float = 1.0,
        nce_weight: float = 0.0,
        nce_temperature: float = 0.5,
    ) -> None:
        self.objective = objective if objective is not None else IICLoss()
        if overcluster_weight < 0 or nce_weight < 0:
            raise ConfigError(
                f"overcluster_weight and nce_weight must be >= 0, got {overcluster_weight!r}, {nce_weight!r}"
            )
        self.overcluster_weight = float(overcluster_weight)
        self.nce_weight = float(nce_weight)
        self.nce_temperature = float(nce_temperature)

    def loss(self, model: nn.Module, batch: Any, arch: ArchSample | None) -> tuple[Tensor, Mapping[str, Any]]:
        a, b = batch
        dev = _device_of(model)
        out_a = model(a.to(dev), arch)
        out_b = model(b.to(dev), arch)
        main = self.objective(out_a.logits, out_b.logits)
        logs: dict[str, Any] = {"objective": main.detach()}
        total = main
        if out_a.overcluster_logits is not None and self.overcluster_weight > 0:
            over = self.objective(out_a.overcluster_logits, out_b.overcluster_logits)
            logs["overcluster"] = over.detach()
            total = (main + self.overcluster_weight * over) / (1 + self.overcluster_weight)
        if self.nce_weight > 0:
            nce = info_nce(out_a.embedding, out_b.embedding, self.nce_temperature)
            logs["nce"] = nce.detach()
            total = total + self.nce_weight * nce
        return total, logs

    def batch_size(self, batch: Any) -> int:
        return int(batch[0].shape[0])
