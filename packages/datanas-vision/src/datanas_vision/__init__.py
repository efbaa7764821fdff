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
from datanas_vision.models import DartsClassifier, NB201Classifier, build_classifier, resolve_genotype
from datanas_vision.retrain import RetrainConfig, retrain
from datanas_vision.task import ClassificationTask

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "BatchTransform",
    "ClassificationTask",
    "DartsClassifier",
    "DataOptions",
    "ImageLoader",
    "NB201Classifier",
    "RetrainConfig",
    "VisionData",
    "__version__",
    "build_classifier",
    "load_dataset",
    "make_search_loaders",
    "make_train_loaders",
    "resolve_genotype",
    "retrain",
]
