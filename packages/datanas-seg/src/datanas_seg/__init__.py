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
