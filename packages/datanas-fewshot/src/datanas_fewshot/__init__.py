"""datanas-fewshot: architecture search for few-shot learning (learn2learn episodes, ProtoNet and MAML) and
for unsupervised clustering (clustering heads with k-means evaluation, :mod:`datanas_fewshot.cluster`).

learn2learn is imported lazily by :mod:`datanas_fewshot.episodes` and :mod:`datanas_fewshot.meta` only, so
everything here imports without it; functions that need it raise
:class:`~datanas_core.errors.MissingDependencyError` naming the ``datanas-fewshot[l2l]`` extra.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public names loaded on first access (PEP 562): ``import`` of this package imports no torch.
_LAZY = {
    "COMPACT_OPS": ("datanas_fewshot.cellnets", "COMPACT_OPS"),
    "build_space": ("datanas_fewshot.cellnets", "build_space"),
    "random_genotype": ("datanas_fewshot.cellnets", "random_genotype"),
    "ClusterConfig": ("datanas_fewshot.cluster", "ClusterConfig"),
    "ClusteringHead": ("datanas_fewshot.cluster", "ClusteringHead"),
    "ClusteringNetwork": ("datanas_fewshot.cluster", "ClusteringNetwork"),
    "ClusteringScores": ("datanas_fewshot.cluster", "ClusteringScores"),
    "KMeansEvaluator": ("datanas_fewshot.cluster", "KMeansEvaluator"),
    "clustering_accuracy": ("datanas_fewshot.cluster", "clustering_accuracy"),
    "clustering_scores": ("datanas_fewshot.cluster", "clustering_scores"),
    "run_clustering": ("datanas_fewshot.cluster", "run_clustering"),
    "Episode": ("datanas_fewshot.episodes", "Episode"),
    "EpisodeLoader": ("datanas_fewshot.episodes", "EpisodeLoader"),
    "EpisodeSampler": ("datanas_fewshot.episodes", "EpisodeSampler"),
    "build_taskset": ("datanas_fewshot.episodes", "build_taskset"),
    "import_learn2learn": ("datanas_fewshot.episodes", "import_learn2learn"),
    "split_support_query": ("datanas_fewshot.episodes", "split_support_query"),
    "FewShotConfig": ("datanas_fewshot.fewshot", "FewShotConfig"),
    "FewShotResult": ("datanas_fewshot.fewshot", "FewShotResult"),
    "build_backbone": ("datanas_fewshot.fewshot", "build_backbone"),
    "build_fewshot_searcher": ("datanas_fewshot.fewshot", "build_fewshot_searcher"),
    "conv4_hidden_for": ("datanas_fewshot.fewshot", "conv4_hidden_for"),
    "evaluate_backbone": ("datanas_fewshot.fewshot", "evaluate_backbone"),
    "Conv4": ("datanas_fewshot.meta", "Conv4"),
    "FewShotModel": ("datanas_fewshot.meta", "FewShotModel"),
    "FewShotSearchTask": ("datanas_fewshot.meta", "FewShotSearchTask"),
    "MAMLLearner": ("datanas_fewshot.meta", "MAMLLearner"),
    "MetaLearner": ("datanas_fewshot.meta", "MetaLearner"),
    "MetaTrainConfig": ("datanas_fewshot.meta", "MetaTrainConfig"),
    "ProtoNetLearner": ("datanas_fewshot.meta", "ProtoNetLearner"),
    "build_learner": ("datanas_fewshot.meta", "build_learner"),
    "evaluate_runs": ("datanas_fewshot.meta", "evaluate_runs"),
    "meta_test": ("datanas_fewshot.meta", "meta_test"),
    "meta_train": ("datanas_fewshot.meta", "meta_train"),
    "prototypical_logits": ("datanas_fewshot.meta", "prototypical_logits"),
    "FEWSHOT_DATASETS": ("datanas_fewshot.sources", "FEWSHOT_DATASETS"),
    "FewShotSplits": ("datanas_fewshot.sources", "FewShotSplits"),
    "ImageClassDataset": ("datanas_fewshot.sources", "ImageClassDataset"),
    "OneShotRun": ("datanas_fewshot.sources", "OneShotRun"),
    "load_fewshot_splits": ("datanas_fewshot.sources", "load_fewshot_splits"),
    "load_image_folder_splits": ("datanas_fewshot.sources", "load_image_folder_splits"),
    "load_omniglot": ("datanas_fewshot.sources", "load_omniglot"),
    "load_omniglot_runs": ("datanas_fewshot.sources", "load_omniglot_runs"),
    "with_rotations": ("datanas_fewshot.sources", "with_rotations"),
    "MeanCI": ("datanas_fewshot.stats", "MeanCI"),
    "mean_confidence_interval": ("datanas_fewshot.stats", "mean_confidence_interval"),
}

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


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_fewshot' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
