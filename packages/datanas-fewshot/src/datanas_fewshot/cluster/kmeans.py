"""k-means evaluation of embeddings (scikit-learn), scored with NMI, ARI and Hungarian accuracy."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from datanas_core.errors import ConfigError, DataError
from datanas_fewshot.cluster.metrics import ClusteringScores, clustering_scores

__all__ = ["KMeansEvaluator"]

logger = logging.getLogger(__name__)


def _as_matrix(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise DataError(f"embeddings must be [N, D] (or [N, ...], flattened), got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(arr)):
        raise DataError("embeddings contain NaN or infinite values")
    return arr


class KMeansEvaluator:
    """Cluster embeddings with k-means and score the partition against held-back labels.

    The labels are only used for scoring, after the partition is computed.

    Args:
        n_clusters: number of clusters (classes of the dataset, or ways of a few-shot episode).
        n_init: k-means restarts (the best inertia wins).
        seed: random state of k-means (fixed, so the evaluation is reproducible).
        normalize: L2-normalise the embeddings first (cosine geometry, usual for learned embeddings).
        max_iter: iteration cap of each k-means run.

    Example:
        >>> ev = KMeansEvaluator(n_clusters=2, n_init=4, seed=0)
        >>> ev.evaluate([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]], [1, 1, 0, 0]).acc
        1.0
    """

    def __init__(
        self,
        n_clusters: int,
        n_init: int = 10,
        seed: int = 0,
        *,
        normalize: bool = False,
        max_iter: int = 300,
    ) -> None:
        if not isinstance(n_clusters, int) or n_clusters < 1:
            raise ConfigError(f"n_clusters must be a positive integer, got {n_clusters!r}")
        if not isinstance(n_init, int) or n_init < 1:
            raise ConfigError(f"n_init must be a positive integer, got {n_init!r}")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.seed = int(seed)
        self.normalize = normalize
        self.max_iter = max_iter

    def __repr__(self) -> str:
        return (
            f"KMeansEvaluator(n_clusters={self.n_clusters}, n_init={self.n_init}, seed={self.seed}, "
            f"normalize={self.normalize})"
        )

    def fit_predict(self, embeddings: Any) -> np.ndarray:
        """Cluster ``embeddings`` (``[N, D]`` tensor or array) and return ``[N]`` int64 cluster ids."""
        from sklearn.cluster import KMeans

        x = _as_matrix(embeddings)
        if x.shape[0] < self.n_clusters:
            raise DataError(f"k-means needs at least n_clusters={self.n_clusters} samples, got {x.shape[0]}")
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        km = KMeans(
            n_clusters=self.n_clusters, n_init=self.n_init, random_state=self.seed, max_iter=self.max_iter
        )
        return km.fit_predict(x).astype(np.int64)

    def evaluate(self, embeddings: Any, labels: Any) -> ClusteringScores:
        """k-means on ``embeddings``, then NMI / ARI / ACC against ``labels``."""
        pred = self.fit_predict(embeddings)
        return clustering_scores(labels, pred)
