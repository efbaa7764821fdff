"""The options of the ``datanas_seg`` command lines as typed dataclasses, without torch (``--help`` builds its
option tables from them): each field's type, default and help (the ``Attributes:`` entries) are the single
source of the CLI flag. :func:`~datanas_core.cli_options.add_dataclass_options` makes the flags and
:func:`~datanas_core.cli_options.dataclass_from_args` turns the parsed options back into these objects, which
:mod:`datanas_seg._cli` and :func:`datanas_seg.train.train_and_evaluate` take.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from datanas_core.cli_options import check_positive
from datanas_core.errors import ConfigError

__all__ = [
    "DATASET_NAMES",
    "DECODE_HEAD_NAMES",
    "FRAMEWORKS",
    "HEAD_INPUT_NAMES",
    "SegCompareConfig",
    "SegDataConfig",
    "SegModelConfig",
    "SegSearchBudget",
    "SegTrainConfig",
]

DatasetName = Literal["isbi2012", "segfolder"]
Framework = Literal["mmseg", "torch"]
DecodeHead = Literal["ASPPHead", "DepthwiseSeparableASPPHead", "FCNHead", "PSPHead"]
HeadInputs = Literal["concat", "last"]

#: ``--data``, ``--framework``, ``--decode-head`` and ``--head-inputs`` choices (the fields' Literal values); a
#: test checks them against :data:`datanas_seg.data.DATASETS` and :mod:`datanas_seg.export`.
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
FRAMEWORKS: tuple[str, ...] = get_args(Framework)
DECODE_HEAD_NAMES: tuple[str, ...] = get_args(DecodeHead)
HEAD_INPUT_NAMES: tuple[str, ...] = get_args(HeadInputs)


@dataclass(frozen=True)
class SegDataConfig:
    """The images, their split and the crops of a segmentation CLI.

    Attributes:
        data: dataset (isbi2012 or a segfolder of images/ and masks/).
        data_dir: isbi2012: folder with membrane_train.zip (or isbi2012/membrane_train.zip); segfolder: folder
            with images/ and masks/ (class-id PNGs).
        num_classes: segfolder: classes (default: inferred).
        ignore_index: segfolder: mask value to ignore.
        split: fractions of images for train/val/test (split by image).
        split_seed: seed of the image split.
        crop_size: side of the random square crops (default 64).
        batch_size: crops per batch.
        class_weight: cross-entropy class weights: median-frequency balanced from the training masks, or none.
    """

    data: DatasetName = "isbi2012"
    data_dir: Path | None = None
    num_classes: int | None = None
    ignore_index: int = 255
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    crop_size: int | None = None
    batch_size: int = 8
    class_weight: Literal["balanced", "none"] = "none"

    def __post_init__(self) -> None:
        check_positive(self, "batch_size", "crop_size", "num_classes")

    @property
    def crop(self) -> int:
        """The crop side (``crop_size``, default 64)."""
        return self.crop_size or 64


@dataclass(frozen=True)
class SegModelConfig:
    """The backbone and decode head of a segmentation model (searched supernet or derived network).

    Attributes:
        C: channels per node in stage 0.
        cells_per_stage: normal cells per stage: one number for all stages or one per stage.
        num_stages: 3: strides 4/8/16, 4: 4/8/16/32.
        framework: mmseg: mmseg EncoderDecoder with an mmseg decode head (needs datanas-seg[mmseg]); torch: a
            light pure-torch FPN head.
        decode_head: mmseg decode head.
        head_inputs: concat: head sees all levels resized to stride 4; last: only the deepest.
        head_channels: decode head width.
        dilations: ASPP dilations (sized for small crops; mmseg's usual is 1 6 12 18).
        auxiliary: mmseg: add an auxiliary FCNHead on the second deepest level.
    """

    C: int = 16
    cells_per_stage: tuple[int, ...] = (1,)
    num_stages: Literal[3, 4] = 3
    framework: Framework = "mmseg"
    decode_head: DecodeHead = "ASPPHead"
    head_inputs: HeadInputs = "concat"
    head_channels: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 6)
    auxiliary: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "C", "head_channels")

    @property
    def stages(self) -> int | tuple[int, ...]:
        """``cells_per_stage`` as the builders take it: one int for all stages, or one per stage."""
        c = tuple(self.cells_per_stage)
        return c[0] if len(c) == 1 else c

    def head_options(self) -> dict[str, Any]:
        return {"dilations": tuple(self.dilations)}

    def segmentor_kwargs(self) -> dict[str, Any]:
        """The keywords of the mmseg builders and of :func:`~datanas_seg.export.export_mmseg_config`
        (backbone size, decode head and its options)."""
        return {
            "C": self.C,
            "cells_per_stage": self.stages,
            "num_stages": self.num_stages,
            "decode_head": self.decode_head,
            "head_channels": self.head_channels,
            "head_inputs": self.head_inputs,
            "auxiliary": self.auxiliary,
            "head_options": self.head_options(),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegTrainConfig:
    """Training and evaluation of a derived segmentation network (``train``, ``compare``).

    Attributes:
        iters: optimisation steps (0: evaluate --init-weights).
        init_weights: start from these model weights (model.pt).
        test_mode: evaluation: sliding windows of the crop size (mmseg's test_cfg mode='slide') or whole
            images.
        test_stride: sliding-window stride (default 3/4 crop).
        lr: initial SGD learning rate (poly decay).
        weight_decay: SGD weight decay.
        drop_path: drop-path probability.
        seed: seed of weights and crops.
    """

    iters: int = 500
    init_weights: Path | None = None
    test_mode: Literal["slide", "whole"] = "slide"
    test_stride: int | None = None
    lr: float = 0.05
    weight_decay: float = 5e-4
    drop_path: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "test_stride")
        if self.iters < 0 or (self.iters == 0 and self.init_weights is None):
            raise ConfigError(
                f"--iters must be >= 1 (or 0 with --init-weights to only evaluate), got {self.iters}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(
                f"need lr > 0, weight_decay >= 0 and 0 <= drop_path < 1; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, drop_path={self.drop_path}"
            )


@dataclass(frozen=True)
class SegSearchBudget:
    """The per-epoch budget of the segmentation search (the epochs are ``--epochs``).

    Attributes:
        steps_per_epoch: training batches per epoch.
        val_batches: distinct validation batches per epoch.
    """

    steps_per_epoch: int = 24
    val_batches: int = 8

    def __post_init__(self) -> None:
        check_positive(self, "steps_per_epoch", "val_batches")


@dataclass(frozen=True)
class SegCompareConfig:
    """The comparison of ``python -m datanas_seg.compare`` (the training options are ``train``'s).

    Attributes:
        random: random backbones.
        tolerance: relative parameter tolerance of the random backbones.
        random_seed: seed of the random architectures.
        jobs: train this many models at once, each in its own `python -m datanas_seg.train` process (same
            results as sequential runs).
    """

    random: int = 5
    tolerance: float = 0.1
    random_seed: int = 0
    jobs: int = 1

    def __post_init__(self) -> None:
        check_positive(self, "jobs")
        if self.random < 0 or not self.tolerance > 0:
            raise ConfigError(f"need --random >= 0 and --tolerance > 0, got {self.random}, {self.tolerance}")
