"""Search task and evaluation for the pure-torch segmentation model.

:class:`SegSearchTask` implements :class:`datanas_core.search.SearchTask` for a
:class:`~datanas_seg.model.SegModel` whose ``forward(x, arch)`` returns logits at input resolution: pixel-wise
cross-entropy (``ignore_index`` skipped) plus pixel accuracy for the logs, and per-batch mIoU in ``metrics``.
:func:`evaluate_segmentation` accumulates per-class areas over a whole loader (the correct dataset-level
mIoU).

The mmseg variant lives in :mod:`datanas_seg.mmseg` (the loss there is mmseg's segmentor loss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError, DataError
from datanas_core.sample import ArchSample
from datanas_seg.metrics import IoUAccumulator, intersect_and_union

__all__ = ["SegSearchTask", "evaluate_segmentation", "model_device", "sliding_window_logits", "unpack_batch"]

AreasFn = Callable[[Tensor, Tensor, int, int], tuple[Tensor, Tensor, Tensor, Tensor]]


def model_device(model: Any) -> torch.device:
    """Device of the first parameter of ``model`` (CPU if it has none)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def unpack_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(images float (N, C, H, W), masks int64 (N, H, W))`` on ``device``.

    Raises:
        DataError: the batch is not an ``(images, masks)`` pair of matching shapes.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"a segmentation batch must be (images, masks), got {type(batch).__name__}")
    x, y = batch
    if x.dim() != 4 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[-2:] != y.shape[-2:]:
        raise DataError(
            f"images {tuple(x.shape)} and masks {tuple(y.shape)} do not match; "
            "expected (N, C, H, W) and (N, H, W)"
        )
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True).long()


class SegSearchTask:
    """Cross-entropy segmentation task for :class:`~datanas_core.search.Searcher`.

    Args:
        num_classes: number of classes.
        ignore_index: mask value excluded from loss and metrics.
        class_weight: cross-entropy class weights (e.g. :func:`datanas_seg.data.median_frequency_weights`).
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, class_weight: Sequence[float] | None = None
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_weight = None if class_weight is None else torch.tensor([float(w) for w in class_weight])

    def _ce(self, logits: Tensor, y: Tensor) -> Tensor:
        w = None if self.class_weight is None else self.class_weight.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, y, weight=w, ignore_index=self.ignore_index)

    def _logits(self, model: nn.Module, x: Tensor, arch: ArchSample | None) -> Tensor:
        return model(x) if arch is None else model(x, arch)

    def loss(
        self, model: nn.Module, batch: Any, arch: ArchSample | None
    ) -> tuple[Tensor, Mapping[str, float]]:
        """Pixel cross-entropy and pixel accuracy of ``model(x, arch)`` (``model(x)`` if ``arch`` is None)."""
        x, y = unpack_batch(batch, model_device(model))
        logits = self._logits(model, x, arch)
        loss = self._ce(logits, y)
        with torch.no_grad():
            keep = y != self.ignore_index
            acc = (logits.argmax(1)[keep] == y[keep]).float().mean() if keep.any() else torch.zeros(())
        return loss, {"acc": float(acc)}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batch: Any, arch: ArchSample | None) -> dict[str, float]:
        """Loss, mIoU and pixel accuracy of one batch."""
        x, y = unpack_batch(batch, model_device(model))
        logits = self._logits(model, x, arch)
        acc = IoUAccumulator(self.num_classes, self.ignore_index)
        acc.update(logits.argmax(1), y)
        out = acc.compute()
        return {
            "loss": float(self._ce(logits, y)),
            "mIoU": out["mIoU"],
            "aAcc": out["aAcc"],
        }

    def batch_size(self, batch: Any) -> int:
        return int(batch[0].shape[0])


def sliding_window_logits(
    predict: Callable[[Tensor], Tensor], x: Tensor, crop_size: int, stride: int
) -> Tensor:
    """Average ``predict``'s logits over overlapping ``crop_size`` windows of ``x`` (N, C, H, W).

    The same tiling as mmseg's ``EncoderDecoder.slide_inference`` (windows every ``stride`` pixels, the last
    one flush with the border, logits averaged where windows overlap). Models trained on small crops should be
    evaluated this way: whole-image inference changes the statistics their global pooling and padding see.

    Raises:
        ConfigError: ``crop_size`` or ``stride`` < 1.
    """
    if crop_size < 1 or stride < 1:
        raise ConfigError(f"crop_size and stride must be >= 1, got {crop_size} and {stride}")
    n, _, h, w = x.shape
    hg = max(h - crop_size + stride - 1, 0) // stride + 1
    wg = max(w - crop_size + stride - 1, 0) // stride + 1
    out: Tensor | None = None
    count = x.new_zeros((n, 1, h, w))
    for i in range(hg):
        for j in range(wg):
            y2, x2 = min(i * stride + crop_size, h), min(j * stride + crop_size, w)
            y1, x1 = max(y2 - crop_size, 0), max(x2 - crop_size, 0)
            logits = predict(x[:, :, y1:y2, x1:x2])
            if out is None:
                out = x.new_zeros((n, logits.shape[1], h, w))
            out[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    if out is None:  # pragma: no cover - hg, wg >= 1 always
        raise ConfigError(f"no window fits input of shape {tuple(x.shape)}")
    return out / count


@torch.no_grad()
def evaluate_segmentation(
    predict: Callable[[Tensor], Tensor],
    loader: Iterable[Any],
    num_classes: int,
    *,
    ignore_index: int = 255,
    device: torch.device | str = "cpu",
    areas_fn: AreasFn | None = None,
) -> dict[str, float]:
    """Dataset-level mIoU / mAcc / aAcc of ``predict`` over ``loader``.

    Args:
        predict: maps images ``(N, C, H, W)`` to logits ``(N, K, H, W)`` (or class ids ``(N, H, W)``).
        loader: yields ``(images, masks)``.
        num_classes: number of classes.
        ignore_index: mask value to skip.
        device: where to run ``predict``.
        areas_fn: per-image ``(pred, label, num_classes, ignore_index) -> (intersect, union, pred, label)``
            areas (default :func:`datanas_seg.metrics.intersect_and_union`; the mmseg integration passes
            mmseg's ``IoUMetric.intersect_and_union``).

    Returns:
        ``{"mIoU", "mAcc", "aAcc"}`` as fractions, plus ``"IoU.<k>"`` per class.
    """
    fn = intersect_and_union if areas_fn is None else areas_fn
    acc = IoUAccumulator(num_classes, ignore_index)
    for batch in loader:
        x, y = unpack_batch(batch, torch.device(device))
        out = predict(x)
        pred = out.argmax(1) if out.dim() == 4 else out
        for p, t in zip(pred, y, strict=True):
            acc.add_areas(fn(p, t, num_classes, ignore_index))
    res = acc.compute()
    for k, v in enumerate(acc.per_class_iou().tolist()):
        res[f"IoU.{k}"] = v
    return res
