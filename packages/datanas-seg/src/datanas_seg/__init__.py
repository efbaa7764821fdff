"""datanas-seg: searched DARTS-cell backbones for semantic segmentation.

Pure-torch API (this module never imports mmseg): the ``seg.darts`` space, the supernet and derived
multi-scale backbones, a light segmentation head, ISBI-2012 / image-folder data, mIoU, training helpers and
the mmseg config exporter. The mmsegmentation integration is :mod:`datanas_seg.mmseg` (extra ``mmseg``).

Example:
    >>> from datanas_seg import DataNASBackbone, SegDartsSpace
    >>> space = SegDartsSpace()
    >>> supernet = space.build_supernet(C=4)
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datanas_seg.backbone import (
        DataNASBackbone,
        SegSupernetBackbone,
        feature_channels,
        supernet_feature_channels,
    )
    from datanas_seg.data import (
        DATASETS,
        CropLoader,
        EvalImageDataset,
        RandomCropDataset,
        SegImages,
        load_dataset,
        load_isbi2012,
        load_segfolder,
        median_frequency_weights,
        split_by_image,
        write_segfolder,
    )
    from datanas_seg.export import (
        DECODE_HEADS,
        auxiliary_head_config,
        backbone_config,
        decode_head_config,
        export_mmseg_config,
        mmseg_model_config,
    )
    from datanas_seg.genotypes import bundled_genotypes, resolve_genotype
    from datanas_seg.metrics import IoUAccumulator, intersect_and_union
    from datanas_seg.model import SegModel, SimpleSegHead
    from datanas_seg.space import SEG_SPACE_NAME, SegDartsSpace
    from datanas_seg.task import SegSearchTask, evaluate_segmentation
    from datanas_seg.training import (
        TrainSettings,
        param_matched_random_genotypes,
        random_genotype,
        train_model,
    )

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "DataNASBackbone": ("datanas_seg.backbone", "DataNASBackbone"),
    "SegSupernetBackbone": ("datanas_seg.backbone", "SegSupernetBackbone"),
    "feature_channels": ("datanas_seg.backbone", "feature_channels"),
    "supernet_feature_channels": ("datanas_seg.backbone", "supernet_feature_channels"),
    "DATASETS": ("datanas_seg.data", "DATASETS"),
    "CropLoader": ("datanas_seg.data", "CropLoader"),
    "EvalImageDataset": ("datanas_seg.data", "EvalImageDataset"),
    "RandomCropDataset": ("datanas_seg.data", "RandomCropDataset"),
    "SegImages": ("datanas_seg.data", "SegImages"),
    "load_dataset": ("datanas_seg.data", "load_dataset"),
    "load_isbi2012": ("datanas_seg.data", "load_isbi2012"),
    "load_segfolder": ("datanas_seg.data", "load_segfolder"),
    "median_frequency_weights": ("datanas_seg.data", "median_frequency_weights"),
    "split_by_image": ("datanas_seg.data", "split_by_image"),
    "write_segfolder": ("datanas_seg.data", "write_segfolder"),
    "DECODE_HEADS": ("datanas_seg.export", "DECODE_HEADS"),
    "auxiliary_head_config": ("datanas_seg.export", "auxiliary_head_config"),
    "backbone_config": ("datanas_seg.export", "backbone_config"),
    "decode_head_config": ("datanas_seg.export", "decode_head_config"),
    "export_mmseg_config": ("datanas_seg.export", "export_mmseg_config"),
    "mmseg_model_config": ("datanas_seg.export", "mmseg_model_config"),
    "bundled_genotypes": ("datanas_seg.genotypes", "bundled_genotypes"),
    "resolve_genotype": ("datanas_seg.genotypes", "resolve_genotype"),
    "IoUAccumulator": ("datanas_seg.metrics", "IoUAccumulator"),
    "intersect_and_union": ("datanas_seg.metrics", "intersect_and_union"),
    "SegModel": ("datanas_seg.model", "SegModel"),
    "SimpleSegHead": ("datanas_seg.model", "SimpleSegHead"),
    "SEG_SPACE_NAME": ("datanas_seg.space", "SEG_SPACE_NAME"),
    "SegDartsSpace": ("datanas_seg.space", "SegDartsSpace"),
    "SegSearchTask": ("datanas_seg.task", "SegSearchTask"),
    "evaluate_segmentation": ("datanas_seg.task", "evaluate_segmentation"),
    "TrainSettings": ("datanas_seg.training", "TrainSettings"),
    "param_matched_random_genotypes": ("datanas_seg.training", "param_matched_random_genotypes"),
    "random_genotype": ("datanas_seg.training", "random_genotype"),
    "train_model": ("datanas_seg.training", "train_model"),
}

__all__ = [
    "DATASETS",
    "DECODE_HEADS",
    "SEG_SPACE_NAME",
    "CropLoader",
    "DataNASBackbone",
    "EvalImageDataset",
    "IoUAccumulator",
    "RandomCropDataset",
    "SegDartsSpace",
    "SegImages",
    "SegModel",
    "SegSearchTask",
    "SegSupernetBackbone",
    "SimpleSegHead",
    "TrainSettings",
    "auxiliary_head_config",
    "backbone_config",
    "bundled_genotypes",
    "decode_head_config",
    "evaluate_segmentation",
    "export_mmseg_config",
    "feature_channels",
    "intersect_and_union",
    "load_dataset",
    "load_isbi2012",
    "load_segfolder",
    "median_frequency_weights",
    "mmseg_model_config",
    "param_matched_random_genotypes",
    "random_genotype",
    "resolve_genotype",
    "split_by_image",
    "supernet_feature_channels",
    "train_model",
    "write_segfolder",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_seg' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
