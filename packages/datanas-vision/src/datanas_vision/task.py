"""The image-classification :class:`~datanas_core.search.SearchTask`: cross-entropy loss, top-1 accuracy."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError, DataError
from datanas_core.sample import ArchSample

__all__ = ["ClassificationTask", "accuracy"]

logger = logging.getLogger(__name__)


def accuracy(logits: Tensor, targets: Tensor, topk: int = 1) -> Tensor:
    """Fraction of rows whose target is among the ``topk`` highest logits (a 0-d tensor)."""
    k = min(topk, logits.shape[-1])
    hit = (logits.topk(k, dim=-1).indices == targets[:, None]).any(dim=-1)
    return hit.float().mean()


def _device_of(model: Any) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class ClassificationTask:
    """Cross-entropy classification for :class:`~datanas_core.search.Searcher`.

    Batches are ``(images, labels)`` (what :class:`~datanas_vision.data.ImageLoader` yields); they are
    moved to the device of the model's parameters. ``loss`` returns ``(loss, {"acc": top1})``.

    Args:
        label_smoothing: cross-entropy label smoothing.

    Example:
        >>> task = ClassificationTask()
        >>> searcher = Searcher(DartsSpace(), task, SearchConfig(epochs=1),
        ...                     supernet_kwargs=dict(C=8, layers=5, num_classes=10))  # doctest: +SKIP
    """

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _unpack(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise DataError(f"a classification batch is (images, labels), got {type(batch).__name__}")
        x, y = batch
        dev = _device_of(model)
        return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    def loss(self, model: nn.Module, batch: Any, arch: ArchSample) -> tuple[Tensor, Mapping[str, Tensor]]:
        """Cross-entropy of ``model(x, arch)`` and the batch's top-1 accuracy."""
        x, y = self._unpack(model, batch)
        logits = model(x, arch)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return loss, {"acc": accuracy(logits.detach(), y)}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batch: Any, arch: ArchSample) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy (used by ``Searcher.evaluate``)."""
        x, y = self._unpack(model, batch)
        logits = model(x, arch)
        return {
            "loss": float(F.cross_entropy(logits, y)),
            "acc": float(accuracy(logits, y)),
            "top5": float(accuracy(logits, y, 5)),
        }

    def batch_size(self, batch: Any) -> int:
        return int(batch[1].shape[0])
