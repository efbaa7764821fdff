from __future__ import annotations

import datanas_vision
import datanas_vision.data


def test_package_all_is_pinned():
    assert datanas_vision.__all__ == [
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
    for name in datanas_vision.__all__:
        assert hasattr(datanas_vision, name), name


def test_data_all_is_pinned():
    assert sorted(datanas_vision.data.__all__) == sorted(
        [
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
    )
    assert datanas_vision.DATASETS.names() == ["cifar10", "digits", "imagefolder", "imagezip", "mnist"]
