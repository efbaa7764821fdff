"""The contract between the domain-agnostic search loop and a domain (images, tokens, episodes, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from datanas_core.sample import ArchSample

__all__ = ["SearchTask", "split_loss"]


@runtime_checkable
class SearchTask(Protocol):
    """What a domain supplies to :class:`~datanas_core.search.Searcher`.

    ``loss`` is called for the weight step (training batch) and the architecture step (validation batch).
    It may return the loss alone or ``(loss, logs)`` where ``logs`` maps names to floats/0-d tensors
    (e.g. accuracy) that the searcher averages over an epoch. Optional methods:

    - ``metrics(model, batch, arch) -> Mapping[str, float]`` for evaluation (defaults to the loss logs);
    - ``batch_size(batch) -> int`` for weighted averages (defaults to ``len(batch[0])``).
    """

    def loss(
        self, model: nn.Module, batch: Any, arch: ArchSample
    ) -> Tensor | tuple[Tensor, Mapping[str, Any]]: ...


def split_loss(out: Tensor | tuple[Tensor, Mapping[str, Any]]) -> tuple[Tensor, dict[str, float]]:
    """Normalise a task's ``loss`` return value to ``(loss, logs)``."""
    if isinstance(out, tuple):
        loss, logs = out
        return loss, {k: float(v) for k, v in logs.items()}
    return out, {}
