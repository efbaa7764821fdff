"""datanas-vision: differentiable architecture search for image classification.

Importing this package does not import timm or register timm models; import
:mod:`datanas_vision.timm_models` for that.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "DATASETS": ("datanas_vision.data", "DATASETS"),
    "BatchTransform": ("datanas_vision.data", "BatchTransform"),
    "DataOptions": ("datanas_vision.data", "DataOptions"),
    "ImageLoader": ("datanas_vision.data", "ImageLoader"),
    "VisionData": ("datanas_vision.data", "VisionData"),
    "load_dataset": ("datanas_vision.data", "load_dataset"),
    "make_search_loaders": ("datanas_vision.data", "make_search_loaders"),
    "make_train_loaders": ("datanas_vision.data", "make_train_loaders"),
    "DartsClassifier": ("datanas_vision.models", "DartsClassifier"),
    "NB201Classifier": ("datanas_vision.models", "NB201Classifier"),
    "build_classifier": ("datanas_vision.models", "build_classifier"),
    "resolve_genotype": ("datanas_vision.models", "resolve_genotype"),
    "RetrainConfig": ("datanas_vision.retrain", "RetrainConfig"),
    "ClassificationTask": ("datanas_vision.task", "ClassificationTask"),
}

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


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_vision' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"retrain"})


class _Package(_ModuleType):
    """``datanas_vision.retrain`` is the :func:`~datanas_vision.retrain.retrain` function, also once the ``datanas_vision.retrain`` submodule is
    imported (the import system then sets the attribute: ignored)."""

    @property
    def retrain(self) -> Any:
        from datanas_vision.retrain import retrain as _retrain

        return _retrain

    @retrain.setter
    def retrain(self, value: Any) -> None:
        pass


_sys.modules[__name__].__class__ = _Package
