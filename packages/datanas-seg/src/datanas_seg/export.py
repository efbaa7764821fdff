"""mmseg model/config dictionaries for DataNAS backbones, and export of a trainable mmseg config file.

Everything here is plain Python (dicts and text): writing a config does not need mmseg. Training it does:
the written file sets ``custom_imports=dict(imports=['datanas_seg.mmseg'])`` (which registers the backbone
and, on ``mmcv-lite``, the compiled-ops placeholder) and ``default_scope='mmseg'``, so
``mmengine.runner.Runner.from_cfg(Config.fromfile(path)).train()`` runs it.

Decode heads are mmseg's own (:data:`DECODE_HEADS`). With ``head_inputs="concat"`` (default) ASPP, FCN and PSP
heads see all backbone levels resized to stride 4 and concatenated (mmseg's
``input_transform='resize_concat'``), which keeps thin structures; ``"last"`` feeds them only the deepest
level (DeepLabV3 style). ``DepthwiseSeparableASPPHead`` always takes the deepest level plus the stride-4 level
as its low-level input (DeepLabV3+).
"""

from __future__ import annotations

import logging
import os
import pprint
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError
from datanas_core.io import atomic_write_text
from datanas_seg.backbone import feature_channels
from datanas_seg.genotypes import GenotypeRef, resolve_genotype

logger = logging.getLogger(__name__)

__all__ = [
    "DECODE_HEADS",
    "HEAD_INPUTS",
    "auxiliary_head_config",
    "backbone_config",
    "decode_head_config",
    "export_mmseg_config",
    "mmseg_model_config",
]

#: mmseg decode heads the exporter and the CLIs can configure.
DECODE_HEADS = ("ASPPHead", "DepthwiseSeparableASPPHead", "FCNHead", "PSPHead")
#: How ASPP/FCN/PSP heads consume the backbone levels.
HEAD_INPUTS = ("concat", "last")


def _norm_cfg() -> dict[str, Any]:
    return {"type": "BN", "requires_grad": True}


def _ce_loss(weight: float, class_weight: Sequence[float] | None, num_classes: int) -> dict[str, Any]:
    loss: dict[str, Any] = {
        "type": "CrossEntropyLoss",
        "use_sigmoid": False,
        "loss_weight": weight,
        "avg_non_ignore": True,
    }
    if class_weight is not None:
        cw = [float(w) for w in class_weight]
        if len(cw) != num_classes or any(w < 0 for w in cw):
            raise ConfigError(f"class_weight needs {num_classes} non-negative numbers, got {cw}")
        loss["class_weight"] = cw
    return loss


def decode_head_config(
    decode_head: str,
    in_channels: Sequence[int],
    num_classes: int,
    *,
    channels: int = 64,
    head_inputs: str = "concat",
    dilations: Sequence[int] = (1, 6, 12, 18),
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    ignore_index: int = 255,
    align_corners: bool = False,
    norm_cfg: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The mmseg config dict of ``decode_head`` on backbone levels with ``in_channels`` channels.

    ``class_weight`` sets the cross-entropy class weights (e.g.
    :func:`datanas_seg.data.median_frequency_weights`).

    Raises:
        ConfigError: unknown head or ``head_inputs`` (messages list the valid names), or bad sizes.
    """
    if decode_head not in DECODE_HEADS:
        raise ConfigError(
            f"unknown decode_head {decode_head!r}; valid decode heads: {', '.join(DECODE_HEADS)}"
        )
    if head_inputs not in HEAD_INPUTS:
        raise ConfigError(f"unknown head_inputs {head_inputs!r}; valid values: {', '.join(HEAD_INPUTS)}")
    chans = [int(c) for c in in_channels]
    if not chans or num_classes < 1 or channels < 1:
        raise ConfigError(
            f"need at least one input level, num_classes >= 1 and channels >= 1; got in_channels={chans}, "
            f"num_classes={num_classes}, channels={channels}"
        )
    n = len(chans)
    cfg: dict[str, Any] = {"type": decode_head}
    if decode_head == "DepthwiseSeparableASPPHead" or head_inputs == "last" or n == 1:
        cfg.update(in_channels=chans[-1], in_index=n - 1)
    else:
        cfg.update(in_channels=chans, in_index=list(range(n)), input_transform="resize_concat")
    cfg["channels"] = channels
    if decode_head in ("ASPPHead", "DepthwiseSeparableASPPHead"):
        cfg["dilations"] = tuple(int(d) for d in dilations)
    if decode_head == "DepthwiseSeparableASPPHead":
        cfg.update(c1_in_channels=chans[0], c1_channels=max(channels // 4, 8))
    if decode_head == "PSPHead":
        cfg["pool_scales"] = tuple(int(p) for p in pool_scales)
    if decode_head == "FCNHead":
        cfg.update(num_convs=2, concat_input=True)
    cfg.update(
        dropout_ratio=dropout_ratio,
        num_classes=num_classes,
        out_channels=num_classes,
        norm_cfg=dict(norm_cfg) if norm_cfg is not None else _norm_cfg(),
        align_corners=align_corners,
        ignore_index=ignore_index,
        loss_decode=_ce_loss(1.0, class_weight, num_classes),
    )
    return cfg


def auxiliary_head_config(
    in_channels: Sequence[int],
    num_classes: int,
    *,
    in_index: int | None = None,
    channels: int = 32,
    loss_weight: float = 0.4,
    ignore_index: int = 255,
    align_corners: bool = False,
    norm_cfg: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
) -> dict[str, Any]:
    """An auxiliary ``FCNHead`` on one backbone level (default: the second deepest).

    Raises:
        ConfigError: ``in_index`` out of range.
    """
    n = len(in_channels)
    idx = max(n - 2, 0) if in_index is None else in_index
    if not 0 <= idx < n:
        raise ConfigError(f"auxiliary head in_index {idx} out of range 0..{n - 1}")
    return {
        "type": "FCNHead",
        "in_channels": int(in_channels[idx]),
        "in_index": idx,
        "channels": channels,
        "num_convs": 1,
        "concat_input": False,
        "dropout_ratio": 0.1,
        "num_classes": num_classes,
        "out_channels": num_classes,
        "norm_cfg": dict(norm_cfg) if norm_cfg is not None else _norm_cfg(),
        "align_corners": align_corners,
        "ignore_index": ignore_index,
        "loss_decode": _ce_loss(loss_weight, class_weight, num_classes),
    }


def backbone_config(
    genotype: GenotypeRef,
    *,
    C: int = 16,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    in_channels: int = 3,
    stem_multiplier: int = 2,
    out_indices: Sequence[int] | None = None,
    drop_path_prob: float = 0.0,
    norm_eval: bool = False,
    frozen_stages: int = -1,
    init_cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Config dict of the registered ``DataNASBackbone`` (the genotype inlined as a JSON-style dict)."""
    g = resolve_genotype(genotype)
    idx = tuple(range(num_stages)) if out_indices is None else tuple(out_indices)
    cfg: dict[str, Any] = {
        "type": "DataNASBackbone",
        "genotype": g.to_dict(),
        "C": C,
        "cells_per_stage": cells_per_stage if isinstance(cells_per_stage, int) else tuple(cells_per_stage),
        "num_stages": num_stages,
        "in_channels": in_channels,
        "stem_multiplier": stem_multiplier,
        "out_indices": idx,
        "drop_path_prob": drop_path_prob,
        "norm_cfg": _norm_cfg(),
        "norm_eval": norm_eval,
        "frozen_stages": frozen_stages,
    }
    if init_cfg is not None:
        cfg["init_cfg"] = dict(init_cfg)
    return cfg


def mmseg_model_config(
    backbone: Mapping[str, Any],
    out_channels: Sequence[int],
    num_classes: int,
    *,
    decode_head: str = "ASPPHead",
    head_channels: int = 64,
    head_inputs: str = "concat",
    auxiliary: bool = False,
    data_preprocessor: Mapping[str, Any] | None = None,
    ignore_index: int = 255,
    head_options: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
) -> dict[str, Any]:
    """An ``EncoderDecoder`` config dict around ``backbone`` (whose levels have ``out_channels`` channels).

    Args:
        backbone: backbone config (e.g. :func:`backbone_config` or a ``DataNASSupernetBackbone`` dict).
        out_channels: channels of the backbone's returned levels.
        num_classes: classes.
        decode_head: one of :data:`DECODE_HEADS`.
        head_channels: decode head width (the auxiliary head gets half).
        head_inputs: ``"concat"`` or ``"last"`` (see module docs).
        auxiliary: add an auxiliary ``FCNHead`` on the second deepest level (loss weight 0.4).
        data_preprocessor: ``SegDataPreProcessor`` options (omitted: the segmentor gets mmengine's default,
            which leaves tensors unchanged).
        ignore_index: label value ignored by the losses.
        head_options: extra keyword options for :func:`decode_head_config` (``dilations``, ``pool_scales``,
            ``dropout_ratio``, ...).
        class_weight: cross-entropy class weights of both heads.
    """
    head = decode_head_config(
        decode_head,
        out_channels,
        num_classes,
        channels=head_channels,
        head_inputs=head_inputs,
        ignore_index=ignore_index,
        class_weight=class_weight,
        **dict(head_options or {}),
    )
    cfg: dict[str, Any] = {"type": "EncoderDecoder"}
    if data_preprocessor is not None:
        cfg["data_preprocessor"] = dict(data_preprocessor)
    cfg.update(backbone=dict(backbone), decode_head=head)
    if auxiliary:
        cfg["auxiliary_head"] = auxiliary_head_config(
            out_channels,
            num_classes,
            channels=max(head_channels // 2, 8),
            ignore_index=ignore_index,
            class_weight=class_weight,
        )
    cfg.update(train_cfg={}, test_cfg={"mode": "whole"})
    return cfg


def _py(value: Any) -> str:
    return pprint.pformat(value, width=110, sort_dicts=False)


def _check_dataset_base(name: str) -> str:
    """Check an ``mmseg::<rel>`` name against the installed mmsegmentation and return it unchanged.

    The name stays portable (no absolute site-packages path in the written config); mmengine resolves it
    when the config is loaded (without ``pkg_resources``, after ``import datanas_seg.mmseg``: see
    :mod:`datanas_seg._mmengine_compat`). Other paths are returned as given; without mmseg installed the
    name is not checked.

    Raises:
        ConfigError: mmseg is installed but has no such bundled config.
    """
    prefix = "mmseg::"
    if not name.startswith(prefix):
        return name
    try:
        import mmseg
    except ImportError:
        return name
    root = Path(mmseg.__file__).parent / ".mim" / "configs"
    candidate = root / name[len(prefix) :]
    if not candidate.is_file():
        raise ConfigError(
            f"{name!r} is not among mmseg's bundled configs under {root} "
            "(e.g. 'mmseg::_base_/datasets/cityscapes.py', 'mmseg::_base_/datasets/pascal_voc12.py')"
        )
    return name


def _hold_out(
    data_root: str | os.PathLike[str] | None,
    splits: Mapping[str, Sequence[str]] | None,
    img_suffix: str,
    val_fraction: float,
    seed: int,
) -> dict[str, list[str]] | None:
    """The splits to write: ``splits`` with a held-out validation part (taken from the training images when
    ``val`` is missing or empty, or from the images under ``data_root`` when there are no splits); warns when
    validation images are also training images, or when nothing can be held out."""
    if splits is not None:
        out = {k: list(v) for k, v in splits.items()}
        train, val = out.get("train", []), out.get("val", [])
        if val:
            both = set(train) & set(val)
            if both:
                logger.warning(
                    "%d of the %d validation images are also training images: validation mIoU will measure "
                    "fitting, not generalisation",
                    len(both),
                    len(val),
                )
            return out
        stems = train
    else:
        images = Path(data_root) / "images" if data_root is not None else None
        stems = (
            sorted(p.name[: -len(img_suffix)] for p in images.iterdir() if p.name.endswith(img_suffix))
            if images is not None and images.is_dir()
            else []
        )
        out = {}
    if len(stems) < 2:
        logger.warning(
            "no validation split: %s; the exported config validates on its training images. Pass "
            "splits={'train': [...], 'val': [...]} or a data_root with images/ to hold out validation images",
            "too few images to split" if stems else "no splits and no images under data_root",
        )
        return splits if splits is None else {k: list(v) for k, v in splits.items()}
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = min(len(stems) - 1, max(1, round(len(stems) * val_fraction)))
    import random

    shuffled = list(stems)
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:n_val])
    out["train"] = [s for s in stems if s not in held]
    out["val"] = [s for s in stems if s in held]
    logger.info("validation: %d of %d images held out (seed %d)", n_val, len(stems), seed)
    return out


def export_mmseg_config(
    genotype: GenotypeRef,
    path: str | os.PathLike[str],
    *,
    decode_head: str = "ASPPHead",
    num_classes: int = 2,
    class_names: Sequence[str] | None = None,
    C: int = 16,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    in_channels: int = 3,
    head_channels: int = 64,
    head_inputs: str = "concat",
    auxiliary: bool = False,
    head_options: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    splits: Mapping[str, Sequence[str]] | None = None,
    img_suffix: str = ".png",
    seg_map_suffix: str = ".png",
    crop_size: tuple[int, int] = (256, 256),
    test_mode: str = "slide",
    batch_size: int = 4,
    num_workers: int = 0,
    max_iters: int = 2000,
    val_interval: int | None = None,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    mean: Sequence[float] = (127.5, 127.5, 127.5),
    std: Sequence[float] = (63.75, 63.75, 63.75),
    ignore_index: int = 255,
    seed: int = 0,
    log_interval: int = 50,
    work_dir: str | None = None,
    dataset_base: str | None = None,
    val_fraction: float = 0.2,
) -> Path:
    """Write an mmseg config (Python file) training the derived backbone of ``genotype`` with an mmseg head.

    The dataset part targets a segfolder (``data_root/images/<stem><img_suffix>``,
    ``data_root/masks/<stem><seg_map_suffix>`` with class ids; see :func:`datanas_seg.data.write_segfolder`)
    through mmseg's ``BaseSegDataset``. With ``splits`` (``{"train": [stems], "val": [...], "test": [...]}``)
    the stems are written to ``<config stem>.<split>.txt`` next to the config and used as ``ann_file``s. A
    validation split is always held out: without ``val`` in ``splits`` a seeded ``val_fraction`` of the
    training stems (of the images under ``data_root/images`` without ``splits``) becomes the validation
    split (and the test split when there is none); validation images that are also training images, or a
    ``data_root`` with no images to split, are logged as warnings. For VOC, Cityscapes, ADE20K, ... pass
    ``dataset_base`` (e.g. ``"mmseg::_base_/datasets/cityscapes.py"``, shipped inside the mmsegmentation
    wheel): the config then inherits that file's pipelines, data loaders and evaluators (``_base_``) and
    writes only the model, optimiser, schedule and runtime; set ``num_classes`` (19 for Cityscapes, 21 for
    VOC) and a ``crop_size`` that matches the base file's crops.

    Args:
        genotype: a Genotype, genotype document, bundled name or JSON path.
        path: where to write the config (``.py``).
        decode_head: one of :data:`DECODE_HEADS`.
        num_classes, class_names: classes (names default to ``class0``, ``class1``, ...).
        C, cells_per_stage, num_stages, in_channels: backbone size (images are loaded as 3-channel BGR by
            mmseg's ``LoadImageFromFile``, so keep ``in_channels=3`` for file datasets).
        head_channels, head_inputs, auxiliary, head_options, class_weight: see :func:`mmseg_model_config`.
        crop_size: ``(h, w)`` of the random training crops.
        test_mode: ``"slide"`` (validation/test by sliding windows of ``crop_size``, stride 3/4 of it, like
            mmseg's Cityscapes configs; models trained on crops need it) or ``"whole"``.
        max_iters, val_interval, batch_size, lr, weight_decay: schedule (SGD + poly LR, iteration based).
        mean, std: ``SegDataPreProcessor`` normalisation.
        work_dir: optional ``work_dir`` entry (the Runner's output folder).
        dataset_base: an mmseg dataset config to inherit (a path or ``mmseg::`` name ending in ``.py``,
            written as given so the config stays portable); ``data_root``, ``splits``, the suffixes and
            ``class_names`` are then not used. Load such a config after ``import datanas_seg.mmseg`` when
            ``pkg_resources`` is missing (setuptools >= 81).
        data_root: the segfolder the config trains on (absolute in the config; ``data/segfolder``, with a
            warning, when not given).
        val_fraction: share of the training images held out for validation when ``splits`` has no ``val``.

    Returns:
        The path of the written config.

    Raises:
        ConfigError: unknown head, bad sizes or split names.
    """
    g = resolve_genotype(genotype)
    if dataset_base is not None and (not isinstance(dataset_base, str) or not dataset_base.endswith(".py")):
        raise ConfigError(
            f"dataset_base must name an mmseg dataset config file ending in .py (e.g. "
            f"'mmseg::_base_/datasets/cityscapes.py'), got {dataset_base!r}"
        )
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    names = tuple(class_names) if class_names is not None else tuple(f"class{i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names for num_classes={num_classes}")
    if max_iters < 1 or batch_size < 1:
        raise ConfigError(f"max_iters and batch_size must be >= 1, got {max_iters} and {batch_size}")
    out_channels = feature_channels(g, C, cells_per_stage=cells_per_stage, num_stages=num_stages)
    crop = (int(crop_size[0]), int(crop_size[1]))
    preproc = {
        "type": "SegDataPreProcessor",
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "bgr_to_rgb": True,
        "pad_val": 0,
        "seg_pad_val": ignore_index,
        "size": crop,
        "test_cfg": {"size_divisor": 4 * 2 ** (num_stages - 1)},
    }
    model = mmseg_model_config(
        backbone_config(
            g, C=C, cells_per_stage=cells_per_stage, num_stages=num_stages, in_channels=in_channels
        ),
        out_channels,
        num_classes,
        decode_head=decode_head,
        head_channels=head_channels,
        head_inputs=head_inputs,
        auxiliary=auxiliary,
        data_preprocessor=preproc,
        ignore_index=ignore_index,
        head_options=head_options,
        class_weight=class_weight,
    )
    if test_mode == "slide":
        model["test_cfg"] = {
            "mode": "slide",
            "crop_size": crop,
            "stride": (max(1, 3 * crop[0] // 4), max(1, 3 * crop[1] // 4)),
        }
    elif test_mode != "whole":
        raise ConfigError(f"unknown test_mode {test_mode!r}; valid: slide, whole")
    path = Path(path)
    ann_files = {"train": "", "val": "", "test": ""}
    if dataset_base is None:
        splits = _hold_out(data_root, splits, img_suffix, val_fraction, seed)
        if data_root is None:
            logger.warning(
                "no data_root: the config points at 'data/segfolder'; pass data_root (a segfolder, see "
                "datanas_seg.write_segfolder)"
            )
    if splits is not None:
        unknown = sorted(set(splits) - set(ann_files))
        if unknown:
            raise ConfigError(f"unknown split name(s) {unknown}; valid splits: train, val, test")
        for split, stems in splits.items():
            split_file = path.with_name(f"{path.stem}.{split}.txt")
            atomic_write_text(split_file, "".join(f"{s}\n" for s in stems))
            ann_files[split] = str(split_file.resolve())
        if not ann_files["test"]:
            ann_files["test"] = ann_files["val"]
    root = str(Path(data_root).resolve()) if data_root is not None else "data/segfolder"
    palette = [[(37 * i) % 256, (91 * i + 80) % 256, (53 * i + 160) % 256] for i in range(num_classes)]

    def dataset(split: str, pipeline: str) -> dict[str, Any]:
        return {
            "type": "BaseSegDataset",
            "data_root": root,
            "data_prefix": {"img_path": "images", "seg_map_path": "masks"},
            "img_suffix": img_suffix,
            "seg_map_suffix": seg_map_suffix,
            "ann_file": ann_files[split],
            "metainfo": "__METAINFO__",
            "ignore_index": ignore_index,
            "pipeline": pipeline,
        }

    def loader(split: str, train: bool) -> dict[str, Any]:
        return {
            "batch_size": batch_size if train else 1,
            "num_workers": num_workers,
            "persistent_workers": False,
            "sampler": {"type": "InfiniteSampler", "shuffle": True}
            if train
            else {"type": "DefaultSampler", "shuffle": False},
            "dataset": dataset(split, "__TRAIN_PIPELINE__" if train else "__TEST_PIPELINE__"),
        }

    vi = max_iters if val_interval is None else val_interval
    variables: list[tuple[str, Any]] = [
        ("custom_imports", {"imports": ["datanas_seg.mmseg"], "allow_failed_imports": False}),
        ("default_scope", "mmseg"),
        ("crop_size", crop),
        ("metainfo", {"classes": names, "palette": palette}),
        (
            "train_pipeline",
            [
                {"type": "LoadImageFromFile"},
                {"type": "LoadAnnotations"},
                {"type": "RandomCrop", "crop_size": crop},
                {"type": "RandomFlip", "prob": 0.5},
                {"type": "PackSegInputs"},
            ],
        ),
        (
            "test_pipeline",
            [{"type": "LoadImageFromFile"}, {"type": "LoadAnnotations"}, {"type": "PackSegInputs"}],
        ),
        ("model", model),
        ("train_dataloader", loader("train", True)),
        ("val_dataloader", loader("val", False)),
        ("test_dataloader", loader("test", False)),
        ("val_evaluator", {"type": "IoUMetric", "iou_metrics": ["mIoU"]}),
        ("test_evaluator", {"type": "IoUMetric", "iou_metrics": ["mIoU"]}),
        (
            "optim_wrapper",
            {
                "type": "OptimWrapper",
                "optimizer": {"type": "SGD", "lr": lr, "momentum": 0.9, "weight_decay": weight_decay},
                "clip_grad": None,
            },
        ),
        (
            "param_scheduler",
            [
                {
                    "type": "PolyLR",
                    "eta_min": lr * 0.01,
                    "power": 0.9,
                    "begin": 0,
                    "end": max_iters,
                    "by_epoch": False,
                }
            ],
        ),
        ("train_cfg", {"type": "IterBasedTrainLoop", "max_iters": max_iters, "val_interval": vi}),
        ("val_cfg", {"type": "ValLoop"}),
        ("test_cfg", {"type": "TestLoop"}),
        (
            "default_hooks",
            {
                "timer": {"type": "IterTimerHook"},
                "logger": {"type": "LoggerHook", "interval": log_interval, "log_metric_by_epoch": False},
                "param_scheduler": {"type": "ParamSchedulerHook"},
                "checkpoint": {"type": "CheckpointHook", "by_epoch": False, "interval": max_iters},
                "sampler_seed": {"type": "DistSamplerSeedHook"},
            },
        ),
        (
            "env_cfg",
            {
                "cudnn_benchmark": False,
                "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
                "dist_cfg": {"backend": "nccl"},
            },
        ),
        ("log_processor", {"by_epoch": False}),
        ("log_level", "INFO"),
        ("load_from", None),
        ("resume", False),
        ("randomness", {"seed": seed}),
    ]
    if work_dir is not None:
        variables.append(("work_dir", str(work_dir)))
    lines = [
        "# mmseg config written by datanas_seg.export_mmseg_config",
        f"# genotype space={g.space!r}; backbone feature channels {list(out_channels)}",
        '# train: python -c "from mmengine.config import Config; from mmengine.runner import Runner; '
        "Runner.from_cfg(Config.fromfile('THIS_FILE')).train()\"",
        "",
    ]
    if dataset_base is not None:
        # the base file brings crop_size, pipelines, data loaders and evaluators
        inherited = {
            "crop_size",
            "metainfo",
            "train_pipeline",
            "test_pipeline",
            "train_dataloader",
            "val_dataloader",
            "test_dataloader",
            "val_evaluator",
            "test_evaluator",
        }
        variables = [(n, v) for n, v in variables if n not in inherited]
        lines.append(f"_base_ = [{_check_dataset_base(dataset_base)!r}]")
    for name, value in variables:
        text = _py(value)
        text = (
            text.replace("'__METAINFO__'", "metainfo")
            .replace("'__TRAIN_PIPELINE__'", "train_pipeline")
            .replace("'__TEST_PIPELINE__'", "test_pipeline")
        )
        lines.append(f"{name} = {text}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
