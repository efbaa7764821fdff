"""Reproducible loaders: seeded shuffling, worker decoding, batch-wise augmentation.

:class:`ImageLoader` re-creates a ``DataLoader`` per epoch with generators derived from ``(seed, epoch)``, so
epoch ``e`` yields the same batches whether or not earlier epochs ran in this process (resume) and whatever
the number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datanas_core.errors import ConfigError
from datanas_core.runtime.data import DeterministicBatchSampler
from datanas_vision.data.base import VisionData, subset
from datanas_vision.data.transforms import BatchTransform

__all__ = ["ImageLoader", "bilevel_split", "derive_seed", "make_search_loaders", "make_train_loaders"]

logger = logging.getLogger(__name__)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def bilevel_split(n: int, train_fraction: float = 0.5, seed: int = 0) -> tuple[list[int], list[int]]:
    """Seeded random split of ``range(n)`` into weight-training and architecture-validation indices.

    Args:
        n: number of training items.
        train_fraction: share that trains the network weights (DARTS uses 0.5).
        seed: split seed.

    Returns:
        ``(train_indices, val_indices)``, both sorted and non-empty, disjoint, covering ``range(n)``.

    Raises:
        ConfigError: fraction outside ``(0, 1)`` or fewer than 2 items.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if n < 2:
        raise ConfigError(f"a bilevel split needs at least 2 training items, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, 0xB11E))).tolist()
    k = min(max(1, round(train_fraction * n)), n - 1)
    return sorted(perm[:k]), sorted(perm[k:])


class ImageLoader:
    """Batches ``(x, y)`` with ``x`` a normalised float tensor ``(N, C, H, W)`` and ``y`` long ``(N,)``.

    The order comes from :class:`datanas_core.runtime.DeterministicBatchSampler` (a pure function of
    ``(seed, epoch)``, resumable mid-epoch, shardable across ranks); decoding runs in ``DataLoader``
    workers; the augmentation of batch ``b`` of epoch ``e`` is drawn in the main process from a generator
    seeded with ``derive_seed(seed, e, b, rank)``. Iterating runs the pending epoch (set by
    :meth:`set_epoch`, else the one after the previous iteration's).

    Args:
        dataset: yields ``(uint8 (C, H, W), int)``.
        batch_size: images per batch (per rank).
        transform: uint8 -> float conversion with optional augmentation.
        shuffle: reshuffle every epoch.
        seed: seeds the order and the augmentation.
        num_workers: ``DataLoader`` workers that decode images (each opens its own zip handle).
        drop_last: drop the last incomplete batch.
        rank, world_size: this process's shard.

    Example:
        >>> from datanas_vision.data import load_dataset
        >>> data = load_dataset("digits", max_per_class=4)
        >>> loader = ImageLoader(data.train, 8, transform=BatchTransform(data.mean, data.std), seed=0)
        >>> x, y = next(iter(loader))
        >>> x.shape, y.shape
        (torch.Size([8, 1, 8, 8]), torch.Size([8]))
    """

    def __init__(
        self,
        dataset: Dataset[tuple[Tensor, int]],
        batch_size: int,
        *,
        transform: BatchTransform,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ConfigError("cannot build a loader over an empty dataset")
        if drop_last and n < batch_size * world_size:
            raise ConfigError(f"drop_last with batch_size {batch_size} > {n} items would yield no batch")
        self.dataset = dataset
        self.sampler = DeterministicBatchSampler(
            n,
            int(batch_size),
            seed=int(seed),
            shuffle=shuffle,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        self.transform = transform
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self._pending = (0, 0)

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next iteration runs."""
        return self._pending[0]

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration run ``epoch`` from batch ``start_batch``."""
        if start_batch < 0 or start_batch > len(self):
            raise ConfigError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        self._pending = (int(epoch), int(start_batch))

    def iter_from(self, start_batch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate the pending epoch from batch ``start_batch`` without loading the skipped batches."""
        self.set_epoch(self._pending[0], start_batch)
        return iter(self)

    def shard(self, rank: int, world_size: int) -> ImageLoader:
        """A copy of this loader for one rank of ``world_size``."""
        return ImageLoader(
            self.dataset,
            self.batch_size,
            transform=self.transform,
            shuffle=self.shuffle,
            seed=self.seed,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            rank=rank,
            world_size=world_size,
        )

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, start = self._pending
        self._pending = (epoch + 1, 0)
        return self._batches(epoch, start)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        # the batch list is computed up front from the sampler's pure ``batches(epoch, start)``, so the
        # DataLoader (which may call ``iter`` on its batch sampler more than once) cannot shift the epoch
        batches = list(self.sampler.batches(epoch, start))
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers)
        augments = self.transform.augments
        for b, (images, labels) in enumerate(loader, start=start):
            gen = None
            if augments:
                gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, b, self.rank))
            yield self.transform(images, gen), labels.to(torch.long)


def make_search_loaders(
    data: VisionData,
    *,
    batch_size: int,
    seed: int = 0,
    train_fraction: float = 0.5,
    augment: bool = True,
    num_workers: int = 0,
) -> tuple[ImageLoader, ImageLoader]:
    """Loaders for bilevel search: a seeded split of the training set into weight and arch halves.

    Both halves use the training augmentation (as the DARTS search code does); neither touches the test
    split.

    Returns:
        ``(train_loader, val_loader)``.
    """
    tr_idx, va_idx = bilevel_split(len(data.train), train_fraction, seed)  # type: ignore[arg-type]
    aug = data.augment if augment else None
    transform = BatchTransform(
        data.mean,
        data.std,
        crop_padding=aug.crop_padding if aug else 0,
        flip=aug.flip if aug else False,
    )
    common = dict(transform=transform, shuffle=True, num_workers=num_workers)
    train = ImageLoader(subset(data.train, tr_idx), batch_size, seed=derive_seed(seed, 11), **common)  # type: ignore[arg-type]
    val = ImageLoader(subset(data.train, va_idx), batch_size, seed=derive_seed(seed, 12), **common)  # type: ignore[arg-type]
    return train, val


def make_train_loaders(
    data: VisionData,
    *,
    batch_size: int,
    seed: int = 0,
    augment: bool = True,
    cutout: int = 0,
    num_workers: int = 0,
    eval_batch_size: int | None = None,
) -> tuple[ImageLoader, ImageLoader]:
    """Loaders for retraining: the whole training split (augmented, maybe with cutout) and the test split.

    Returns:
        ``(train_loader, test_loader)``; the test loader neither shuffles nor augments.
    """
    aug = data.augment if augment else None
    train_t = BatchTransform(
        data.mean,
        data.std,
        crop_padding=aug.crop_padding if aug else 0,
        flip=aug.flip if aug else False,
        cutout=cutout,
    )
    test_t = BatchTransform(data.mean, data.std)
    train = ImageLoader(
        data.train,
        batch_size,
        transform=train_t,
        shuffle=True,
        seed=derive_seed(seed, 21),
        num_workers=num_workers,
    )
    test = ImageLoader(
        data.test,
        eval_batch_size or batch_size,
        transform=test_t,
        shuffle=False,
        seed=derive_seed(seed, 22),
        num_workers=num_workers,
    )
    return train, test
