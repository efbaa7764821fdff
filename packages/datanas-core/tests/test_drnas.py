"""DrNAS: partial-channel edges, Net2Net widening, optimiser surgery, progressive stages, presets, runtime."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset, TensorDataset

import datanas_core as dc
import datanas_core.drnas as drnas
from datanas_core.drnas import (
    PartialChannelMixedOp,
    ProgressiveSearcher,
    Stage,
    WidenableFactorizedReduce,
    channel_mapping,
    channel_shuffle,
    parse_stages,
    widen_module,
)
from datanas_core.errors import CheckpointError, ConfigError, UnknownNameError
from datanas_core.ops import FactorizedReduce, build_op
from datanas_core.sample import ArchSample
from datanas_core.search import SearchConfig, Searcher
from datanas_core.space.darts import DRNAS_OPS
from datanas_core.space.mixed import MixedOp
from datanas_core.space.nb201 import NB201_OPS
from datanas_core.testing import ToyTask

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(
    n: int, *, seed: int = 0, hw: int = 8, classes: int = 10, batch: int = 4
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, hw, hw, generator=g), torch.randint(0, classes, (batch,), generator=g))
        for _ in range(n)
    ]


def _config(epochs: int, **kw: Any) -> SearchConfig:
    base = {"epochs": epochs, "arch_warmup_epochs": 0, "rule": "argmax_edge", "w_lr": 0.05}
    base.update(kw)
    return SearchConfig.preset("drnas", **base)


def _nb201(stages: str = "1:4:5,1:2:3", **cfg: Any) -> ProgressiveSearcher:
    epochs = sum(s.epochs for s in parse_stages(stages))
    return ProgressiveSearcher(
        dc.get_space("drnas_nb201"),
        ToyTask(),
        _config(epochs, **cfg),
        stages=stages,
        supernet_kwargs={"C": 8, "N": 1},
    )


def _darts(stages: str = "1:4:7,1:2:4", **cfg: Any) -> ProgressiveSearcher:
    epochs = sum(s.epochs for s in parse_stages(stages))
    return ProgressiveSearcher(
        dc.get_space("drnas_darts"),
        ToyTask(),
        _config(epochs, rule="topk_edges", **cfg),
        stages=stages,
        supernet_kwargs={"C": 8, "layers": 3},
    )


def _randomize_bn(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ------------------------------------------------------------------------------------------ partial channels
def test_channel_shuffle_is_a_permutation() -> None:
    x = torch.arange(12.0).view(1, 12, 1, 1).expand(2, 12, 3, 3)
    for groups in (1, 2, 3, 4, 6):
        y = channel_shuffle(x, groups)
        perm = y[0, :, 0, 0].long()
        assert sorted(perm.tolist()) == list(range(12))
        c = 12 // groups
        for i in range(c):
            for j in range(groups):
                assert int(perm[i * groups + j]) == j * c + i
    with pytest.raises(ConfigError, match="5 equal groups"):
        channel_shuffle(x, 5)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_with_k1_equals_mixed_op(stride: int) -> None:
    torch.manual_seed(0)
    pc = PartialChannelMixedOp.build(DRNAS_OPS, 8, 8, stride, pool_bn=True, k=1)
    torch.manual_seed(0)
    plain = MixedOp.build(DRNAS_OPS, 8, 8, stride, pool_bn=True)
    x = torch.randn(2, 8, 8, 8)
    w = torch.softmax(torch.randn(len(DRNAS_OPS)), -1)
    active = list(range(len(DRNAS_OPS)))
    assert torch.equal(pc(x, w, active), plain(x, w, active))
    pc.eval()
    plain.eval()
    assert torch.equal(pc(x, w, active[2:]), plain(x, w, active[2:]))


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_routes_a_share_of_channels(stride: int) -> None:
    torch.manual_seed(1)
    edge = PartialChannelMixedOp.build(["skip_connect", "sep_conv_3x3"], 8, 8, stride, k=4).eval()
    x = torch.randn(2, 8, 6, 6)
    w = torch.tensor([0.3, 0.7])
    xa = x[:, :2]
    y = 0.3 * edge.op(0)(xa) + 0.7 * edge.op(1)(xa)
    rest = x[:, 2:] if stride == 1 else F.max_pool2d(x[:, 2:], 2, 2)
    expected = channel_shuffle(torch.cat([y, rest], 1), 4)
    assert edge.op_channels == 2
    assert torch.allclose(edge(x, w, [0, 1]), expected, atol=1e-6)
    with pytest.raises(ConfigError, match=r"valid K for width 8: \[1, 2, 4, 8\]"):
        PartialChannelMixedOp.build(["skip_connect"], 8, 8, 1, k=3)


# ------------------------------------------------------------------------------------------ widening
_WIDEN_CASES = [(op, s) for op in DRNAS_OPS for s in (1, 2)] + [(op, 1) for op in NB201_OPS if op != "none"]


@pytest.mark.parametrize(("name", "stride"), _WIDEN_CASES)
@pytest.mark.parametrize("c_new", [5, 8])
def test_widening_preserves_the_function(name: str, stride: int, c_new: int) -> None:
    """op'(x[:, g]) == op(x)[:, g]: the copies of a channel carry its value (eval mode, random BN stats)."""
    torch.manual_seed(0)
    op = drnas.build_drnas_op(name, 4, stride, affine=True, pool_bn=True)
    assert op is not None
    _randomize_bn(op)
    op.eval()
    x = torch.randn(2, 4, 7, 7)
    g = channel_mapping(4, c_new, torch.Generator().manual_seed(c_new))
    trained = copy.deepcopy(op).train()  # training mode: batch statistics of copies equal the originals'
    before, before_train = op(x)[:, g], trained(x)[:, g]
    changes = widen_module(op, g, 4)
    widen_module(trained, g, 4)
    after = op(x[:, g])
    assert after.shape == before.shape
    assert torch.allclose(after, before, atol=1e-5), (after - before).abs().max()
    assert torch.allclose(trained(x[:, g]), before_train, atol=1e-5)
    for c in changes:  # the recorded transforms reproduce the new parameters
        assert torch.equal(c.transform(c.old.detach()), c.new.detach())


def test_widening_factorized_reduce_twice_tracks_its_channel_order() -> None:
    torch.manual_seed(0)
    fr = WidenableFactorizedReduce(3, 3, 2, affine=True)
    _randomize_bn(fr)
    fr.eval()
    x = torch.randn(2, 3, 6, 6)
    g1 = torch.tensor([0, 1, 2, 2, 0, 1])  # 3 -> 6, copies from both convolutions
    g2 = torch.tensor([0, 1, 2, 3, 4, 5, 5, 3, 1])  # 6 -> 9
    y0 = fr(x)
    widen_module(fr, g1, 3)
    assert not fr._identity_order
    y1 = fr(x[:, g1])
    assert torch.allclose(y1, y0[:, g1], atol=1e-5)
    widen_module(fr, g2, 6)
    assert torch.allclose(fr(x[:, g1][:, g2]), y1[:, g2], atol=1e-5)
    # the order survives a state-dict round trip into a module of the same shape
    clone = copy.deepcopy(fr)
    clone.set_out_order(list(range(9)))
    clone.load_state_dict(fr.state_dict())
    assert torch.equal(clone.out_order, fr.out_order)
    assert torch.equal(clone(x[:, g1][:, g2]), fr(x[:, g1][:, g2]))


def test_widening_rejects_what_it_cannot_preserve() -> None:
    with pytest.raises(ConfigError, match="plain FactorizedReduce"):
        widen_module(FactorizedReduce(4, 4, 2), channel_mapping(4, 6), 4)
    with pytest.raises(ConfigError, match="drops old channel"):
        widen_module(build_op("nor_conv_3x3", 4, 4, 1), torch.tensor([0, 1, 2, 2, 1]), 4)
    with pytest.raises(ConfigError, match="must be 4 channels wide"):
        widen_module(build_op("nor_conv_3x3", 4, 6, 1), channel_mapping(4, 6), 4)
    edge = PartialChannelMixedOp.build(["nor_conv_3x3"], 8, 8, 1, k=2)
    with pytest.raises(ConfigError, match="cannot narrow"):
        edge.set_partial_channels(4)


def test_widening_an_edge_keeps_its_ops_aligned() -> None:
    """All ops of an edge share one mapping, so the weighted sum of the widened ops is the widened sum."""
    torch.manual_seed(0)
    edge = PartialChannelMixedOp.build(DRNAS_OPS, 8, 8, 2, pool_bn=True, k=4)
    _randomize_bn(edge)
    edge.eval()
    x = torch.randn(2, 2, 6, 6)
    w = torch.softmax(torch.randn(7), -1)
    ops_sum = MixedOp.forward
    before = ops_sum(edge, x, w, range(7))
    edge.set_partial_channels(2, torch.Generator().manual_seed(5))
    g = channel_mapping(2, 4, torch.Generator().manual_seed(5))
    assert edge.op_channels == 4 and edge.k == 2
    assert torch.allclose(ops_sum(edge, x[:, g], w, range(7)), before[:, g], atol=1e-5)
    assert edge(torch.randn(2, 8, 6, 6), w, range(7)).shape == (2, 8, 3, 3)


# ------------------------------------------------------------------------------------------ Dirichlet
def test_dirichlet_samples_lie_on_the_simplex_and_pass_gradients() -> None:
    space = dc.get_space("drnas_darts")
    dist = dc.ArchitectureDistribution(space, "dirichlet", seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        arch = dist.sample(gen)
        for ct in ("normal", "reduce"):
            w = arch[ct].weights
            assert w.shape == (14, 7) and bool((w >= 0).all())
            assert torch.allclose(w.sum(-1), torch.ones(14), atol=1e-5)
    mask = drnas.prune_mask(torch.randn(14, 7, generator=gen), 4)
    dist.set_mask("normal", mask)
    arch = dist.sample(gen)
    w = arch["normal"].weights
    assert bool((w[~mask] == 0).all()) and bool((w[mask] > 0).all())
    assert torch.allclose(w.sum(-1), torch.ones(14), atol=1e-5)
    assert arch["normal"].active == [[k for k in range(7) if mask[e, k]] for e in range(14)]
    # gradients reach every kept logit through a supernet forward
    net = space.build_supernet(C=8, layers=3, partial_channels=2)
    loss = F.cross_entropy(net(torch.randn(2, 3, 8, 8), arch), torch.tensor([1, 2]))
    loss.backward()
    grad = dist.logits["normal"].grad
    assert grad is not None and bool(torch.isfinite(grad).all())
    assert bool((grad[mask] != 0).all())


def test_kl_regulariser_and_l2_default() -> None:
    s = _nb201("1:1:5", regularizers=({"type": "dirichlet_kl", "weight": 0.5},), a_weight_decay=0.0)
    with torch.no_grad():
        s.distribution.logits["cell"].normal_(0, 1)
    logs = s.step(*_images(2))
    beta = F.elu(s.distribution.logits["cell"].detach()) + 1
    kl = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(beta), torch.distributions.Dirichlet(torch.ones_like(beta))
    ).sum()
    assert logs["reg"] > 0
    assert logs["reg"] == pytest.approx(0.5 * float(kl), rel=0.05)  # α moved by one Adam step since
    assert drnas.get_preset("darts_cifar").search_config().a_weight_decay == 1e-3  # L2 = Adam weight decay
    assert drnas.get_preset("darts_cifar").search_config().regularizers == ()


# ------------------------------------------------------------------------------------------ spaces
def test_drnas_spaces() -> None:
    space = dc.get_space("drnas_darts")
    assert space.name == "darts" and tuple(space.cell("normal").ops) == DRNAS_OPS
    assert "none" not in space.cell("reduce").ops
    published = dc.load_published("DrNAS")
    space.validate(published)
    net = space.build_derived(published, C=8, layers=3)
    assert any(isinstance(m, nn.BatchNorm2d) and not m.affine for m in net.modules())  # BN after pooling
    with pytest.raises(ConfigError, match="K=3 does not divide"):
        space.build_supernet(C=8, layers=3, partial_channels=3)
    nb = dc.get_space("drnas_nb201")
    assert nb.name == "nb201" and tuple(nb.cell("cell").ops) == NB201_OPS
    sup = nb.build_supernet(C=8, N=1, partial_channels=4)
    assert all(op.k == 4 and op.op_channels == op.C // 4 for _, _, op in sup.mixed_ops())


def test_zero_weight_ops_are_skipped() -> None:
    net = dc.get_space("drnas_nb201").build_supernet(C=8, N=1, partial_channels=2)
    calls: list[int] = []
    for _, _, edge in net.mixed_ops():
        for k in edge.kept_columns():
            edge.op(k).register_forward_hook(lambda *a, k=k: calls.append(k))
    w = torch.zeros(6, 5)
    w[:, 3] = 1.0  # only nor_conv_3x3 has weight; the mask says every op must run
    w.requires_grad_(True)  # the zero weights need their gradient: zero-weight ops run (forward-only)
    arch = ArchSample({"cell": dc.CellSample(w, torch.ones(6, 5, dtype=torch.bool), w)})
    net(torch.randn(2, 3, 8, 8), arch)
    assert calls and set(calls) == {3}
    net.skip_zero = False
    calls.clear()
    net(torch.randn(2, 3, 8, 8), arch)
    assert set(calls) == {1, 2, 3, 4}


# ------------------------------------------------------------------------------------------ stages
def test_parse_stages_and_errors() -> None:
    assert parse_stages("25:6:7,25:4:4") == (Stage(25, 6, 7), Stage(25, 4, 4))
    assert parse_stages(" 100 ") == (Stage(100, 1, None),)
    assert drnas.format_stages(parse_stages("50:4,50:2:3")) == "50:4,50:2:3"
    assert parse_stages([{"epochs": 2, "k": 2}]) == (Stage(2, 2),)
    for bad, msg in [
        ("25:6:x", "is not EPOCHS"),
        ("25,,25", "expected 'EPOCHS"),
        ("1:2:3:4", "has 4 fields"),
        ("0:1", "epochs must be a positive"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_stages(bad)
    space, task = dc.get_space("drnas_nb201"), ToyTask()
    for stages, msg in [
        ("1:4,2:2", "last 3 epochs but config.epochs is 2"),
        ("1:2,1:4", "must not increase"),
        ("1:4:3,1:2:3", "first stage must keep every op"),
        ("1:4:5,1:2:6", "keeps 6 ops but cell type 'cell' has 5"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            ProgressiveSearcher(space, task, _config(2), stages=stages, supernet_kwargs={"C": 8, "N": 1})
    with pytest.raises(ConfigError, match="no partial-channel supernet"):
        ProgressiveSearcher(dc.get_space("nb201"), task, _config(2), stages="1:2,1:1")
    kw = {"supernet_kwargs": {"C": 8, "N": 1}}
    assert type(drnas.build_searcher(space, task, _config(2), stages=None, **kw)) is Searcher
    built = drnas.build_searcher(space, task, _config(2), stages="1:4,1:2", **kw)
    assert isinstance(built, ProgressiveSearcher) and built.stages == (Stage(1, 4), Stage(1, 2))


def test_pruned_ops_are_never_executed() -> None:
    s = _darts()
    calls: dict[tuple[int, int, int], int] = {}
    for ci, cell in enumerate(s.supernet.cells):
        for e, edge in enumerate(cell.edges):
            for k in edge.kept_columns():

                def hook(*_: Any, key: tuple[int, int, int] = (ci, e, k)) -> None:
                    calls[key] = calls.get(key, 0) + 1

                edge.op(k).register_forward_hook(hook)
    s.train_epoch(_images(1, batch=2), _images(1, seed=1, batch=2))
    assert len(calls) == 3 * 14 * 7  # stage 1: every op of every edge runs
    s.epoch = 1
    calls.clear()
    s.train_epoch(_images(2, batch=2), _images(2, seed=1, batch=2))  # transition, then two steps
    assert s.stage_index == 1 and s.partial_channels == 2
    masks = {
        ct: s.distribution.estimator.mask_of(spec, s.distribution.logits[ct])
        for ct, spec in s.distribution.cells.items()
    }
    for cell in s.supernet.cells:
        mask = masks[cell.cell_type]
        assert mask.sum(-1).tolist() == [4] * 14
        for e, edge in enumerate(cell.edges):
            assert edge.kept_columns() == torch.nonzero(mask[e]).flatten().tolist()
    executed = {key for key, n in calls.items() if n}
    expected = {
        (ci, e, k)
        for ci, cell in enumerate(s.supernet.cells)
        for e in range(14)
        for k in range(7)
        if masks[cell.cell_type][e, k]
    }
    assert executed == expected  # kept ops run (through their old, now widened modules), pruned ones never


def test_masked_ops_are_never_executed_without_module_deletion() -> None:
    """K=1 on the plain NB201 space: pruning is a mask only, the pruned modules stay but never run."""
    s = ProgressiveSearcher(
        dc.get_space("nb201"), ToyTask(), _config(2), stages="1:1:5,1:1:2", supernet_kwargs={"C": 4, "N": 1}
    )
    calls: set[tuple[int, int, int]] = set()
    cells = [c for c in s.supernet.cells if hasattr(c, "edges")]
    s.train_epoch(_images(1), _images(1, seed=1))
    for ci, cell in enumerate(cells):
        for e, edge in enumerate(cell.edges):
            for k in range(edge.num_ops):
                if edge.runnable(k):
                    edge.op(k).register_forward_hook(lambda *a, key=(ci, e, k): calls.add(key))
    s.epoch = 1
    s.train_epoch(_images(2), _images(2, seed=1))
    mask = s.distribution.estimator.mask_of(s.distribution.cells["cell"], s.distribution.logits["cell"])
    assert calls and all(bool(mask[e, k]) for _, e, k in calls)
    assert mask.sum(-1).tolist() == [2] * 6


def test_optimizer_state_survives_a_stage_transition() -> None:
    s = _nb201()
    s.train_epoch(_images(2), _images(2, seed=1))
    s.w_scheduler.step()
    s.epoch = 1
    # reference: the same transition applied to a copy whose weights hold the momentum buffers
    ref = copy.deepcopy(s)
    for p in ref.w_params:
        p.data.copy_(ref.w_optimizer.state[p]["momentum_buffer"])
    old_ids = {id(p) for p in s.w_params}
    old_state = {id(p): s.w_optimizer.state[p]["momentum_buffer"].clone() for p in s.w_params}
    a_state = copy.deepcopy(s.a_optimizer.state_dict())
    lr, last, step = s.w_optimizer.param_groups[0]["lr"], s.w_scheduler.last_epoch, s.global_step
    assert s.sync_stage() and ref.sync_stage()
    assert s.global_step == step and s.w_scheduler.last_epoch == last
    assert s.w_optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    assert s.w_optimizer.param_groups[0]["params"] == [p for p in s.supernet.parameters() if p.requires_grad]
    new_a = s.a_optimizer.state_dict()
    assert new_a["state"][0]["step"] == a_state["state"][0]["step"]
    assert torch.equal(new_a["state"][0]["exp_avg"], a_state["state"][0]["exp_avg"])
    widened = kept = 0
    for p, q in zip(s.w_params, ref.w_params, strict=True):
        buf = s.w_optimizer.state[p]["momentum_buffer"]
        assert buf.shape == p.shape
        assert torch.equal(buf, q.detach())  # buffer == the parameter transform applied to the old buffer
        if id(p) in old_ids:
            kept += 1
            assert torch.equal(buf, old_state[id(p)])
        else:
            widened += 1
    assert widened > 0 and kept > 0
    logs = s.step(*_images(2, seed=2))  # the rebuilt optimiser steps with the carried state
    assert torch.isfinite(torch.tensor(logs["train_loss"]))
    assert logs["stage"] == 1.0 and logs["partial_channels"] == 2.0


def test_alpha_is_frozen_for_the_first_epochs_of_each_stage() -> None:
    s = _nb201("2:4:5,2:2:3", arch_warmup_epochs=1)
    changed = []
    for epoch in range(4):
        s.epoch = epoch
        before = s.distribution.logits["cell"].detach().clone()
        logs = s.train_epoch(_images(1, seed=epoch), _images(1, seed=10 + epoch))
        changed.append(not torch.equal(before, s.distribution.logits["cell"].detach()))
        assert ("val_loss" in logs) == changed[-1]
    assert changed == [False, True, False, True]


def test_state_round_trip_replays_the_structure() -> None:
    s = _darts()
    s.train_epoch(_images(1, batch=2), _images(1, seed=1, batch=2))
    s.epoch = 1
    s.train_epoch(_images(1, seed=2, batch=2), _images(1, seed=3, batch=2))
    state = s.state_dict()
    fresh = _darts()
    fresh.load_state_dict(state)
    assert fresh.stage_index == 1 and fresh.partial_channels == 2
    x = torch.randn(2, 3, 8, 8)
    arch = s.distribution.mode()
    s.supernet.eval()
    fresh.supernet.eval()
    assert torch.equal(s.supernet(x, arch), fresh.supernet(x, arch))
    for p, q in zip(s.w_params, fresh.w_params, strict=True):
        assert torch.equal(
            s.w_optimizer.state[p]["momentum_buffer"], fresh.w_optimizer.state[q]["momentum_buffer"]
        )
    with pytest.raises(CheckpointError, match="saved with stages '1:4:7,1:2:4'"):
        _nb201().load_state_dict(state)
    with pytest.raises(CheckpointError, match="not saved by a ProgressiveSearcher"):
        _nb201().load_state_dict(Searcher.state_dict(s))


# ------------------------------------------------------------------------------------------ presets
def test_presets_reproduce_the_official_defaults() -> None:
    p = drnas.get_preset("darts_cifar")
    cfg = p.search_config()
    assert p.space == "drnas_darts" and dict(p.supernet) == {"C": 36, "layers": 20} and p.batch_size == 64
    assert (cfg.epochs, cfg.w_lr, cfg.w_lr_min, cfg.a_lr, cfg.a_weight_decay, cfg.arch_warmup_epochs) == (
        50,
        0.1,
        0.0,
        6e-4,
        1e-3,
        10,
    )
    assert (cfg.estimator, cfg.order, cfg.step_order, cfg.rule, cfg.grad_clip) == (
        "dirichlet",
        "first",
        "arch_first",
        "topk_edges",
        5.0,
    )
    assert p.stages_text == "25:6:7,25:4:4"
    nb = drnas.get_preset("nb201").search_config()
    assert (nb.epochs, nb.w_lr, nb.w_lr_min, nb.a_lr, nb.arch_warmup_epochs, nb.rule) == (
        100,
        0.025,
        0.001,
        3e-4,
        0,
        "argmax_edge",
    )
    assert drnas.get_preset("nb201").stages == (Stage(100, 1, 5),)
    assert drnas.get_preset("nb201_progressive").stages_text == "50:4:5,50:2:3"
    kl = drnas.get_preset("darts_cifar_kl").search_config()
    assert kl.regularizers == ({"type": "dirichlet_kl", "weight": 1e-3},) and kl.a_weight_decay == 0
    small = drnas.get_preset("nb201_progressive", epochs=10)
    assert small.stages_text == "5:4:5,5:2:3" and small.search_config().arch_warmup_epochs == 1
    with pytest.raises(UnknownNameError, match="valid presets: darts_cifar, "):
        drnas.get_preset("darts")
    s = small.build_searcher(ToyTask(), supernet_kwargs={"C": 8, "N": 1}, config_overrides={"seed": 3})
    assert isinstance(s, ProgressiveSearcher) and s.config.seed == 3 and s.partial_channels == 4


# ------------------------------------------------------------------------------------------ end to end
def _loaders() -> tuple[Any, Any]:
    from datanas_core.runtime import DeterministicLoader

    b = _images(4, seed=7)
    ds = TensorDataset(torch.cat([x for x, _ in b]), torch.cat([y for _, y in b]))
    return (
        DeterministicLoader(Subset(ds, range(8)), 4, seed=0),
        DeterministicLoader(Subset(ds, range(8, 16)), 4, seed=1),
    )


class _Crash:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, searcher: Any, logs: Any) -> None:
        if searcher.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def test_two_stage_search_through_the_runtime_with_report_and_bit_exact_resume(tmp_path: Path) -> None:
    from datanas_core.runtime import run_search

    fast = {"progress": False, "tensorboard": False, "checkpoint_every": 1, "consistency_batches": 1}
    ref = _nb201()
    res = run_search(ref, *_loaders(), run_dir=tmp_path / "ref", config={"stages": "1:4:5,1:2:3"}, **fast)
    assert (tmp_path / "ref" / "report.md").is_file() and (tmp_path / "ref" / "genotype.json").is_file()
    dc.get_space("nb201").validate(res.genotype)  # a plain NB201 genotype
    assert [h["stage"] for h in res.history] == [0.0, 1.0] and ref.global_step == 4
    # crash in stage 2 right after the transition (resume from a stage-1 checkpoint: the transition reruns)
    # and later (resume from a stage-2 checkpoint: the structure is replayed before loading)
    for crash_at in (3, 4):
        d = tmp_path / f"crash{crash_at}"
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_search(_nb201(), *_loaders(), run_dir=d, callbacks=[_Crash(crash_at)], report=False, **fast)
        s = _nb201()
        run_search(s, *_loaders(), run_dir=d, resume=True, report=False, **fast)
        assert s.stage_index == 1 and s.global_step == 4
        ref_state, state = ref.supernet.state_dict(), s.supernet.state_dict()
        assert ref_state.keys() == state.keys()
        for k in ref_state:
            if isinstance(ref_state[k], torch.Tensor):
                assert torch.equal(ref_state[k], state[k]), k
        assert torch.equal(ref.distribution.logits["cell"], s.distribution.logits["cell"])
