from __future__ import annotations

import numpy as np
import pytest
import torch

from datanas_core.errors import ConfigError, DataError
from datanas_fewshot.cluster.kmeans import KMeansEvaluator
from datanas_fewshot.cluster.metrics import (
    adjusted_rand_index,
    clustering_accuracy,
    clustering_scores,
    contingency_matrix,
    hungarian_match,
    normalized_mutual_info,
)


def test_permuted_labelling_scores_one():
    truth = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    perm = {0: 7, 1: 2, 2: 0, 3: 5}  # arbitrary cluster ids
    pred = np.array([perm[t] for t in truth])
    s = clustering_scores(truth, pred)
    assert s.acc == 1.0
    assert s.nmi == pytest.approx(1.0)
    assert s.ari == pytest.approx(1.0)
    assert hungarian_match(truth, pred) == {7: 0, 2: 1, 0: 2, 5: 3}


def test_scores_print_rounded():
    s = clustering_scores([0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0])
    assert str(s) == f"NMI {s.nmi:.4f}, ARI {s.ari:.4f}, acc 0.8333"
    assert "ClusteringScores" not in f"{s}" and s.rounded() == {
        "nmi": round(s.nmi, 4),
        "ari": round(s.ari, 4),
        "acc": 0.8333,
    }


def test_hand_made_partial_accuracy():
    truth = [0, 0, 0, 1, 1, 1]
    pred = [1, 1, 0, 0, 0, 0]  # best map: 1->0 (2 right), 0->1 (3 right) = 5/6
    assert clustering_accuracy(truth, pred) == pytest.approx(5 / 6)
    table, pred_ids, true_ids = contingency_matrix(truth, pred)
    assert table.tolist() == [[1, 3], [2, 0]]
    assert pred_ids.tolist() == [0, 1] and true_ids.tolist() == [0, 1]


def test_more_clusters_than_classes_leaves_surplus_unmatched():
    truth = [0, 0, 1, 1]
    pred = [0, 1, 2, 2]
    m = hungarian_match(truth, pred)
    assert len(m) == 2 and m[2] == 1
    assert clustering_accuracy(truth, pred) == pytest.approx(3 / 4)


def test_single_cluster_scores_zero_nmi_and_ari():
    truth = [0, 1, 0, 1]
    pred = [3, 3, 3, 3]
    assert normalized_mutual_info(truth, pred) == pytest.approx(0.0)
    assert adjusted_rand_index(truth, pred) == pytest.approx(0.0)
    assert clustering_accuracy(truth, pred) == pytest.approx(0.5)


def test_tensor_inputs_are_accepted():
    t = torch.tensor([1, 1, 0, 0])
    assert clustering_accuracy(t, torch.tensor([0, 0, 1, 1])) == 1.0


@pytest.mark.parametrize(
    ("truth", "pred", "match"),
    [
        ([0, 1], [0], "must match"),
        ([], [], "empty"),
        ([[0, 1]], [[0, 1]], "1-D"),
        ([0.5, 1], [0, 1], "integer"),
    ],
)
def test_bad_inputs_raise_data_error(truth, pred, match):
    with pytest.raises(DataError, match=match):
        clustering_scores(truth, pred)


def test_kmeans_evaluator_separates_blobs_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(3).repeat_interleave(20)
    x = centers[labels] + 0.5 * torch.randn(60, 2, generator=g)
    ev = KMeansEvaluator(n_clusters=3, n_init=3, seed=1)
    s = ev.evaluate(x, labels)
    assert s.acc == 1.0 and s.nmi == pytest.approx(1.0)
    np.testing.assert_array_equal(ev.fit_predict(x), ev.fit_predict(x))


def test_kmeans_evaluator_validates():
    with pytest.raises(ConfigError, match="n_clusters"):
        KMeansEvaluator(n_clusters=0)
    with pytest.raises(DataError, match="at least n_clusters=5"):
        KMeansEvaluator(n_clusters=5).fit_predict(torch.zeros(3, 2))
    with pytest.raises(DataError, match="NaN"):
        KMeansEvaluator(n_clusters=1).fit_predict(torch.tensor([[float("nan")]]))
