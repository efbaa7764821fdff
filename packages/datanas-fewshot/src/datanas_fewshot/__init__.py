"""datanas-fewshot: architecture search for few-shot learning (learn2learn episodes, ProtoNet and MAML) and
for unsupervised clustering (clustering heads with k-means evaluation, :mod:`datanas_fewshot.cluster`).

learn2learn is imported lazily by :mod:`datanas_fewshot.episodes` and :mod:`datanas_fewshot.meta` only, so
everything here imports without it; functions that need it raise
:class:`~datanas_core.errors.MissingDependencyError` naming the ``datanas-fewshot[l2l]`` extra.
"""

from __future__ import annotations

from datanas_fewshot.cellnets import COMPACT_OPS, build_space, random_genotype
from datanas_fewshot.cluster import (
    ClusterConfig,
    ClusteringHead,
    ClusteringNetwork,
    ClusteringScores,
    KMeansEvaluator,
    clustering_accuracy,
    clustering_scores,
    run_clustering,
)
from datanas_fewshot.episodes import (
    Episode,
    EpisodeLoader,
    EpisodeSampler,
    build_taskset,
    import_learn2learn,
    split_support_query,
)
from datanas_fewshot.fewshot import (
    FewShotConfig,
    FewShotResult,
    build_backbone,
    build_fewshot_searcher,
    conv4_hidden_for,
    evaluate_backbone,
)
from datanas_fewshot.meta import (
    Conv4,
    FewShotModel,
    FewShotSearchTask,
    MAMLLearner,
    MetaLearner,
    MetaTrainConfig,
    ProtoNetLearner,
    build_learner,
    evaluate_runs,
    meta_test,
    meta_train,
    prototypical_logits,
)
from datanas_fewshot.sources import (
    FEWSHOT_DATASETS,
    FewShotSplits,
    ImageClassDataset,
    OneShotRun,
    load_fewshot_splits,
    load_image_folder_splits,
    load_omniglot,
    load_omniglot_runs,
    with_rotations,
)
from datanas_fewshot.stats import MeanCI, mean_confidence_interval

__all__ = [
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
