"""Flags and builders shared by the ``datanas_seg`` command-line tools (private)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datanas_core.cli_options import add_dataclass_options, check_positive, dataclass_from_args
from datanas_seg.cli_config import (  # noqa: F401 - the choice tuples: old import place
    DATASET_NAMES,
    DECODE_HEAD_NAMES,
    FRAMEWORKS,
    HEAD_INPUT_NAMES,
    SegDataConfig,
    SegModelConfig,
)
from datanas_seg.genotypes import GenotypeRef

if TYPE_CHECKING:
    from torch import nn

    from datanas_seg.data import SegImages
    from datanas_seg.space import SegDartsSpace

logger = logging.getLogger(__name__)


def add_data_args(parser: argparse.ArgumentParser, *, class_weight: str = "none") -> None:
    """The :class:`~datanas_seg.cli_config.SegDataConfig` options (``--data-dir`` required)."""
    g = parser.add_argument_group("data")
    add_dataclass_options(
        g,
        SegDataConfig,
        defaults={"class_weight": class_weight},
        metavars={"split": ("TRAIN", "VAL", "TEST")},
        required=["data_dir"],
    )


def add_model_args(parser: argparse.ArgumentParser, *, C: int, head_channels: int) -> None:
    """The :class:`~datanas_seg.cli_config.SegModelConfig` options (``C`` and ``head_channels``: this CLI's
    defaults)."""
    g = parser.add_argument_group("model")
    add_dataclass_options(g, SegModelConfig, defaults={"C": C, "head_channels": head_channels})


def data_config(args: argparse.Namespace) -> SegDataConfig:
    """The parsed data options."""
    return dataclass_from_args(SegDataConfig, args)


def model_config(args: argparse.Namespace) -> SegModelConfig:
    """The parsed model options."""
    return dataclass_from_args(SegModelConfig, args)


@dataclass
class Splits:
    data: SegImages
    train: SegImages
    val: SegImages
    test: SegImages
    indices: tuple[list[int], list[int], list[int]]
    class_weight: list[float] | None = None

    def names(self) -> dict[str, list[str]]:
        return {"train": self.train.names, "val": self.val.names, "test": self.test.names}


def load_splits(args: SegDataConfig) -> Splits:
    """Load the dataset of ``args`` and split it by image (train/val/test)."""
    from datanas_seg.data import load_dataset, median_frequency_weights, split_by_image

    kwargs: dict[str, Any] = {}
    if args.data == "segfolder":
        kwargs = {"num_classes": args.num_classes, "ignore_index": args.ignore_index}
    data = load_dataset(args.data, args.data_dir, **kwargs)
    idx = split_by_image(len(data), list(args.split), seed=args.split_seed)
    logger.info(
        "%s: %d images (%d train / %d val / %d test), %d classes, %d input channel(s)",
        args.data,
        len(data),
        *(len(i) for i in idx),
        data.num_classes,
        data.in_channels,
    )
    train = data.subset(idx[0])
    weights = median_frequency_weights(train) if args.class_weight == "balanced" else None
    if weights is not None:
        logger.info("class weights (median frequency, training images): %s", [round(w, 3) for w in weights])
    return Splits(data, train, data.subset(idx[1]), data.subset(idx[2]), idx, weights)


def build_search_model(
    args: SegModelConfig,
    space: SegDartsSpace,
    data: SegImages,
    class_weight: list[float] | None = None,
) -> tuple[nn.Module, Any]:
    """(supernet model, task) for ``--framework``."""
    from datanas_seg.model import SegModel, SimpleSegHead

    if args.framework == "mmseg":
        from datanas_seg.mmseg import MMSegSearchTask, build_search_segmentor

        model = build_search_segmentor(
            space,
            data.num_classes,
            in_channels=data.in_channels,
            ignore_index=data.ignore_index,
            class_weight=class_weight,
            **args.segmentor_kwargs(),
        )
        return model, MMSegSearchTask(data.num_classes, data.ignore_index)
    from datanas_seg.task import SegSearchTask

    bb = space.build_supernet(
        C=args.C,
        cells_per_stage=args.stages,
        num_stages=args.num_stages,
        in_channels=data.in_channels,
    )
    model = SegModel(bb, SimpleSegHead(bb.out_channels, data.num_classes, channels=args.head_channels))
    return model, SegSearchTask(data.num_classes, data.ignore_index, class_weight)


def build_derived_model(
    args: SegModelConfig,
    genotype: GenotypeRef,
    data: SegImages,
    *,
    drop_path_prob: float = 0.0,
    class_weight: list[float] | None = None,
) -> tuple[nn.Module, Any, Any]:
    """``(model, task, areas_fn)`` for a derived genotype under ``--framework``.

    ``areas_fn`` is None for the pure-torch model (the default per-class areas are used).
    """
    from datanas_seg.model import SegModel, SimpleSegHead

    if args.framework == "mmseg":
        from datanas_seg.mmseg import MMSegSearchTask, build_derived_segmentor, mmseg_intersect_and_union

        model = build_derived_segmentor(
            genotype,
            data.num_classes,
            in_channels=data.in_channels,
            drop_path_prob=drop_path_prob,
            ignore_index=data.ignore_index,
            class_weight=class_weight,
            **args.segmentor_kwargs(),
        )
        return (
            model,
            MMSegSearchTask(data.num_classes, data.ignore_index),
            mmseg_intersect_and_union,
        )
    from datanas_seg.backbone import DataNASBackbone
    from datanas_seg.task import SegSearchTask

    bb = DataNASBackbone(
        genotype,
        C=args.C,
        cells_per_stage=args.stages,
        num_stages=args.num_stages,
        in_channels=data.in_channels,
        drop_path_prob=drop_path_prob,
    )
    model = SegModel(bb, SimpleSegHead(bb.out_channels, data.num_classes, channels=args.head_channels))
    return model, SegSearchTask(data.num_classes, data.ignore_index, class_weight), None


def predict_fn(
    args: SegModelConfig, model: nn.Module, *, crop_size: int | None = None, stride: int | None = None
) -> Any:
    """Images -> logits at input resolution; sliding windows of ``crop_size`` when given."""
    from datanas_seg.task import sliding_window_logits

    if args.framework == "mmseg":
        from datanas_seg.mmseg import segmentor_logits

        return lambda x: segmentor_logits(model, x, crop_size=crop_size, stride=stride)
    if crop_size is None:
        return lambda x: model(x)
    st = stride if stride is not None else max(1, 3 * crop_size // 4)
    return lambda x: sliding_window_logits(model, x, crop_size, st)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch CPU threads (``None``: torch's choice)."""
    check_positive(threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
