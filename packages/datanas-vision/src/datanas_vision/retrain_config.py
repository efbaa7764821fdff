"""The retraining hyper-parameters (:class:`RetrainConfig`), without torch: the CLIs build their option
tables from it at ``--help`` time. :mod:`datanas_vision.retrain` re-exports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from datanas_core.cli_options import check_positive
from datanas_core.errors import ConfigError

__all__ = ["RetrainConfig"]


@dataclass(frozen=True)
class RetrainConfig:
    """Hyper-parameters of retraining (defaults: DARTS CIFAR-10 protocol except width, depth and epochs).

    Attributes:
        epochs: training epochs (DARTS: 600).
        batch_size: batch size (DARTS: 96).
        lr, min_lr: cosine schedule from ``lr`` to ``min_lr`` (DARTS: 0.025 -> 0).
        momentum, weight_decay: SGD settings (DARTS: 0.9, 3e-4).
        grad_clip: gradient-norm clip (DARTS: 5).
        C, layers: network width and cells (DARTS CIFAR: 36, 20); for NB201 genotypes ``layers`` is N.
        auxiliary: auxiliary head (``None``: on when the head fits the feature map, i.e. >= 8x8 there).
        auxiliary_weight: weight of the auxiliary loss (DARTS: 0.4).
        drop_path: final drop-path probability, ramped linearly from 0 (DARTS: 0.2).
        cutout: cutout length (``None``: 16 for 32x32 images, ``H // 4`` for smaller ones; 0 disables).
        augment: random crop (+ flip where it suits the data).
        label_smoothing: cross-entropy label smoothing (DARTS CIFAR: 0).
        seed: weight init, data order, augmentation and drop-path masks.
        num_workers: loader workers.
    """

    epochs: int = 20
    batch_size: int = 96
    lr: float = 0.025
    min_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    C: int = 16
    layers: int = 8
    auxiliary: bool | None = None
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int | None = None
    augment: bool = True
    label_smoothing: float = 0.0
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "epochs", "batch_size", "C", "layers")
        if not self.lr > 0 or self.min_lr < 0 or self.weight_decay < 0:
            raise ConfigError(
                f"need lr > 0, min_lr >= 0 and weight_decay >= 0; got lr={self.lr}, min_lr={self.min_lr}, "
                f"weight_decay={self.weight_decay}"
            )
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.cutout is not None and self.cutout < 0:
            raise ConfigError(f"cutout must be >= 0 or None (auto), got {self.cutout}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
