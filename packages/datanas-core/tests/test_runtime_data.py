"""Deterministic loaders: order from (seed, epoch), skipping, sharding, epoch streams."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from datanas_core.errors import ConfigError
from datanas_core.runtime import DeterministicBatchSampler, DeterministicLoader, EpochStream


def test_order_depends_only_on_seed_and_epoch() -> None:
    a = DeterministicBatchSampler(50, 8, seed=3)
    b = DeterministicBatchSampler(50, 8, seed=3)
    assert list(a.batches(2)) == list(b.batches(2))
    assert list(a.batches(1)) != list(a.batches(2))
    assert list(a.batches(1)) != list(DeterministicBatchSampler(50, 8, seed=4).batches(1))
    flat = [i for bt in a.batches(5) for i in bt]
    assert sorted(flat) == list(range(50))


def test_skipping_equals_suffix() -> None:
    s = DeterministicBatchSampler(37, 4, seed=1)
    full = list(s.batches(7))
    assert list(s.batches(7, start_batch=3)) == full[3:]


def test_iteration_advances_epochs_and_set_epoch_rewinds() -> None:
    s = DeterministicBatchSampler(20, 5, seed=0)
    e0, e1 = list(s), list(s)
    assert e0 == list(s.batches(0)) and e1 == list(s.batches(1))
    s.set_epoch(0, start_batch=2)
    assert list(s) == e0[2:]
    assert list(s) == e1  # continues with epoch 1


@pytest.mark.parametrize("n", [32, 37])
def test_shards_partition_each_global_batch(n: int) -> None:
    world = 2
    single = DeterministicBatchSampler(n, 8, seed=9, drop_last=True)
    ranks = [
        DeterministicBatchSampler(n, 4, seed=9, drop_last=True, rank=r, world_size=world)
        for r in range(world)
    ]
    assert all(len(r) == len(single) for r in ranks)
    for g, parts in zip(single.batches(1), zip(*(r.batches(1) for r in ranks), strict=True), strict=True):
        assert [i for p in parts for i in p] == g


def test_uneven_shards_are_padded_to_equal_length() -> None:
    ranks = [DeterministicBatchSampler(10, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    batches = [list(r.batches(0)) for r in ranks]
    assert len(batches[0]) == len(batches[1]) == 2
    assert all(len(b) == 4 for bs in batches for b in bs)
    covered = {i for bs in batches for b in bs for i in b}
    assert covered == set(range(10))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        DeterministicBatchSampler(10, 0)
    with pytest.raises(ConfigError, match="rank"):
        DeterministicBatchSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="start_batch"):
        DeterministicBatchSampler(10, 2).set_epoch(0, start_batch=99)
    with pytest.raises(ConfigError, match="empty"):
        DeterministicBatchSampler(0, 2)


def _ds(n: int = 30) -> TensorDataset:
    return TensorDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))


def test_loader_iter_from_skips_without_touching_global_rng() -> None:
    loader = DeterministicLoader(_ds(), 4, seed=2)
    loader.set_epoch(3)
    full = [b[1].tolist() for b in loader]
    state = torch.get_rng_state()
    loader.set_epoch(3)
    part = [b[1].tolist() for b in loader.iter_from(5)]
    assert part == full[5:]
    assert torch.equal(state, torch.get_rng_state())


def test_loader_shard_matches_sampler() -> None:
    loader = DeterministicLoader(_ds(32), 8, seed=1)
    shards = [loader.shard(r, 2) for r in range(2)]
    assert shards[0].batch_size == 8 and len(shards[0]) == 2
    g0 = [b[1] for b in shards[0]]
    g1 = [b[1] for b in shards[1]]
    assert not set(torch.cat(g0).tolist()) & set(torch.cat(g1).tolist())


def test_epoch_stream_cycles_deterministically() -> None:
    val = DeterministicLoader(_ds(12), 4, seed=5)  # 3 batches per epoch
    epoch = [0]
    stream = EpochStream(val, 7, lambda: epoch[0])
    full = [b[1].tolist() for b in stream]
    assert len(full) == 7
    # batch i of search epoch 0 is batch i % 3 of the loader's epoch i // 3
    ref = [list(val.sampler.batches(c)) for c in range(3)]
    assert full == [ref[i // 3][i % 3] for i in range(7)]
    assert [b[1].tolist() for b in stream.iter_from(4)] == full[4:]
    epoch[0] = 1
    nxt = [b[1].tolist() for b in stream]
    assert nxt != full and [b[1].tolist() for b in stream.iter_from(2)] == nxt[2:]


def test_worker_processes_do_not_skip_epochs() -> None:
    """With num_workers > 0 the DataLoader asks its batch sampler for iterators more than once; the loader
    must still run epochs 0, 1, 2 with exactly the single-process orders, and a set_epoch start too."""
    ds = TensorDataset(torch.arange(20))
    plain = DeterministicLoader(ds, 6, seed=3)
    workers = DeterministicLoader(ds, 6, seed=3, num_workers=2)
    for epoch in range(3):
        assert workers.next_epoch == epoch
        a = [b[0].tolist() for b in plain]
        b = [b[0].tolist() for b in workers]
        assert a == b and workers.epoch == epoch
    workers.set_epoch(7, 2)
    plain.set_epoch(7, 2)
    assert [b[0].tolist() for b in workers] == [b[0].tolist() for b in plain]
    assert workers.next_epoch == 8
