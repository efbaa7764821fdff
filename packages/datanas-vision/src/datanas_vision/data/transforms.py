"""Batch-wise image transforms with explicit random generators.

Augmenting whole batches in the main process, with a ``torch.Generator`` the caller owns, makes every
random draw reproducible from a seed and independent of the number of loader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from datanas_core.errors import ConfigError, DataError

__all__ = ["BatchTransform", "cutout", "random_crop", "random_flip"]

logger = logging.getLogger(__name__)


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by ``padding`` on every side, then crop each image back to its size at a random offset.

    Args:
        images: ``(N, C, H, W)``.
        padding: pixels of zero padding (0 returns ``images`` unchanged).
        generator: source of the offsets (on the CPU).

    Returns:
        ``(N, C, H, W)`` of the same dtype.
    """
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (oy[:, None] + torch.arange(h, device=images.device)[None, :])[:, None, :, None]  # (N, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=images.device)[None, :])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(images: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image horizontally with probability ``p``."""
    flip = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def cutout(images: Tensor, length: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero a ``length x length`` square (clipped at the border) at a random centre of each image.

    As in DeVries & Taylor (2017) and the DARTS evaluation code, the centre is uniform over the image and
    the square is applied after normalisation.
    """
    if length <= 0:
        return images
    n, _, h, w = images.shape
    cy = torch.randint(0, h, (n,), generator=generator).to(images.device)
    cx = torch.randint(0, w, (n,), generator=generator).to(images.device)
    ys = torch.arange(h, device=images.device)[None, :]
    xs = torch.arange(w, device=images.device)[None, :]
    half = length // 2
    in_y = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] - half + length))  # (N, H)
    in_x = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] - half + length))  # (N, W)
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]  # (N, 1, H, W)
    return images.masked_fill(mask, 0.0)


class BatchTransform:
    """uint8 batch -> normalised float batch, with optional crop/flip/cutout augmentation.

    Args:
        mean, std: per-channel constants for images scaled to ``[0, 1]``.
        crop_padding: random-crop padding (0: no crop).
        flip: random horizontal flips.
        cutout: cutout square length (0: none).

    Example:
        >>> t = BatchTransform((0.5,), (0.25,), crop_padding=1, flip=False)
        >>> t(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_padding: int = 0,
        flip: bool = False,
        cutout: int = 0,
    ) -> None:
        if len(mean) != len(std) or not mean:
            raise ConfigError(f"mean and std need one value per channel, got {list(mean)} and {list(std)}")
        if any(s <= 0 for s in std):
            raise ConfigError(f"std values must be positive, got {list(std)}")
        if crop_padding < 0 or cutout < 0:
            raise ConfigError(f"crop_padding and cutout must be >= 0, got {crop_padding} and {cutout}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.cutout = int(cutout)

    @property
    def augments(self) -> bool:
        """Whether the transform draws random numbers."""
        return self.crop_padding > 0 or self.flip or self.cutout > 0

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Transform a batch.

        Args:
            images: ``uint8 (N, C, H, W)``.
            generator: random source for the augmentation (required when the transform augments, so the
                draw is reproducible).

        Returns:
            ``float32 (N, C, H, W)``.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"expected a uint8 batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] != len(self.mean):
            raise DataError(
                f"batch has {images.shape[1]} channels but the normalisation has {len(self.mean)} "
                f"(mean {self.mean})"
            )
        if self.augments and generator is None:
            raise ConfigError("an augmenting BatchTransform needs a torch.Generator for reproducible draws")
        x = images
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        x = x.to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[None, :, None, None]
        x = (x - mean) / std
        if self.cutout:
            x = cutout(x, self.cutout, generator)
        return x

    def __repr__(self) -> str:
        return (
            f"BatchTransform(mean={self.mean}, std={self.std}, crop_padding={self.crop_padding}, "
            f"flip={self.flip}, cutout={self.cutout})"
        )
