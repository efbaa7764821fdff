"""Few-shot episodes with learn2learn (the package's only learn2learn adapter besides :mod:`.meta`).

Episodes come from ``learn2learn.data.Taskset`` over ``MetaDataset`` with the task transforms
``[NWays(ways), KShots(shots + queries), LoadData, RemapLabels, ConsecutiveLabels]``. learn2learn returns the
support and query samples together; :func:`split_support_query` separates them.

learn2learn draws its randomness from Python's global ``random`` module. :class:`EpisodeSampler` makes
episodes
reproducible without leaking state: each episode is drawn with ``random`` re-seeded from ``(seed, index)``
and the
caller's ``random`` state is restored afterwards.

learn2learn is imported lazily, so :func:`split_support_query` and :class:`Episode` work without it;
everything
that needs it raises :class:`~datanas_core.errors.MissingDependencyError` naming the ``l2l`` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datanas_core.errors import ConfigError, DataError, MissingDependencyError

__all__ = [
    "Episode",
    "EpisodeLoader",
    "EpisodeSampler",
    "build_taskset",
    "import_learn2learn",
    "split_support_query",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    'install it with `pip install "datanas-fewshot[l2l]"` (learn2learn 0.2.0 ships only an sdist: on '
    "Python 3.11 regenerate its Cython sources with `cython -3 learn2learn/data/*.pyx` before building; "
    "see the datanas-fewshot README)"
)


def import_learn2learn() -> ModuleType:
    """Import learn2learn (silencing the notices its ``gym`` dependency prints on import).

    Raises:
        MissingDependencyError: learn2learn is not installed (the message names the ``datanas-fewshot[l2l]``
        extra).
    """
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            import learn2learn
    except ImportError as exc:
        raise MissingDependencyError(
            f"few-shot episodes and MAML need learn2learn, which failed to import ({exc}); {_INSTALL_HINT}"
        ) from exc
    if buf.getvalue().strip():
        logger.debug("learn2learn import notices: %s", buf.getvalue().strip())
    return learn2learn


@dataclass
class Episode:
    """One N-way K-shot task.

    Attributes:
        support_x: ``[ways * shots, C, H, W]``; support_y: ``[ways * shots]`` labels in ``0..ways-1``.
        query_x: ``[ways * queries, C, H, W]``; query_y: ``[ways * queries]``.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    @property
    def ways(self) -> int:
        return int(self.support_y.unique().numel())

    def to(self, device: torch.device | str) -> Episode:
        return Episode(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
        )


def split_support_query(data: Tensor, labels: Tensor, shots: int, queries: int | None = None) -> Episode:
    """Split a learn2learn task (support and query samples together) into support and query sets.

    For every class, in ascending label order, the first ``shots`` samples (in the task's order) form the
    support
    set and the remaining ``queries`` the query set. Labels must already be ``0..ways-1`` (``RemapLabels``).

    Args:
        data: ``[ways * (shots + queries), ...]`` samples.
        labels: matching ``[ways * (shots + queries)]`` labels.
        shots: support samples per class.
        queries: query samples per class (default: whatever remains, equal for every class).

    Raises:
        DataError: labels are not ``0..ways-1``, or a class has a different number of samples.
        ConfigError: ``shots < 1`` or ``queries < 1``.

    Example:
        >>> ep = split_support_query(torch.arange(6.0), torch.tensor([1, 0, 1, 0, 1, 0]), shots=1)
        >>> ep.support_y.tolist(), ep.query_y.tolist()
        ([0, 1], [0, 0, 1, 1])
    """
    if shots < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    if data.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise DataError(f"data has {data.shape[0]} samples but labels have shape {tuple(labels.shape)}")
    classes = labels.unique(sorted=True)
    ways = int(classes.numel())
    if ways == 0 or not torch.equal(classes.cpu(), torch.arange(ways)):
        raise DataError(f"episode labels must be 0..ways-1 (apply RemapLabels), got {classes.tolist()}")
    counts = torch.bincount(labels.cpu(), minlength=ways)
    per_class = int(counts[0])
    if not bool((counts == per_class).all()):
        raise DataError(f"every class needs the same number of samples, got counts {counts.tolist()}")
    q = per_class - shots if queries is None else queries
    if q < 1:
        raise ConfigError(f"queries must be >= 1, got {q} ({per_class} samples per class, {shots} shots)")
    if shots + q != per_class:
        raise DataError(f"each class has {per_class} samples, expected shots + queries = {shots} + {q}")
    s_idx, q_idx = [], []
    for c in range(ways):
        idx = (labels == c).nonzero().flatten()
        s_idx.append(idx[:shots])
        q_idx.append(idx[shots:])
    s = torch.cat(s_idx)
    qi = torch.cat(q_idx)
    return Episode(data[s], labels[s], data[qi], labels[qi])


def build_taskset(dataset: Dataset, ways: int, shots: int, queries: int, *, num_tasks: int = -1) -> Any:
    """A learn2learn ``Taskset`` of ``ways``-way tasks with ``shots + queries`` samples per class.

    Args:
        dataset: a map-style dataset of ``(x, label)``; when it has ``labels_to_indices()`` (e.g.
            :class:`~datanas_fewshot.sources.ImageClassDataset`) the bookkeeping is not recomputed.
        ways, shots, queries: task size.
        num_tasks: ``-1`` for an infinite stream, else the number of cached task descriptions.

    Raises:
        ConfigError: the dataset has fewer than ``ways`` classes or a class has fewer than ``shots + queries``
            samples (naming the limits).
        MissingDependencyError: learn2learn is missing.
    """
    for name, v in (("ways", ways), ("shots", shots), ("queries", queries)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    l2l = import_learn2learn()
    from learn2learn.data.transforms import ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels

    l2i = dataset.labels_to_indices() if callable(getattr(dataset, "labels_to_indices", None)) else None
    meta = l2l.data.MetaDataset(dataset, labels_to_indices=l2i)
    n_classes = len(meta.labels)
    if n_classes < ways:
        raise ConfigError(f"{ways}-way tasks need at least {ways} classes; the dataset has {n_classes}")
    smallest = min(len(v) for v in meta.labels_to_indices.values())
    if smallest < shots + queries:
        raise ConfigError(
            f"shots + queries = {shots + queries} samples per class, but the smallest class has {smallest}"
        )
    transforms = [
        NWays(meta, ways),
        KShots(meta, shots + queries),
        LoadData(meta),
        RemapLabels(meta),
        ConsecutiveLabels(meta),
    ]
    return l2l.data.Taskset(meta, task_transforms=transforms, num_tasks=num_tasks)


def _mix(*parts: int) -> int:
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class EpisodeSampler:
    """Reproducible episodes from a learn2learn taskset: episode ``i`` depends only on ``(seed, i)``.

    Args:
        dataset: labelled dataset (see :func:`build_taskset`).
        ways, shots, queries: task size.
        seed: base seed.

    Example:
        >>> sampler = EpisodeSampler(ds, ways=5, shots=1, queries=15, seed=0)   # doctest: +SKIP
        >>> ep = sampler.episode(0)                                              # doctest: +SKIP
    """

    def __init__(self, dataset: Dataset, ways: int, shots: int, queries: int, *, seed: int = 0) -> None:
        self.taskset = build_taskset(dataset, ways, shots, queries)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.seed = int(seed)

    def episode(self, index: int) -> Episode:
        """The episode number ``index`` (learn2learn sampling under a temporary ``random`` seed)."""
        state = random.getstate()
        try:
            random.seed(_mix(self.seed, index))
            data, labels = self.taskset.sample()[:2]
        finally:
            random.setstate(state)
        return split_support_query(data, labels, self.shots, self.queries)


class EpisodeLoader:
    """``episodes_per_epoch`` reproducible episodes per epoch (the loader protocol the core ``Searcher`` uses:
    ``len``, iteration, ``set_epoch`` and ``iter_from`` for resumes)."""

    def __init__(self, sampler: EpisodeSampler, episodes_per_epoch: int, *, stream: int = 0) -> None:
        if episodes_per_epoch < 1:
            raise ConfigError(f"episodes_per_epoch must be >= 1, got {episodes_per_epoch}")
        self.sampler = sampler
        self.episodes_per_epoch = int(episodes_per_epoch)
        self.stream = int(stream)
        self.epoch = 0
        self._start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next iteration produce ``epoch`` from episode ``start_batch``."""
        if not 0 <= start_batch <= self.episodes_per_epoch:
            raise ConfigError(f"start_batch must be in 0..{self.episodes_per_epoch}, got {start_batch}")
        self.epoch = int(epoch)
        self._start_batch = int(start_batch)

    def __len__(self) -> int:
        return self.episodes_per_epoch

    def iter_from(self, start: int) -> Iterator[Episode]:
        base = (self.stream * 1_000_003 + self.epoch) * self.episodes_per_epoch
        for i in range(start, self.episodes_per_epoch):
            yield self.sampler.episode(base + i)

    def __iter__(self) -> Iterator[Episode]:
        start, self._start_batch = self._start_batch, 0
        return self.iter_from(start)
