"""Batched, seeded image augmentations used to build the positive pairs of unsupervised objectives.

Every transform draws its randomness from an explicit :class:`torch.Generator` (on the CPU) and runs on the
device of the input batch, so a whole run is reproducible from one seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from datanas_core.errors import ConfigError

__all__ = ["PairAugment", "RandomAffine"]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator) * (hi - lo) + lo


@dataclass(frozen=True)
class RandomAffine:
    """Per-sample random rotation, scale, translation and shear, then optional pixel noise.

    Args:
        degrees: maximum absolute rotation in degrees.
        translate: maximum translation as a fraction of the image size.
        scale: ``(min, max)`` zoom factor.
        shear: maximum absolute shear in degrees.
        noise: standard deviation of additive Gaussian pixel noise (0 disables it).
        thickness: stroke-thickness jitter: each image is blended with its 3x3 grey-level dilation
            (``a > 0``) or erosion (``a < 0``), ``a ~ U(-thickness, thickness)``. Without it "amount of ink" is
            invariant under the affine part and becomes a shortcut for pair objectives.
        contrast: per-image intensity scale ``U(1 - contrast, 1 + contrast)`` (clipped to ``[0, 1]``).
    """

    degrees: float = 15.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 10.0
    noise: float = 0.0
    thickness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.thickness <= 1 or not 0 <= self.contrast < 1:
            raise ConfigError(
                f"thickness must be in [0, 1] and contrast in [0, 1), got {self.thickness}, {self.contrast}"
            )
        if self.degrees < 0 or self.translate < 0 or self.shear < 0 or self.noise < 0:
            raise ConfigError(
                f"degrees, translate, shear and noise must be >= 0, got degrees={self.degrees}, "
                f"translate={self.translate}, shear={self.shear}, noise={self.noise}"
            )
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"scale must be (min, max) with 0 < min <= max, got {self.scale!r}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch ``x: [N, C, H, W]``; returns a new tensor of the same shape and device."""
        n = x.shape[0]
        ang = _uniform(n, -self.degrees, self.degrees, generator) * (math.pi / 180)
        sh = _uniform(n, -self.shear, self.shear, generator) * (math.pi / 180)
        sc = _uniform(n, self.scale[0], self.scale[1], generator)
        tx = _uniform(n, -self.translate, self.translate, generator) * 2  # grid coords span [-1, 1]
        ty = _uniform(n, -self.translate, self.translate, generator) * 2
        cos, sin = torch.cos(ang), torch.sin(ang)
        # inverse map (output -> input coordinates): rotation * shear, divided by scale
        a = torch.stack([cos, -sin + cos * torch.tan(sh)], 1) / sc[:, None]
        b = torch.stack([sin, cos + sin * torch.tan(sh)], 1) / sc[:, None]
        theta = torch.stack([torch.cat([a, tx[:, None]], 1), torch.cat([b, ty[:, None]], 1)], 1)
        theta = theta.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
        xf = x if x.is_floating_point() else x.float()
        grid = F.affine_grid(theta, list(xf.shape), align_corners=False)
        out = F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.thickness > 0:
            a = _uniform(n, -self.thickness, self.thickness, generator).to(out.device, out.dtype)
            a = a.view(n, 1, 1, 1)
            dil = F.max_pool2d(out, 3, 1, 1)
            ero = -F.max_pool2d(-out, 3, 1, 1)
            out = out + a.clamp(min=0) * (dil - out) + (-a).clamp(min=0) * (ero - out)
        if self.contrast > 0:
            c = _uniform(n, 1 - self.contrast, 1 + self.contrast, generator).to(out.device, out.dtype)
            out = (out * c.view(n, 1, 1, 1)).clamp(0.0, 1.0)
        if self.noise > 0:
            eps = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
            out = out + self.noise * eps
        return out


@dataclass(frozen=True)
class PairAugment:
    """Two independently augmented views of the same batch (the positive pairs of IIC / SCAN).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = PairAugment()(torch.zeros(4, 1, 8, 8), g)
        >>> a.shape == b.shape == (4, 1, 8, 8)
        True
    """

    transform: RandomAffine = RandomAffine()

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(x, generator), self.transform(x, generator)
