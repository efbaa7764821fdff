from __future__ import annotations

import builtins
import importlib
import sys

import pytest
import torch

from datanas_core.errors import ConfigError, DataError, MissingDependencyError
from datanas_fewshot.episodes import Episode, split_support_query
from datanas_fewshot.sources import ImageClassDataset, with_rotations


def _toy_dataset(classes: int = 6, per_class: int = 5, size: int = 8) -> ImageClassDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.rand(classes * per_class, 1, size, size, generator=g)
    images[:, 0, 0, 0] = labels.float()  # the class id is readable from the image
    return ImageClassDataset(images, labels)


def test_split_support_query_by_label_order():
    data = torch.arange(9.0)
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 2, 0])
    ep = split_support_query(data, labels, shots=1, queries=2)
    assert ep.support_y.tolist() == [0, 1, 2]
    assert ep.support_x.tolist() == [1.0, 2.0, 0.0]  # first occurrence of each class
    assert ep.query_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert ep.query_x.tolist() == [3.0, 8.0, 5.0, 6.0, 4.0, 7.0]
    assert ep.ways == 3


def test_split_support_query_default_queries_use_the_rest():
    ep = split_support_query(torch.zeros(8, 1, 2, 2), torch.tensor([0, 1] * 4), shots=3)
    assert ep.support_x.shape == (6, 1, 2, 2) and ep.query_x.shape == (2, 1, 2, 2)


@pytest.mark.parametrize(
    ("labels", "shots", "queries", "err", "match"),
    [
        ([0, 0, 1], 1, None, DataError, "same number"),
        ([1, 1, 2, 2], 1, None, DataError, "0..ways-1"),
        ([0, 0, 1, 1], 1, 2, DataError, "shots \\+ queries"),
        ([0, 0, 1, 1], 2, None, ConfigError, "queries must be >= 1"),
        ([0, 1], 0, None, ConfigError, "shots must be >= 1"),
    ],
)
def test_split_support_query_rejects_bad_tasks(labels, shots, queries, err, match):
    with pytest.raises(err, match=match):
        split_support_query(torch.zeros(len(labels)), torch.tensor(labels), shots, queries)


def test_rotations_become_new_classes():
    ds = _toy_dataset(classes=2, per_class=3)
    rot = with_rotations(ds)
    assert len(rot) == 4 * len(ds) and rot.num_classes == 8
    # class c rotated by 90 degrees is class c*4+1 and holds exactly the rotated images of class c
    idx = (rot.labels == 1 * 4 + 1).nonzero().flatten()
    src = (ds.labels == 1).nonzero().flatten()
    torch.testing.assert_close(rot.images[idx], torch.rot90(ds.images[src], 1, dims=(2, 3)))
    with pytest.raises(ConfigError, match="multiples of 90"):
        with_rotations(ds, (0, 45))


def test_learn2learn_missing_gives_clear_error_and_package_still_imports(monkeypatch):
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # makes `import learn2learn` raise ImportError
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name == "learn2learn" or name.startswith("learn2learn."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    for mod in [m for m in sys.modules if m.startswith("datanas_fewshot")]:
        monkeypatch.delitem(sys.modules, mod)
    pkg = importlib.import_module("datanas_fewshot")
    cluster = importlib.import_module("datanas_fewshot.cluster")
    episodes = importlib.import_module("datanas_fewshot.episodes")
    meta = importlib.import_module("datanas_fewshot.meta")
    assert callable(pkg.split_support_query) and callable(cluster.KMeansEvaluator)
    # torch-only pieces work without learn2learn
    ep = episodes.split_support_query(torch.zeros(4, 1), torch.tensor([0, 1, 0, 1]), shots=1)
    assert isinstance(ep, episodes.Episode)
    assert meta.prototypical_logits(torch.eye(2), torch.tensor([0, 1]), torch.eye(2)).shape == (2, 2)
    with pytest.raises(MissingDependencyError, match=r"datanas-fewshot\[l2l\]"):
        episodes.build_taskset(_toy_dataset(), ways=2, shots=1, queries=1)
    with pytest.raises(MissingDependencyError, match=r"datanas-fewshot\[l2l\]"):
        meta.MAMLLearner().wrap(meta.FewShotModel(meta.Conv4(1, hidden=4, blocks=1), ways=2))
    with pytest.raises(ImportError):  # MissingDependencyError is an ImportError too
        episodes.import_learn2learn()


def test_episode_to_keeps_tensors():
    ep = Episode(torch.zeros(2, 1), torch.tensor([0, 1]), torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]))
    assert ep.to("cpu").query_y.tolist() == [0, 0, 1, 1]


# ----------------------------------------------------------------------------- with learn2learn
@pytest.mark.l2l
def test_taskset_episode_shapes_and_remapped_labels():
    pytest.importorskip("learn2learn")
    from datanas_fewshot.episodes import EpisodeLoader, EpisodeSampler, build_taskset

    ds = _toy_dataset(classes=6, per_class=5)
    ts = build_taskset(ds, ways=3, shots=2, queries=2)
    x, y = ts.sample()[:2]
    assert x.shape == (12, 1, 8, 8) and sorted(y.unique().tolist()) == [0, 1, 2]
    sampler = EpisodeSampler(ds, ways=3, shots=2, queries=2, seed=7)
    ep = sampler.episode(0)
    assert ep.support_x.shape == (6, 1, 8, 8) and ep.query_x.shape == (6, 1, 8, 8)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2] and ep.query_y.tolist() == [0, 0, 1, 1, 2, 2]
    # remapping is consistent: support and query of one remapped label come from one original class
    orig = lambda t: t[:, 0, 0, 0].long()  # noqa: E731
    for c in range(3):
        classes = set(orig(ep.support_x[ep.support_y == c]).tolist()) | set(
            orig(ep.query_x[ep.query_y == c]).tolist()
        )
        assert len(classes) == 1
    # support and query samples are distinct images
    s = {tuple(v.flatten().tolist()) for v in ep.support_x}
    assert all(tuple(v.flatten().tolist()) not in s for v in ep.query_x)
    # reproducible, and the caller's `random` state is untouched
    import random

    random.seed(123)
    before = random.random()
    random.seed(123)
    again = sampler.episode(0)
    assert random.random() == before
    assert torch.equal(again.support_x, ep.support_x) and torch.equal(again.query_x, ep.query_x)
    assert not torch.equal(sampler.episode(1).query_x, ep.query_x)
    loader = EpisodeLoader(sampler, 3)
    assert len(loader) == 3 and len(list(loader)) == 3
    tail = list(loader.iter_from(1))
    assert torch.equal(tail[0].query_x, list(loader)[1].query_x)


@pytest.mark.l2l
def test_taskset_validates_sizes():
    pytest.importorskip("learn2learn")
    from datanas_fewshot.episodes import build_taskset

    with pytest.raises(ConfigError, match="at least 9 classes"):
        build_taskset(_toy_dataset(classes=6), ways=9, shots=1, queries=1)
    with pytest.raises(ConfigError, match="smallest class has 5"):
        build_taskset(_toy_dataset(classes=6, per_class=5), ways=2, shots=3, queries=3)
