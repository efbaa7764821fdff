from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from datanas_core.errors import ConfigError, DataError
from datanas_core.search import SearchConfig
from datanas_fewshot.cellnets import random_genotype
from datanas_fewshot.cluster.data import ClusteringData, load_clustering_data, load_digits_images
from datanas_fewshot.cluster.heads import ClusteringHead, ClusteringNetwork
from datanas_fewshot.cluster.pipeline import (
    ClusterConfig,
    build_clustering_network,
    build_clustering_supernet,
    run_clustering,
)
from datanas_fewshot.cluster.report import matched_confusion, pca_2d, write_report
from datanas_fewshot.cluster.task import ClusteringSearchTask, PairLoader, split_images
from datanas_fewshot.cluster.train import TrainConfig


def _tiny_config(**kw) -> ClusterConfig:
    base = dict(
        n_clusters=3,
        image_size=8,
        steps=2,
        C=4,
        layers=3,
        embed_dim=8,
        search=SearchConfig(epochs=1, executor="sparse", w_weight_decay=0.0),
        search_batch_size=8,
        search_max_batches=2,
        train=TrainConfig(epochs=1, batch_size=8, max_batches=2),
        kmeans_n_init=2,
    )
    base.update(kw)
    return ClusterConfig(**base)


def _tiny_data(n: int = 48) -> ClusteringData:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(n // 3)
    images = torch.rand(n, 1, 8, 8, generator=g) * 0.2
    for c in range(3):  # three visually distinct classes
        images[labels == c, 0, c * 2 : c * 2 + 3, :] += 0.8
    return ClusteringData("toy", images.clamp(0, 1), labels, ("a", "b", "c"))


def test_head_output_shapes():
    head = ClusteringHead(16, n_clusters=5, embed_dim=12, overcluster=20)
    out = head(torch.randn(6, 16, 3, 3))
    assert out.embedding.shape == (6, 12) and out.logits.shape == (6, 5)
    assert out.overcluster_logits is not None and out.overcluster_logits.shape == (6, 20)
    dec = ClusteringHead(16, n_clusters=4, embed_dim=8, assignment="student_t")
    q = dec(torch.randn(5, 16)).logits.softmax(1)
    assert q.shape == (5, 4)
    torch.testing.assert_close(q.sum(1), torch.ones(5))
    with pytest.raises(ConfigError, match="assignment"):
        ClusteringHead(16, 4, assignment="cosine")
    with pytest.raises(ConfigError, match="student_t"):
        head.init_centroids(torch.zeros(5, 12))


def test_network_shapes_for_supernet_and_derived():
    cfg = _tiny_config()
    sup = build_clustering_supernet(cfg, 1)
    from datanas_core.distribution import ArchitectureDistribution

    dist = ArchitectureDistribution(cfg.space(), estimator="egs")
    out = sup(torch.rand(4, 1, 8, 8), dist.sample(generator=torch.Generator().manual_seed(0)))
    assert out.logits.shape == (4, 3) and out.embedding.shape == (4, 8)
    g = random_genotype(cfg.space(), torch.Generator().manual_seed(0))
    net = build_clustering_network(cfg, g, 1)
    emb, logits = net.embed(torch.rand(5, 1, 8, 8), batch_size=2)
    assert emb.shape == (5, 8) and logits.shape == (5, 3)
    assert net.training  # embed() restores the mode


def test_pair_loader_is_reproducible_and_resumable():
    x = torch.rand(20, 1, 6, 6)
    loader = PairLoader(x, 4, seed=3)
    loader.set_epoch(2)
    full = list(loader)
    assert len(full) == 5
    tail = list(loader.iter_from(3))
    torch.testing.assert_close(tail[0][0], full[3][0])
    loader.set_epoch(3)
    assert not torch.equal(list(loader)[0][0], full[0][0])
    with pytest.raises(DataError, match="exceeds"):
        PairLoader(x, 50)


def test_split_images_is_disjoint_and_seeded():
    x = torch.arange(10.0).view(10, 1, 1, 1)
    a, b = split_images(x, 0.3, seed=1)
    assert len(a) == 7 and len(b) == 3
    assert not set(a.flatten().tolist()) & set(b.flatten().tolist())
    a2, _ = split_images(x, 0.3, seed=1)
    assert torch.equal(a, a2)


def test_search_task_loss_and_nce_term():
    net = ClusteringNetwork(_Flat(), ClusteringHead(4, 3, embed_dim=6))
    batch = (torch.rand(8, 4), torch.rand(8, 4))
    plain, logs = ClusteringSearchTask().loss(net, batch, None)
    with_nce, logs2 = ClusteringSearchTask(nce_weight=1.0).loss(net, batch, None)
    assert "nce" in logs2 and "nce" not in logs
    assert with_nce.item() == pytest.approx(plain.item() + float(logs2["nce"]), rel=1e-5)


class _Flat(torch.nn.Module):
    num_features = 4

    def forward_features(self, x):
        return x


def test_labels_never_reach_search_or_training():
    """Shuffling the labels leaves the searched genotype and the trained weights bit-for-bit unchanged."""
    cfg = _tiny_config()
    data = _tiny_data()
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(5))
    shuffled = dataclasses.replace(data, labels=data.labels[perm])
    assert not torch.equal(shuffled.labels, data.labels)
    r1 = run_clustering(data, cfg)
    r2 = run_clustering(shuffled, cfg)
    assert r1.genotype == r2.genotype
    assert [{k: v for k, v in h.items()} for h in r1.search_history] == r2.search_history
    assert r1.train_history == r2.train_history
    s1, s2 = r1.network.state_dict(), r2.network.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    np.testing.assert_array_equal(r1.evaluation.kmeans_pred, r2.evaluation.kmeans_pred)
    np.testing.assert_array_equal(r1.evaluation.head_pred, r2.evaluation.head_pred)


def test_report_files_are_valid_svg_and_html(tmp_path):
    labels = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([2, 2, 0, 0, 1, 0])
    mat, rows, cols = matched_confusion(labels, pred)
    assert rows == [0, 1, 2] and cols == [2, 0, 1]
    assert mat.tolist() == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]  # diagonal = matched counts
    emb = np.random.default_rng(0).normal(size=(6, 4))
    path = write_report(
        tmp_path, labels=labels, predictions={"kmeans": pred}, embeddings=emb, scores={"kmeans": {"nmi": 0.5}}
    )
    assert path.name == "report.html" and "0.5000" in path.read_text()
    for name in ("confusion_kmeans.svg", "projection.svg"):
        ET.fromstring((tmp_path / name).read_text())  # well-formed XML


def test_pca_2d_recovers_dominant_direction():
    t = np.linspace(-1, 1, 50)
    x = np.stack([t * 10, t * 0.1, np.zeros_like(t)], 1)
    p = pca_2d(x)
    assert p.shape == (50, 2)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.999


def test_data_loaders(tmp_path):
    d = load_digits_images()
    assert d.images.shape == (1797, 1, 8, 8) and d.num_classes == 10
    assert float(d.images.max()) <= 1.0
    with pytest.raises(ConfigError, match="needs a data directory"):
        load_clustering_data("mnist")
    with pytest.raises(ConfigError, match="digits, mnist, folder"):
        load_clustering_data("cifar")
    from PIL import Image

    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("L", (5, 5), color=40 * i).save(tmp_path / cls / f"{i}.png")
    f = load_clustering_data("folder", tmp_path, size=4)
    assert f.images.shape == (4, 1, 4, 4) and f.labels.tolist() == [0, 0, 1, 1] and f.classes == ("x", "y")
    with pytest.raises(DataError, match="not found"):
        load_clustering_data("mnist", tmp_path)


@pytest.mark.parametrize(("objective", "assignment"), [("scan", "linear"), ("dec", "student_t")])
def test_other_objectives_run_end_to_end(objective, assignment):
    from datanas_fewshot.cellnets import random_genotype

    cfg = _tiny_config(objective=objective, assignment=assignment, nce_weight=0.0, overcluster=4)
    g = random_genotype(cfg.space(), torch.Generator().manual_seed(0))
    run = run_clustering(_tiny_data(), cfg, genotype=g)
    assert run.genotype == g and run.search_history == []
    assert 0.0 <= run.evaluation.kmeans.nmi <= 1.0 and run.evaluation.head_pred.shape == (48,)
    assert all(np.isfinite(h["loss"]) for h in run.train_history)


def test_search_seed_changes_the_search_only():
    """search_seed=None is the run seed; another search seed changes the search history, and training a
    given genotype does not depend on it."""
    data = _tiny_data()
    base = run_clustering(data, _tiny_config(seed=0))
    same = run_clustering(data, _tiny_config(seed=0, search_seed=0))
    other = run_clustering(data, _tiny_config(seed=0, search_seed=7))
    assert base.search_history == same.search_history and base.genotype == same.genotype
    assert other.search_history != base.search_history
    net_a = build_clustering_network(_tiny_config(seed=0), base.genotype, 1)
    net_b = build_clustering_network(_tiny_config(seed=0, search_seed=7), base.genotype, 1)
    assert all(
        torch.equal(a, b)
        for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values(), strict=True)
    )
