"""datanas-vision: differentiable architecture search for image classification.

Importing this package does not import timm or register timm models; import
:mod:`datanas_vision.timm_models` for that.
"""

from __future__ import annotations

from datanas_vision.data import (
    DATASETS,
    BatchTransform,
    DataOptions,
    ImageLoader,
    VisionData,
    load_dataset,
    make_search_loaders,
    make_train_loaders,
)

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "BatchTransform",
    "DataOptions",
    "ImageLoader",
    "VisionData",
    "__version__",
    "load_dataset",
    "make_search_loaders",
    "make_train_loaders",
]
