"""Image classification data: sources, reproducible loaders and batch-wise augmentation."""

from __future__ import annotations

from datanas_vision.data.base import (
    AugmentSpec,
    EncodedImageDataset,
    TensorImageDataset,
    VisionData,
    materialize,
)
from datanas_vision.data.loaders import ImageLoader, bilevel_split, make_search_loaders, make_train_loaders
from datanas_vision.data.sources import (
    CIFAR10_MD5,
    CIFAR10_URL,
    DATASETS,
    DataOptions,
    ensure_cifar10,
    load_dataset,
)
from datanas_vision.data.transforms import BatchTransform

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATASETS",
    "AugmentSpec",
    "BatchTransform",
    "DataOptions",
    "EncodedImageDataset",
    "ImageLoader",
    "TensorImageDataset",
    "VisionData",
    "bilevel_split",
    "ensure_cifar10",
    "load_dataset",
    "make_search_loaders",
    "make_train_loaders",
    "materialize",
]
