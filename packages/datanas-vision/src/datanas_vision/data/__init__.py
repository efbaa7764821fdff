"""Image classification data: sources, reproducible loaders and batch-wise augmentation."""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datanas_vision.data.base import (
        AugmentSpec,
        EncodedImageDataset,
        TensorImageDataset,
        VisionData,
        materialize,
    )
    from datanas_vision.data.loaders import (
        ImageLoader,
        bilevel_split,
        make_search_loaders,
        make_train_loaders,
    )
    from datanas_vision.data.sources import (
        CIFAR10_MD5,
        CIFAR10_URL,
        DATASETS,
        DataOptions,
        ensure_cifar10,
        load_dataset,
    )
    from datanas_vision.data.transforms import BatchTransform

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "AugmentSpec": ("datanas_vision.data.base", "AugmentSpec"),
    "EncodedImageDataset": ("datanas_vision.data.base", "EncodedImageDataset"),
    "TensorImageDataset": ("datanas_vision.data.base", "TensorImageDataset"),
    "VisionData": ("datanas_vision.data.base", "VisionData"),
    "materialize": ("datanas_vision.data.base", "materialize"),
    "ImageLoader": ("datanas_vision.data.loaders", "ImageLoader"),
    "bilevel_split": ("datanas_vision.data.loaders", "bilevel_split"),
    "make_search_loaders": ("datanas_vision.data.loaders", "make_search_loaders"),
    "make_train_loaders": ("datanas_vision.data.loaders", "make_train_loaders"),
    "CIFAR10_MD5": ("datanas_vision.data.sources", "CIFAR10_MD5"),
    "CIFAR10_URL": ("datanas_vision.data.sources", "CIFAR10_URL"),
    "DATASETS": ("datanas_vision.data.sources", "DATASETS"),
    "DataOptions": ("datanas_vision.data.sources", "DataOptions"),
    "ensure_cifar10": ("datanas_vision.data.sources", "ensure_cifar10"),
    "load_dataset": ("datanas_vision.data.sources", "load_dataset"),
    "BatchTransform": ("datanas_vision.data.transforms", "BatchTransform"),
}

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


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_vision.data' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
