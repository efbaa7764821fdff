"""Building mmseg segmentors around DataNAS backbones, the mmseg search task, and mmseg-based mIoU."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.structures import PixelData
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.sample import ArchSample
from datanas_seg.backbone import feature_channels, supernet_feature_channels
from datanas_seg.export import backbone_config, mmseg_model_config
from datanas_seg.genotypes import GenotypeRef
from datanas_seg.space import SegDartsSpace
from datanas_seg.task import evaluate_segmentation, model_device, unpack_batch

__all__ = [
    "MMSegSearchTask",
    "build_derived_segmentor",
    "build_search_segmentor",
    "build_segmentor",
    "evaluate_segmentor",
    "make_data_samples",
    "mmseg_intersect_and_union",
    "segmentor_logits",
]


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """Silence mmengine's per-parameter ``init_weights`` report (INFO lines on stdout) for one call."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_segmentor(cfg: Mapping[str, Any], *, init_weights: bool = True) -> nn.Module:
    """``mmseg.registry.MODELS.build(cfg)`` (as an mmengine ``ConfigDict``), then ``init_weights()``."""
    model = MODELS.build(ConfigDict(dict(cfg)))
    if init_weights:
        with _quiet_mmengine():
            model.init_weights()
    return model  # type: ignore[no-any-return]


def build_search_segmentor(
    space: SegDartsSpace,
    num_classes: int,
    *,
    C: int = 8,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    in_channels: int = 3,
    decode_head: str = "ASPPHead",
    head_channels: int = 32,
    head_inputs: str = "concat",
    auxiliary: bool = False,
    ignore_index: int = 255,
    head_options: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
) -> nn.Module:
    """An ``EncoderDecoder`` with a ``DataNASSupernetBackbone`` of ``space`` and an mmseg decode head.

    Pass it as ``supernet`` to :class:`datanas_core.search.Searcher` with :class:`MMSegSearchTask`.
    """
    cfg_space = {
        "ops": list(space.ops),
        "steps": space.steps,
        "multiplier": space.multiplier,
        "strict": space.strict,
    }
    backbone = {
        "type": "DataNASSupernetBackbone",
        "C": C,
        "cells_per_stage": cells_per_stage,
        "num_stages": num_stages,
        "in_channels": in_channels,
        "space": cfg_space,
    }
    out_channels = supernet_feature_channels(space, C, cells_per_stage=cells_per_stage, num_stages=num_stages)
    cfg = mmseg_model_config(
        backbone,
        out_channels,
        num_classes,
        decode_head=decode_head,
        head_channels=head_channels,
        head_inputs=head_inputs,
        auxiliary=auxiliary,
        ignore_index=ignore_index,
        head_options=head_options,
        class_weight=class_weight,
    )
    return build_segmentor(cfg)


def build_derived_segmentor(
    genotype: GenotypeRef,
    num_classes: int,
    *,
    C: int = 16,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    in_channels: int = 3,
    decode_head: str = "ASPPHead",
    head_channels: int = 64,
    head_inputs: str = "concat",
    auxiliary: bool = False,
    drop_path_prob: float = 0.0,
    ignore_index: int = 255,
    head_options: Mapping[str, Any] | None = None,
    class_weight: Sequence[float] | None = None,
) -> nn.Module:
    """An ``EncoderDecoder`` with the ``DataNASBackbone`` of ``genotype`` and an mmseg decode head."""
    out_channels = feature_channels(genotype, C, cells_per_stage=cells_per_stage, num_stages=num_stages)
    backbone = backbone_config(
        genotype,
        C=C,
        cells_per_stage=cells_per_stage,
        num_stages=num_stages,
        in_channels=in_channels,
        drop_path_prob=drop_path_prob,
    )
    cfg = mmseg_model_config(
        backbone,
        out_channels,
        num_classes,
        decode_head=decode_head,
        head_channels=head_channels,
        head_inputs=head_inputs,
        auxiliary=auxiliary,
        ignore_index=ignore_index,
        head_options=head_options,
        class_weight=class_weight,
    )
    return build_segmentor(cfg)


def make_data_samples(masks: Tensor) -> list[SegDataSample]:
    """One ``SegDataSample`` per mask of ``masks`` (N, H, W) with ``gt_sem_seg`` and image metainfo."""
    h, w = int(masks.shape[-2]), int(masks.shape[-1])
    out = []
    for m in masks:
        ds = SegDataSample(
            metainfo={
                "img_shape": (h, w),
                "ori_shape": (h, w),
                "pad_shape": (h, w),
                "padding_size": [0, 0, 0, 0],
            }
        )
        ds.gt_sem_seg = PixelData(data=m[None].long())
        out.append(ds)
    return out


def segmentor_logits(
    model: Any, x: Tensor, *, crop_size: int | None = None, stride: int | None = None
) -> Tensor:
    """Logits ``(N, K, H, W)`` of an mmseg segmentor at the input resolution, through mmseg's ``inference``.

    Args:
        model: an ``EncoderDecoder``.
        x: normalised images ``(N, C, H, W)``.
        crop_size: sliding-window inference (``test_cfg.mode='slide'``) with square windows of this side;
            ``None``: whole-image inference.
        stride: window stride (default ``3 * crop_size // 4``).
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    metas = [
        {"img_shape": (h, w), "ori_shape": (h, w), "pad_shape": (h, w), "padding_size": [0, 0, 0, 0]}
        for _ in range(x.shape[0])
    ]
    if crop_size is None:
        test_cfg = ConfigDict(mode="whole")
    else:
        st = stride if stride is not None else max(1, 3 * crop_size // 4)
        test_cfg = ConfigDict(mode="slide", crop_size=(crop_size, crop_size), stride=(st, st))
    previous = model.test_cfg
    model.test_cfg = test_cfg
    try:
        logits = model.inference(x, metas)
    finally:
        model.test_cfg = previous
    if logits.shape[-2:] != x.shape[-2:]:
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits  # type: ignore[no-any-return]


def mmseg_intersect_and_union(
    pred: Tensor, label: Tensor, num_classes: int, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmseg's ``IoUMetric.intersect_and_union`` (per-class areas of one image)."""
    return IoUMetric.intersect_and_union(pred, label.to(pred), num_classes, ignore_index)  # type: ignore[no-any-return]


def _backbone_with_arch(model: Any) -> Any:
    bb = getattr(model, "backbone", None)
    if bb is None or not hasattr(bb, "use_arch"):
        raise ConfigError(
            "MMSegSearchTask needs an EncoderDecoder whose backbone is a DataNASSupernetBackbone "
            f"(got backbone {type(bb).__name__})"
        )
    return bb


class MMSegSearchTask:
    """:class:`~datanas_core.search.SearchTask` whose loss is the mmseg segmentor loss.

    ``loss(model, batch, arch)`` sets ``arch`` on the segmentor's ``DataNASSupernetBackbone`` for the
    duration of the call, runs ``model(images, data_samples, mode='loss')`` (decode head plus optional
    auxiliary head losses) and sums the loss terms with mmengine's ``parse_losses``. The architecture step
    of the searcher therefore differentiates through mmseg's own heads and losses.

    Args:
        num_classes: number of classes.
        ignore_index: mask value excluded from the loss and metrics.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def loss(self, model: Any, batch: Any, arch: ArchSample | None) -> tuple[Tensor, dict[str, float]]:
        """mmseg segmentor loss of one batch (``arch=None`` for segmentors with a derived backbone)."""
        x, y = unpack_batch(batch, model_device(model))
        samples = make_data_samples(y)
        if arch is None:
            losses = model(x, samples, mode="loss")
        else:
            with _backbone_with_arch(model).use_arch(arch):
                losses = model(x, samples, mode="loss")
        loss, log_vars = model.parse_losses(losses)
        logs = {}
        if "decode.acc_seg" in log_vars:
            logs["acc"] = float(log_vars["decode.acc_seg"]) / 100.0
        return loss, logs

    @torch.no_grad()
    def metrics(self, model: Any, batch: Any, arch: ArchSample | None) -> dict[str, float]:
        """Loss-free per-batch mIoU / pixel accuracy (mmseg's ``intersect_and_union``)."""
        x, y = unpack_batch(batch, model_device(model))
        if arch is None:
            logits = segmentor_logits(model, x)
        else:
            with _backbone_with_arch(model).use_arch(arch):
                logits = segmentor_logits(model, x)
        res = evaluate_segmentation(
            lambda _: logits,
            [(x, y)],
            self.num_classes,
            ignore_index=self.ignore_index,
            device=x.device,
            areas_fn=mmseg_intersect_and_union,
        )
        return {"mIoU": res["mIoU"], "aAcc": res["aAcc"]}

    def batch_size(self, batch: Any) -> int:
        return int(batch[0].shape[0])


def evaluate_segmentor(
    model: Any,
    loader: Iterable[Any],
    num_classes: int,
    *,
    ignore_index: int = 255,
    arch: ArchSample | None = None,
    crop_size: int | None = None,
    stride: int | None = None,
) -> dict[str, float]:
    """Dataset-level mIoU of an mmseg segmentor over ``loader`` with mmseg's IoU utilities.

    ``arch`` is required for segmentors with a supernet backbone (e.g. a derived code with inherited weights);
    ``crop_size`` / ``stride`` select sliding-window inference (see :func:`segmentor_logits`).
    """
    was_training = model.training
    model.eval()
    ctx = _backbone_with_arch(model).use_arch(arch) if arch is not None else contextlib.nullcontext()
    try:
        with ctx:
            return evaluate_segmentation(
                lambda x: segmentor_logits(model, x, crop_size=crop_size, stride=stride),
                loader,
                num_classes,
                ignore_index=ignore_index,
                device=model_device(model),
                areas_fn=mmseg_intersect_and_union,
            )
    finally:
        model.train(was_training)
