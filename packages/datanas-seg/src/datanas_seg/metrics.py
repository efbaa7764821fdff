"""Pure-torch segmentation metrics (per-class areas and mIoU).

These match mmseg's ``IoUMetric.intersect_and_union`` / ``total_area_to_metrics`` (which
:mod:`datanas_seg.mmseg` uses when mmseg is installed); the package's tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["IoUAccumulator", "intersect_and_union"]


def intersect_and_union(
    pred: Tensor, label: Tensor, num_classes: int, ignore_index: int = 255
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class pixel areas of one prediction.

    Args:
        pred: predicted class ids, any shape.
        label: ground-truth class ids, same shape; ``ignore_index`` pixels are skipped.
        num_classes: number of classes.
        ignore_index: label value to skip.

    Returns:
        ``(intersect, union, pred_area, label_area)``, each a float64 CPU tensor of shape ``(num_classes,)``.
    """
    keep = label != ignore_index
    p = pred[keep].long()
    t = label[keep].long()
    valid = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    p, t = p[valid], t[valid]
    area_pred = torch.bincount(p, minlength=num_classes).double().cpu()
    area_label = torch.bincount(t, minlength=num_classes).double().cpu()
    inter = torch.bincount(t[p == t], minlength=num_classes).double().cpu()
    return inter, area_pred + area_label - inter, area_pred, area_label


@dataclass
class IoUAccumulator:
    """Accumulates per-class areas over batches and reports mIoU, mean accuracy and pixel accuracy.

    Classes that never occur in labels nor predictions (union 0) are left out of the means, like mmseg's
    ``np.nanmean``.

    Example:
        >>> acc = IoUAccumulator(num_classes=2)
        >>> acc.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
        >>> acc.compute()["mIoU"]
        1.0
    """

    num_classes: int
    ignore_index: int = 255
    intersect: Tensor = field(init=False)
    union: Tensor = field(init=False)
    pred_area: Tensor = field(init=False)
    label_area: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        z = torch.zeros(self.num_classes, dtype=torch.float64)
        self.intersect, self.union, self.pred_area, self.label_area = (
            z.clone(),
            z.clone(),
            z.clone(),
            z.clone(),
        )

    def update(self, pred: Tensor, label: Tensor) -> None:
        """Add one batch (``pred`` and ``label`` of equal shape, class ids)."""
        i, u, p, t = intersect_and_union(pred, label, self.num_classes, self.ignore_index)
        self.intersect += i
        self.union += u
        self.pred_area += p
        self.label_area += t

    def add_areas(self, areas: tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
        """Add precomputed ``(intersect, union, pred_area, label_area)``."""
        i, u, p, t = (a.double().cpu() for a in areas)
        self.intersect += i
        self.union += u
        self.pred_area += p
        self.label_area += t

    def per_class_iou(self) -> Tensor:
        return self.intersect / self.union  # nan where union == 0

    def compute(self) -> dict[str, float]:
        """``{"mIoU", "mAcc", "aAcc"}`` as fractions in [0, 1] (nan if nothing was seen)."""
        iou = self.per_class_iou()
        acc = self.intersect / self.label_area
        total = float(self.label_area.sum())
        return {
            "mIoU": float(torch.nanmean(iou)) if iou.numel() else float("nan"),
            "mAcc": float(torch.nanmean(acc)) if acc.numel() else float("nan"),
            "aAcc": float(self.intersect.sum()) / total if total else float("nan"),
        }
