"""A light pure-torch segmentation model around the backbones (no mmseg needed).

:class:`SimpleSegHead` is an FPN-lite decoder: each feature map is projected to ``channels`` with a 1x1
conv-BN-ReLU, upsampled to the stride-4 map and summed, then a 3x3 conv-BN-ReLU and a 1x1 classifier.
:class:`SegModel` chains a backbone and a head and upsamples the logits to the input size. With a supernet
backbone its ``forward(x, arch)`` takes the architecture sample; with a derived backbone ``forward(x)``.

The mmseg integration (:mod:`datanas_seg.mmseg`) uses mmseg's own decode heads instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample

__all__ = ["SegModel", "SimpleSegHead"]


class SimpleSegHead(nn.Module):
    """FPN-lite decode head: ``forward(features) -> logits`` at the resolution of ``features[0]``.

    Args:
        in_channels: channels of each input feature map.
        num_classes: output classes.
        channels: width of the head.
        dropout: dropout before the classifier.
    """

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, channels: int = 32, dropout: float = 0.0
    ):
        super().__init__()
        if not in_channels or num_classes < 1 or channels < 1:
            raise ConfigError(
                "SimpleSegHead needs in_channels, num_classes >= 1 and channels >= 1; "
                f"got {list(in_channels)}, "
                f"{num_classes}, {channels}"
            )
        self.lateral = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
            )
            for c in in_channels
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        if len(features) != len(self.lateral):
            raise ConfigError(f"SimpleSegHead expects {len(self.lateral)} feature maps, got {len(features)}")
        size = features[0].shape[-2:]
        acc = self.lateral[0](features[0])
        for lat, f in zip(self.lateral[1:], features[1:], strict=True):
            acc = acc + F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(self.fuse(acc)))


class SegModel(nn.Module):
    """Backbone + head; logits upsampled to the input size.

    Args:
        backbone: a :class:`~datanas_seg.backbone.SegSupernetBackbone` (then ``forward(x, arch)``) or a
            :class:`~datanas_seg.backbone.DataNASBackbone` (``forward(x)``).
        head: maps the feature tuple to logits.

    Example:
        >>> from datanas_seg.space import SegDartsSpace
        >>> bb = SegDartsSpace().build_supernet(C=4, in_channels=1)
        >>> model = SegModel(bb, SimpleSegHead(bb.out_channels, num_classes=2, channels=8))
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, arch: ArchSample | None = None) -> Tensor:
        """Logits ``(N, num_classes, H, W)`` for ``x`` ``(N, C, H, W)``."""
        feats = self.backbone(x) if arch is None else self.backbone(x, arch)
        logits = self.head(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
