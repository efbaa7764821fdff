"""Unsupervised clustering search: clustering heads on searched cells, trained without labels (IIC by default,
SCAN- or DEC-style as options), evaluated with k-means (NMI, ARI, Hungarian accuracy).

Run ``python -m datanas_fewshot.cluster --data mnist --data-dir DIR`` for search, training, evaluation and a
report. Needs torch, scipy and scikit-learn only (no learn2learn).
"""

from __future__ import annotations

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
