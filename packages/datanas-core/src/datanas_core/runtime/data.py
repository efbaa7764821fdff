"""Data loaders whose order is a pure function of ``(seed, epoch)``: resumable mid-epoch and shardable.

:class:`DeterministicBatchSampler` draws the permutation of epoch ``e`` from a generator seeded with
``(seed, e)``, so the batch order of any epoch can be recomputed after a restart, the first ``k`` batches
can be skipped without loading them, and ``world_size`` ranks each take a contiguous slice of every
*global* batch (``batch_size * world_size`` samples), so that averaging the ranks' gradients equals the
gradient of one process on the global batch.

:class:`DeterministicLoader` wraps ``torch.utils.data.DataLoader`` with that sampler and a dedicated
generator for worker seeds (a plain DataLoader draws its worker base seed from the global torch RNG,
which would make a resumed run diverge).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datanas_core.errors import ConfigError

__all__ = ["DeterministicBatchSampler", "DeterministicLoader", "EpochStream", "epoch_seed"]


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    """A 63-bit seed derived from ``(seed, epoch, salt)`` (stable across processes and platforms)."""
    x = (
        int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xBF58476D1CE4E5B9 + int(salt) * 0x94D049BB133111EB
    ) & ((1 << 64) - 1)
    x ^= x >> 31
    x = (x * 0xD6E8FEEBDA3A4A9B) & ((1 << 64) - 1)
    x ^= x >> 29
    return x & ((1 << 63) - 1)


class DeterministicBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; the order depends only on ``(seed, epoch)``.

    Each call to ``iter()`` runs one epoch: the one set by :meth:`set_epoch` (from its ``start_batch``),
    otherwise the epoch after the previous iteration's (starting at 0).

    Args:
        num_samples: dataset length.
        batch_size: samples per batch *per rank*.
        seed: base seed of the permutation.
        shuffle: permute (``False``: index order).
        drop_last: drop the last incomplete global batch. With ``world_size > 1`` and ``drop_last=False``
            the last global batch is completed by wrapping around, so every rank gets the same number of
            equally sized batches.
        rank, world_size: this process's shard.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ConfigError(f"world_size must be a positive integer, got {world_size!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        if num_samples < 1:
            raise ConfigError(f"the dataset is empty (num_samples={num_samples})")
        self.num_samples = int(num_samples)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self._next_epoch = 0
        self._start_batch = 0
        self.epoch = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per full epoch (independent of any skipped start)."""
        g = self.global_batch_size
        if self.drop_last:
            n = self.num_samples // g
            if n == 0:
                raise ConfigError(
                    f"drop_last with a global batch of {g} leaves no batch of a dataset of {self.num_samples}"
                )
            return n
        return math.ceil(self.num_samples / g)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration run ``epoch`` starting at batch ``start_batch``."""
        if start_batch < 0 or start_batch > len(self):
            raise ConfigError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        self._next_epoch = int(epoch)
        self._start_batch = int(start_batch)

    def order(self, epoch: int) -> list[int]:
        """The full (global) sample order of ``epoch``."""
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator()
        g.manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=g).tolist()

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[list[int]]:
        """This rank's batches of ``epoch``, from ``start_batch`` on."""
        order = self.order(epoch)
        g = self.global_batch_size
        n_batches = len(self)
        if self.world_size > 1 and not self.drop_last:
            total = n_batches * g
            while len(order) < total:
                order = order + order[: total - len(order)]
        for b in range(start_batch, n_batches):
            chunk = order[b * g : (b + 1) * g]
            if self.world_size == 1:
                yield chunk
            else:
                yield chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    @property
    def next_epoch(self) -> int:
        """The epoch the next iteration will run (see :meth:`set_epoch`)."""
        return self._next_epoch

    def begin_epoch(self) -> tuple[int, int]:
        """Start the pending iteration: returns its ``(epoch, start_batch)`` and moves on to the next epoch."""
        epoch, start = self._next_epoch, self._start_batch
        self.epoch = epoch
        self._next_epoch, self._start_batch = epoch + 1, 0
        return epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        return self.batches(*self.begin_epoch())


class _EpochBatches:
    """The batches of one fixed ``(epoch, start)``: a stateless batch sampler, so a ``DataLoader`` that calls
    ``iter()`` on it more than once (worker processes do) cannot advance the epoch."""

    def __init__(self, sampler: DeterministicBatchSampler, epoch: int, start: int) -> None:
        self.sampler, self.epoch, self.start = sampler, epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        return self.sampler.batches(self.epoch, self.start)

    def __len__(self) -> int:
        return len(self.sampler) - self.start


class DeterministicLoader:
    """A resumable, shardable data loader (see the module docstring).

    Iterating runs one epoch; call :meth:`set_epoch` before iterating to choose the epoch and the first
    batch (the runtime does this on resume). Without it, consecutive iterations run epochs 0, 1, 2, ...

    Args:
        dataset: a map-style dataset.
        batch_size: samples per batch per rank.
        seed: base seed of the order (use the search seed).
        shuffle, drop_last, rank, world_size: see :class:`DeterministicBatchSampler`.
        num_workers, collate_fn, pin_memory, persistent_workers: passed to ``DataLoader``. Bit-exact resume
            with random per-sample augmentation needs ``num_workers=0`` (worker-to-batch assignment depends
            on where the epoch started).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = DeterministicBatchSampler(
            len(dataset),  # type: ignore[arg-type]
            batch_size,
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    @property
    def epoch(self) -> int:
        """The epoch of the current (or last started) iteration."""
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration run ``epoch`` from batch ``start_batch``."""
        self.sampler.set_epoch(epoch, start_batch)

    @property
    def next_epoch(self) -> int:
        """The epoch the next iteration will run."""
        return self.sampler.next_epoch

    def iter_from(self, start_batch: int) -> Iterator[Any]:
        """Iterate the pending epoch (set by :meth:`set_epoch`) from batch ``start_batch`` without loading the
        skipped batches (used by ``Searcher.train_epoch`` on resume)."""
        self.sampler.set_epoch(self.sampler.next_epoch, start_batch)
        return iter(self)

    def shard(self, rank: int, world_size: int) -> DeterministicLoader:
        """A copy of this loader for one rank of ``world_size``."""
        return DeterministicLoader(
            self.dataset,
            self.sampler.batch_size,
            seed=self.sampler.seed,
            shuffle=self.sampler.shuffle,
            drop_last=self.sampler.drop_last,
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
        )

    def __iter__(self) -> Iterator[Any]:
        epoch, start = self.sampler.begin_epoch()
        g = torch.Generator()
        g.manual_seed(epoch_seed(self.sampler.seed, epoch, salt=1 + start))
        kwargs: dict[str, Any] = {}
        if self.collate_fn is not None:
            kwargs["collate_fn"] = self.collate_fn
        loader = DataLoader(
            self.dataset,
            batch_sampler=_EpochBatches(self.sampler, epoch, start),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=g,
            **kwargs,
        )
        return iter(loader)


class EpochStream:
    """Presents a deterministic loader as exactly ``length`` batches per search epoch.

    The searcher draws one validation batch per training batch; when the validation loader has a different
    number of batches than the training loader it is cycled. This wrapper makes that stream a pure
    function of ``(search epoch, batch index)``: batch ``i`` of search epoch ``e`` is batch ``i % n`` of the
    wrapped loader's epoch ``e * c + i // n`` (``n = len(loader)``, ``c = ceil(length / n)``), so a resumed
    run can jump to any position.

    Args:
        loader: a loader with ``set_epoch(epoch, start_batch)`` and ``__len__`` (DeterministicLoader).
        length: batches per search epoch (``len(train_loader)``).
        epoch_fn: returns the current search epoch (``lambda: searcher.epoch``).
    """

    def __init__(self, loader: Any, length: int, epoch_fn: Callable[[], int]) -> None:
        if length < 1:
            raise ConfigError(f"length must be >= 1, got {length}")
        self.loader = loader
        self.length = int(length)
        self.epoch_fn = epoch_fn

    def __len__(self) -> int:
        return self.length

    def iter_from(self, start_batch: int) -> Iterator[Any]:
        n = len(self.loader)
        cycles = math.ceil(self.length / n)
        e = int(self.epoch_fn())
        i = int(start_batch)
        while i < self.length:
            c, pos = divmod(i, n)
            self.loader.set_epoch(e * cycles + c, pos)
            for batch in self.loader:
                yield batch
                i += 1
                if i >= self.length or i % n == 0:
                    break

    def __iter__(self) -> Iterator[Any]:
        return self.iter_from(0)

    @property
    def dataset(self) -> Any:
        return getattr(self.loader, "dataset", None)
