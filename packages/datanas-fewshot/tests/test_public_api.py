from __future__ import annotations

import datanas_fewshot
import datanas_fewshot.cluster

EXPECTED_ALL = [
    "COMPACT_OPS",
    "FEWSHOT_DATASETS",
    "ClusterConfig",
    "ClusteringHead",
    "ClusteringNetwork",
    "ClusteringScores",
    "Conv4",
    "Episode",
    "EpisodeLoader",
    "EpisodeSampler",
    "FewShotConfig",
    "FewShotModel",
    "FewShotResult",
    "FewShotSearchTask",
    "FewShotSplits",
    "ImageClassDataset",
    "KMeansEvaluator",
    "MAMLLearner",
    "MeanCI",
    "MetaLearner",
    "MetaTrainConfig",
    "OneShotRun",
    "ProtoNetLearner",
    "build_backbone",
    "build_fewshot_searcher",
    "build_learner",
    "build_space",
    "build_taskset",
    "clustering_accuracy",
    "clustering_scores",
    "conv4_hidden_for",
    "evaluate_backbone",
    "evaluate_runs",
    "import_learn2learn",
    "load_fewshot_splits",
    "load_image_folder_splits",
    "load_omniglot",
    "load_omniglot_runs",
    "mean_confidence_interval",
    "meta_test",
    "meta_train",
    "prototypical_logits",
    "random_genotype",
    "run_clustering",
    "split_support_query",
    "with_rotations",
]

EXPECTED_CLUSTER_ALL = [
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


def test_public_api_is_pinned():
    assert sorted(datanas_fewshot.__all__) == sorted(EXPECTED_ALL)
    assert sorted(datanas_fewshot.cluster.__all__) == sorted(EXPECTED_CLUSTER_ALL)
    for mod in (datanas_fewshot, datanas_fewshot.cluster):
        for name in mod.__all__:
            assert hasattr(mod, name), name


def test_importing_the_package_does_not_import_learn2learn():
    import subprocess
    import sys

    code = "import sys, datanas_fewshot, datanas_fewshot.cluster; print('learn2learn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
