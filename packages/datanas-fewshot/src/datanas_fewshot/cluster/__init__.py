"""Unsupervised clustering search: clustering heads on searched cells, trained without labels (IIC by default,
SCAN- or DEC-style as options), evaluated with k-means (NMI, ARI, Hungarian accuracy).

Run ``python -m datanas_fewshot.cluster --data mnist --data-dir DIR`` for search, training, evaluation and a
report. Needs torch, scipy and scikit-learn only (no learn2learn).
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datanas_fewshot.cluster.augment import PairAugment, RandomAffine
    from datanas_fewshot.cluster.data import (
        CLUSTER_DATASETS,
        ClusteringData,
        load_clustering_data,
        load_digits_images,
        load_image_folder,
        load_mnist_test,
    )
    from datanas_fewshot.cluster.heads import ClusteringHead, ClusteringNetwork, ClusterOutput, pool_features
    from datanas_fewshot.cluster.kmeans import KMeansEvaluator
    from datanas_fewshot.cluster.metrics import (
        ClusteringScores,
        adjusted_rand_index,
        clustering_accuracy,
        clustering_scores,
        contingency_matrix,
        hungarian_match,
        normalized_mutual_info,
    )
    from datanas_fewshot.cluster.objectives import (
        OBJECTIVES,
        ClusteringObjective,
        DECLoss,
        IICLoss,
        SCANLoss,
        build_objective,
        info_nce,
    )
    from datanas_fewshot.cluster.pipeline import (
        ClusterConfig,
        ClusteringRun,
        build_clustering_network,
        build_clustering_searcher,
        build_clustering_supernet,
        evaluate_random_cells,
        kmeans_on_pixels,
        run_clustering,
        search_clustering,
        train_network,
    )
    from datanas_fewshot.cluster.report import write_report
    from datanas_fewshot.cluster.task import ClusteringSearchTask, PairLoader, split_images
    from datanas_fewshot.cluster.train import (
        ClusteringEvaluation,
        TrainConfig,
        evaluate_clustering,
        train_clustering,
    )

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "PairAugment": ("datanas_fewshot.cluster.augment", "PairAugment"),
    "RandomAffine": ("datanas_fewshot.cluster.augment", "RandomAffine"),
    "CLUSTER_DATASETS": ("datanas_fewshot.cluster.data", "CLUSTER_DATASETS"),
    "ClusteringData": ("datanas_fewshot.cluster.data", "ClusteringData"),
    "load_clustering_data": ("datanas_fewshot.cluster.data", "load_clustering_data"),
    "load_digits_images": ("datanas_fewshot.cluster.data", "load_digits_images"),
    "load_image_folder": ("datanas_fewshot.cluster.data", "load_image_folder"),
    "load_mnist_test": ("datanas_fewshot.cluster.data", "load_mnist_test"),
    "ClusteringHead": ("datanas_fewshot.cluster.heads", "ClusteringHead"),
    "ClusteringNetwork": ("datanas_fewshot.cluster.heads", "ClusteringNetwork"),
    "ClusterOutput": ("datanas_fewshot.cluster.heads", "ClusterOutput"),
    "pool_features": ("datanas_fewshot.cluster.heads", "pool_features"),
    "KMeansEvaluator": ("datanas_fewshot.cluster.kmeans", "KMeansEvaluator"),
    "ClusteringScores": ("datanas_fewshot.cluster.metrics", "ClusteringScores"),
    "adjusted_rand_index": ("datanas_fewshot.cluster.metrics", "adjusted_rand_index"),
    "clustering_accuracy": ("datanas_fewshot.cluster.metrics", "clustering_accuracy"),
    "clustering_scores": ("datanas_fewshot.cluster.metrics", "clustering_scores"),
    "contingency_matrix": ("datanas_fewshot.cluster.metrics", "contingency_matrix"),
    "hungarian_match": ("datanas_fewshot.cluster.metrics", "hungarian_match"),
    "normalized_mutual_info": ("datanas_fewshot.cluster.metrics", "normalized_mutual_info"),
    "OBJECTIVES": ("datanas_fewshot.cluster.objectives", "OBJECTIVES"),
    "ClusteringObjective": ("datanas_fewshot.cluster.objectives", "ClusteringObjective"),
    "DECLoss": ("datanas_fewshot.cluster.objectives", "DECLoss"),
    "IICLoss": ("datanas_fewshot.cluster.objectives", "IICLoss"),
    "SCANLoss": ("datanas_fewshot.cluster.objectives", "SCANLoss"),
    "build_objective": ("datanas_fewshot.cluster.objectives", "build_objective"),
    "info_nce": ("datanas_fewshot.cluster.objectives", "info_nce"),
    "ClusterConfig": ("datanas_fewshot.cluster.pipeline", "ClusterConfig"),
    "ClusteringRun": ("datanas_fewshot.cluster.pipeline", "ClusteringRun"),
    "build_clustering_network": ("datanas_fewshot.cluster.pipeline", "build_clustering_network"),
    "build_clustering_searcher": ("datanas_fewshot.cluster.pipeline", "build_clustering_searcher"),
    "build_clustering_supernet": ("datanas_fewshot.cluster.pipeline", "build_clustering_supernet"),
    "evaluate_random_cells": ("datanas_fewshot.cluster.pipeline", "evaluate_random_cells"),
    "kmeans_on_pixels": ("datanas_fewshot.cluster.pipeline", "kmeans_on_pixels"),
    "run_clustering": ("datanas_fewshot.cluster.pipeline", "run_clustering"),
    "search_clustering": ("datanas_fewshot.cluster.pipeline", "search_clustering"),
    "train_network": ("datanas_fewshot.cluster.pipeline", "train_network"),
    "write_report": ("datanas_fewshot.cluster.report", "write_report"),
    "ClusteringSearchTask": ("datanas_fewshot.cluster.task", "ClusteringSearchTask"),
    "PairLoader": ("datanas_fewshot.cluster.task", "PairLoader"),
    "split_images": ("datanas_fewshot.cluster.task", "split_images"),
    "ClusteringEvaluation": ("datanas_fewshot.cluster.train", "ClusteringEvaluation"),
    "TrainConfig": ("datanas_fewshot.cluster.train", "TrainConfig"),
    "evaluate_clustering": ("datanas_fewshot.cluster.train", "evaluate_clustering"),
    "train_clustering": ("datanas_fewshot.cluster.train", "train_clustering"),
}

__all__ = [
    "CLUSTER_DATASETS",
    "OBJECTIVES",
    "ClusterConfig",
    "ClusterOutput",
    "ClusteringData",
    "ClusteringEvaluation",
    "ClusteringHead",
    "ClusteringNetwork",
    "ClusteringObjective",
    "ClusteringRun",
    "ClusteringScores",
    "ClusteringSearchTask",
    "DECLoss",
    "IICLoss",
    "KMeansEvaluator",
    "PairAugment",
    "PairLoader",
    "RandomAffine",
    "SCANLoss",
    "TrainConfig",
    "adjusted_rand_index",
    "build_clustering_network",
    "build_clustering_searcher",
    "build_clustering_supernet",
    "build_objective",
    "clustering_accuracy",
    "clustering_scores",
    "contingency_matrix",
    "evaluate_clustering",
    "evaluate_random_cells",
    "hungarian_match",
    "info_nce",
    "kmeans_on_pixels",
    "load_clustering_data",
    "load_digits_images",
    "load_image_folder",
    "load_mnist_test",
    "normalized_mutual_info",
    "pool_features",
    "run_clustering",
    "search_clustering",
    "split_images",
    "train_clustering",
    "train_network",
    "write_report",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_fewshot.cluster' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
