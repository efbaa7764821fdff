"""Flags and builders shared by the ``datanas_seg`` command-line tools (private)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datanas_core.errors import ConfigError
from datanas_seg.genotypes import GenotypeRef

if TYPE_CHECKING:
    import torch
    from torch import nn

    from datanas_seg.data import SegImages
    from datanas_seg.space import SegDartsSpace

logger = logging.getLogger(__name__)

FRAMEWORKS = ("mmseg", "torch")

#: ``--data``, ``--decode-head`` and ``--head-input`` choices without importing torch (``--help`` stays fast);
#: a test checks them against :data:`datanas_seg.data.DATASETS` and :mod:`datanas_seg.export`.
DATASET_NAMES = ("isbi2012", "segfolder")
DECODE_HEAD_NAMES = ("ASPPHead", "DepthwiseSeparableASPPHead", "FCNHead", "PSPHead")
HEAD_INPUT_NAMES = ("concat", "last")


def add_data_args(parser: argparse.ArgumentParser, *, class_weight: str = "none") -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=DATASET_NAMES, default="isbi2012", help="dataset (default: isbi2012)")
    g.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="isbi2012: folder with membrane_train.zip (or isbi2012/membrane_train.zip); "
        "segfolder: folder with images/ and masks/ (class-id PNGs)",
    )
    g.add_argument("--num-classes", type=int, default=None, help="segfolder: classes (default: inferred)")
    g.add_argument("--ignore-index", type=int, default=255, help="segfolder: mask value to ignore")
    g.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.6, 0.2, 0.2),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of images for train/val/test (split by image; default 0.6 0.2 0.2)",
    )
    g.add_argument("--split-seed", type=int, default=0, help="seed of the image split (default 0)")
    g.add_argument("--crop-size", type=int, default=None, help="side of the random square crops")
    g.add_argument("--batch-size", type=int, default=8, help="crops per batch (default 8)")
    g.add_argument(
        "--class-weight",
        choices=("balanced", "none"),
        default=class_weight,
        help="cross-entropy class weights: median-frequency balanced from the training masks, or none "
        f"(default {class_weight})",
    )


def add_model_args(parser: argparse.ArgumentParser, *, C: int, head_channels: int) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--C", type=int, default=C, help=f"channels per node in stage 0 (default {C})")
    g.add_argument(
        "--cells-per-stage",
        type=int,
        nargs="+",
        default=[1],
        help="normal cells per stage: one number for all stages or one per stage (default 1)",
    )
    g.add_argument(
        "--num-stages",
        type=int,
        choices=(3, 4),
        default=3,
        help="3: strides 4/8/16, 4: 4/8/16/32 (default 3)",
    )
    g.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default="mmseg",
        help="mmseg: mmseg EncoderDecoder with an mmseg decode head (needs datanas-seg[mmseg]); "
        "torch: a light pure-torch FPN head (default mmseg)",
    )
    g.add_argument("--decode-head", choices=DECODE_HEAD_NAMES, default="ASPPHead", help="mmseg decode head")
    g.add_argument(
        "--head-inputs",
        choices=HEAD_INPUT_NAMES,
        default="concat",
        help="concat: head sees all levels resized to stride 4; last: only the deepest (default concat)",
    )
    g.add_argument(
        "--head-channels",
        type=int,
        default=head_channels,
        help=f"decode head width (default {head_channels})",
    )
    g.add_argument(
        "--dilations",
        type=int,
        nargs="+",
        default=[1, 2, 4, 6],
        help="ASPP dilations (default 1 2 4 6, sized for small crops; mmseg's usual is 1 6 12 18)",
    )
    g.add_argument(
        "--auxiliary",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="mmseg: add an auxiliary FCNHead on the second deepest level",
    )


def cells_per_stage(args: argparse.Namespace) -> int | tuple[int, ...]:
    c = list(args.cells_per_stage)
    return c[0] if len(c) == 1 else tuple(c)


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


def load_splits(args: argparse.Namespace) -> Splits:
    from datanas_seg.data import load_dataset, median_frequency_weights, split_by_image

    kwargs: dict[str, Any] = {}
    if args.data == "segfolder":
        kwargs = {"num_classes": args.num_classes, "ignore_index": args.ignore_index}
    data = load_dataset(args.data, args.data_dir, **kwargs)
    idx = split_by_image(len(data), args.split, seed=args.split_seed)
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


def head_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"dilations": tuple(args.dilations)}


def build_search_model(
    args: argparse.Namespace,
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
            C=args.C,
            cells_per_stage=cells_per_stage(args),
            num_stages=args.num_stages,
            in_channels=data.in_channels,
            decode_head=args.decode_head,
            head_channels=args.head_channels,
            head_inputs=args.head_inputs,
            auxiliary=args.auxiliary,
            ignore_index=data.ignore_index,
            head_options=head_options(args),
            class_weight=class_weight,
        )
        return model, MMSegSearchTask(data.num_classes, data.ignore_index)
    from datanas_seg.task import SegSearchTask

    bb = space.build_supernet(
        C=args.C,
        cells_per_stage=cells_per_stage(args),
        num_stages=args.num_stages,
        in_channels=data.in_channels,
    )
    model = SegModel(bb, SimpleSegHead(bb.out_channels, data.num_classes, channels=args.head_channels))
    return model, SegSearchTask(data.num_classes, data.ignore_index, class_weight)


def build_derived_model(
    args: argparse.Namespace,
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
            C=args.C,
            cells_per_stage=cells_per_stage(args),
            num_stages=args.num_stages,
            in_channels=data.in_channels,
            decode_head=args.decode_head,
            head_channels=args.head_channels,
            head_inputs=args.head_inputs,
            auxiliary=args.auxiliary,
            drop_path_prob=drop_path_prob,
            ignore_index=data.ignore_index,
            head_options=head_options(args),
            class_weight=class_weight,
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
        cells_per_stage=cells_per_stage(args),
        num_stages=args.num_stages,
        in_channels=data.in_channels,
        drop_path_prob=drop_path_prob,
    )
    model = SegModel(bb, SimpleSegHead(bb.out_channels, data.num_classes, channels=args.head_channels))
    return model, SegSearchTask(data.num_classes, data.ignore_index, class_weight), None


def predict_fn(
    args: argparse.Namespace, model: nn.Module, *, crop_size: int | None = None, stride: int | None = None
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


def pick_device(name: str | None) -> torch.device:
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def check_positive(**values: Any) -> None:
    for k, v in values.items():
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"--{k.replace('_', '-')} must be a positive integer, got {v!r}")
