"""Clustering metrics: NMI, ARI (scikit-learn) and accuracy under the best one-to-one matching.

Cluster ids are arbitrary, so accuracy is measured after matching predicted clusters to classes with the
Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on the contingency table. A permuted
labelling therefore scores ``ACC = NMI = ARI = 1``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from datanas_core.errors import DataError

__all__ = [
    "ClusteringScores",
    "adjusted_rand_index",
    "clustering_accuracy",
    "clustering_scores",
    "contingency_matrix",
    "hungarian_match",
    "normalized_mutual_info",
]

logger = logging.getLogger(__name__)


def _as_labels(x: Any, name: str) -> np.ndarray:
    """Convert a tensor / array / sequence of integer labels to a 1-D int64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().to("cpu").numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of integer labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.equal(np.mod(arr, 1), 0)):
            arr = arr.astype(np.int64)
        else:
            raise DataError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _pair(labels_true: Any, labels_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    if t.shape != p.shape:
        raise DataError(f"labels_true has {t.size} entries but labels_pred has {p.size}; they must match")
    if t.size == 0:
        raise DataError("cannot score an empty labelling (0 samples)")
    return t, p


def contingency_matrix(labels_true: Any, labels_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (predicted cluster, true class) pairs.

    Returns:
        ``(table, pred_ids, true_ids)`` where ``table[i, j]`` counts samples in cluster ``pred_ids[i]``
        with class ``true_ids[j]``.
    """
    t, p = _pair(labels_true, labels_pred)
    true_ids, t_idx = np.unique(t, return_inverse=True)
    pred_ids, p_idx = np.unique(p, return_inverse=True)
    table = np.zeros((pred_ids.size, true_ids.size), dtype=np.int64)
    np.add.at(table, (p_idx, t_idx), 1)
    return table, pred_ids, true_ids


def hungarian_match(labels_true: Any, labels_pred: Any) -> dict[int, int]:
    """The one-to-one cluster -> class map that maximises the number of agreeing samples.

    With more clusters than classes the surplus clusters stay unmatched (absent from the map).
    """
    from scipy.optimize import linear_sum_assignment

    table, pred_ids, true_ids = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(pred_ids[r]): int(true_ids[c]) for r, c in zip(rows, cols, strict=True)}


def clustering_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Fraction of samples whose cluster maps to their class under :func:`hungarian_match`."""
    from scipy.optimize import linear_sum_assignment

    table, _, _ = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum()) / float(table.sum())


def normalized_mutual_info(labels_true: Any, labels_pred: Any) -> float:
    """Normalised mutual information (arithmetic normalisation, scikit-learn's default)."""
    from sklearn.metrics import normalized_mutual_info_score

    t, p = _pair(labels_true, labels_pred)
    return float(normalized_mutual_info_score(t, p))


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (1 for identical partitions, about 0 for random ones)."""
    from sklearn.metrics import adjusted_rand_score

    t, p = _pair(labels_true, labels_pred)
    return float(adjusted_rand_score(t, p))


@dataclass(frozen=True)
class ClusteringScores:
    """NMI, ARI and Hungarian-matched accuracy of one labelling."""

    nmi: float
    ari: float
    acc: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def rounded(self, digits: int = 4) -> dict[str, float]:
        """The scores rounded to ``digits`` decimals (for printing and logs)."""
        return {k: round(float(v), digits) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        """``NMI 0.7995, ARI 0.6521, acc 0.8123`` (4 decimals)."""
        return f"NMI {self.nmi:.4f}, ARI {self.ari:.4f}, acc {self.acc:.4f}"


def clustering_scores(labels_true: Any, labels_pred: Any) -> ClusteringScores:
    """All three metrics at once.

    Example:
        >>> clustering_scores([0, 0, 1, 1], [1, 1, 0, 0])
        ClusteringScores(nmi=1.0, ari=1.0, acc=1.0)
    """
    return ClusteringScores(
        nmi=normalized_mutual_info(labels_true, labels_pred),
        ari=adjusted_rand_index(labels_true, labels_pred),
        acc=clustering_accuracy(labels_true, labels_pred),
    )
