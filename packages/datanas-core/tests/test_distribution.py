"""ArchitectureDistribution: parameters, sampling, executors, views and state round trips."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from datanas_core.distribution import ArchitectureDistribution, apply_executor
from datanas_core.errors import CheckpointError, ConfigError, UnknownNameError
from datanas_core.estimators import EGSEstimator
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.space.base import CellSpec, SearchSpace

OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
ESTIMATORS = [
    "softmax",
    "snas",
    "gdas",
    "egs",
    {"type": "egs", "normalize": "softmax", "samples": 4},
    "dirichlet",
]


class FakeSpace(SearchSpace):
    """DARTS-shaped cells without networks."""

    name = "fake"

    def cells(self) -> Mapping[str, CellSpec]:
        return {
            "normal": CellSpec.dense("normal", 2, 4, OPS),
            "reduce": CellSpec.dense("reduce", 2, 4, OPS, reduction=True),
        }

    def build_supernet(self, **hparams: Any) -> nn.Module:
        raise NotImplementedError

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        raise NotImplementedError


def _id(spec: object) -> str:
    return spec if isinstance(spec, str) else "-".join(f"{v}" for v in spec.values())  # type: ignore[union-attr]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _forward(arch: ArchSample, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Stand-in supernet: every edge output is sum_k w_k f_k over computed ops, plus zero-valued proxies."""
    out = []
    for ct, s in arch.items():
        f = feats[ct]
        y = (s.weights * torch.where(s.mask, f, torch.zeros_like(f))).sum(-1)
        if s.grad_proxy:
            y = y + (s.weights * (~s.mask)).sum(-1)
        out.append(y)
    return torch.cat(out)


def _feats(seed: int = 5) -> dict[str, torch.Tensor]:
    return {ct: torch.randn(14, 8, generator=_gen(seed + i)) for i, ct in enumerate(("normal", "reduce"))}


def test_parameters_and_construction_forms() -> None:
    space = FakeSpace()
    d = ArchitectureDistribution(space, "egs", seed=0)
    assert set(d.logits) == {"normal", "reduce"}
    assert all(tuple(p.shape) == (14, 8) for p in d.logits.values())
    assert d.arch_parameters() == list(d.parameters()) and len(d.arch_parameters()) == 2
    assert d.space is space and d.space_name == "fake"
    by_list = ArchitectureDistribution(list(space.cells().values()), EGSEstimator(samples=3), seed=0)
    by_map = ArchitectureDistribution(space.cells(), {"type": "egs", "samples": 3}, seed=0)
    assert by_list.samples == by_map.samples == 3
    for ct in ("normal", "reduce"):  # same seed -> same init, whatever the form
        assert torch.equal(by_list.logits[ct], by_map.logits[ct])
        assert torch.equal(by_list.logits[ct], d.logits[ct])
    other = ArchitectureDistribution(space, "egs", seed=1)
    assert not torch.equal(other.logits["normal"], d.logits["normal"])


@pytest.mark.parametrize("est", ESTIMATORS, ids=_id)
def test_sample_one_per_cell_type(est: object) -> None:
    d = ArchitectureDistribution(FakeSpace(), est, seed=0)  # type: ignore[arg-type]
    arch = d.sample(_gen())
    assert isinstance(arch, ArchSample) and set(arch) == {"normal", "reduce"}
    assert arch.hard == (d.estimator.name in ("gdas", "egs"))
    for s in arch.values():
        assert tuple(s.weights.shape) == (14, 8) and s.weights.requires_grad


@pytest.mark.parametrize("est", ESTIMATORS, ids=_id)
def test_exact_and_sparse_same_forward_values(est: object) -> None:
    exact = ArchitectureDistribution(FakeSpace(), est, "exact", seed=0)  # type: ignore[arg-type]
    sparse = ArchitectureDistribution(FakeSpace(), est, "sparse", seed=0)  # type: ignore[arg-type]
    a, b = exact.sample(_gen(3)), sparse.sample(_gen(3))
    feats = _feats()
    y_exact, y_sparse = _forward(a, feats), _forward(b, feats)
    assert torch.equal(y_exact, y_sparse)
    for ct in a:
        assert a[ct].mask.all() and not a[ct].grad_proxy
        assert b[ct].grad_proxy and torch.equal(b[ct].mask, b[ct].weights.detach() != 0)
    y_exact.sum().backward()
    y_sparse.sum().backward()
    for ct in ("normal", "reduce"):
        ge, gs = exact.logits[ct].grad, sparse.logits[ct].grad
        assert ge is not None and gs is not None and torch.isfinite(ge).all() and torch.isfinite(gs).all()
        if exact.estimator.name in ("softmax", "snas", "dirichlet"):
            assert torch.allclose(ge, gs)  # no exact zeros: both executors compute every op
        else:
            assert not torch.allclose(ge, gs)  # hard samples: proxies replace <dL/dy, o_k>


def test_executor_defaults_follow_estimator() -> None:
    assert ArchitectureDistribution(FakeSpace(), "gdas").executor == "sparse"
    assert ArchitectureDistribution(FakeSpace(), "egs").executor == "exact"
    gdas_exact = ArchitectureDistribution(FakeSpace(), "gdas", "exact", seed=0)
    assert gdas_exact.sample(_gen())["normal"].mask.all()
    gdas = ArchitectureDistribution(FakeSpace(), "gdas", seed=0).sample(_gen())["normal"]
    assert torch.equal(gdas.mask.sum(-1), torch.ones(14, dtype=torch.long))


def test_apply_executor_respects_pruning_mask() -> None:
    d = ArchitectureDistribution(FakeSpace(), "dirichlet", seed=0)
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[:, :3] = False
    d.set_mask("normal", mask)
    s = d.sample(_gen())["normal"]
    assert torch.equal(s.mask, mask)  # pruned ops are not computed even by the exact executor
    assert torch.equal(apply_executor(s, "sparse", mask).mask, mask & (s.weights.detach() != 0))
    with pytest.raises(ConfigError, match="valid executors: exact, sparse"):
        apply_executor(s, "dense")


def test_sample_reproducible_and_generator_independent_of_global_rng() -> None:
    d = ArchitectureDistribution(FakeSpace(), {"type": "egs", "samples": 3}, seed=0)
    a = d.sample(_gen(7))
    torch.manual_seed(123)
    b = d.sample(_gen(7))
    c = d.sample(_gen(8))
    for ct in a:
        assert torch.equal(a[ct].weights, b[ct].weights)
    assert any(not torch.equal(a[ct].weights, c[ct].weights) for ct in a)


def test_mode_is_probs() -> None:
    d = ArchitectureDistribution(FakeSpace(), "egs", seed=0)
    with torch.no_grad():
        d.logits["normal"].add_(torch.rand(14, 8, generator=_gen()))
    m = d.mode()
    probs = d.probs()
    assert not m.hard
    for ct in m:
        assert torch.allclose(m[ct].weights, probs[ct])
        assert m[ct].weights.requires_grad


def test_entropy_matches_definition() -> None:
    d = ArchitectureDistribution(FakeSpace(), "softmax", seed=0)
    with torch.no_grad():
        for p in d.logits.values():
            p.zero_()
    assert d.entropy().item() == pytest.approx(2 * 14 * math.log(8), rel=1e-5)
    with torch.no_grad():
        d.logits["normal"].copy_(torch.randn(14, 8, generator=_gen()))
    expected = sum(
        float(-(p * p.log()).sum()) for p in (torch.softmax(d.logits[c].detach(), -1) for c in d.logits)
    )
    h = d.entropy()
    assert h.item() == pytest.approx(expected, rel=1e-5)
    h.backward()
    assert d.logits["normal"].grad is not None


def test_edge_views_and_table() -> None:
    d = ArchitectureDistribution(FakeSpace(), "egs", seed=0)
    el = d.edge_logits()
    assert len(el) == 28
    assert list(el)[:3] == ["normal/0->2", "normal/1->2", "normal/0->3"]
    assert "reduce/4->5" in el
    assert torch.equal(el["normal/1->3"], d.logits["normal"][3])
    el["normal/1->3"].sum().backward()
    assert d.logits["normal"].grad[3].abs().sum() > 0  # type: ignore[index]
    assert d.logits["normal"].grad[2].abs().sum() == 0  # type: ignore[index]
    ep = d.edge_probs()
    assert torch.allclose(ep["reduce/0->2"], d.probs()["reduce"][0])
    table = d.to_table()
    assert "| edge | none | max_pool_3x3" in table and "normal/4->5" in table and "**reduce**" in table
    assert table.count("\n|") == 2 * (14 + 2)


def test_set_epoch_and_temperature() -> None:
    d = ArchitectureDistribution(FakeSpace(), "gdas")
    d.set_epoch(0, 250)
    assert d.temperature == 10.0
    d.set_epoch(249, 250)
    assert d.temperature == pytest.approx(0.1)
    assert d.sample(_gen())["normal"].temperature == pytest.approx(0.1)


def test_state_dict_round_trip_including_estimator_state() -> None:
    d = ArchitectureDistribution(FakeSpace(), {"type": "egs", "samples": "step:2,4:0.5"}, seed=0)
    d.set_epoch(7, 10)
    with torch.no_grad():
        d.logits["reduce"].add_(1.0)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = ArchitectureDistribution(FakeSpace(), {"type": "egs", "samples": "step:2,4:0.5"}, seed=1)
    assert fresh.samples == 2
    fresh.load_state_dict(state)
    assert (fresh.samples, fresh.temperature) == (4, d.temperature)
    for ct in d.logits:
        assert torch.equal(fresh.logits[ct], d.logits[ct])
    assert torch.equal(fresh.sample(_gen(1))["normal"].weights, d.sample(_gen(1))["normal"].weights)


def test_state_dict_keeps_masks_and_rejects_other_estimator() -> None:
    d = ArchitectureDistribution(FakeSpace(), "dirichlet", seed=0)
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[:, 0] = False
    d.set_mask("reduce", mask)
    fresh = ArchitectureDistribution(FakeSpace(), "dirichlet", seed=0)
    fresh.load_state_dict(d.state_dict())
    assert torch.equal(fresh.sample(_gen())["reduce"].mask, mask)
    with pytest.raises(CheckpointError, match="'dirichlet'.*'egs'"):
        ArchitectureDistribution(FakeSpace(), "egs").load_state_dict(d.state_dict())


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="valid executors: exact, sparse"):
        ArchitectureDistribution(FakeSpace(), "egs", "dense")
    with pytest.raises(UnknownNameError, match="valid estimator names"):
        ArchitectureDistribution(FakeSpace(), "darts")
    with pytest.raises(ConfigError, match="'.'"):
        ArchitectureDistribution([CellSpec.dense("a.b", 1, 2, OPS)], "egs")
    with pytest.raises(ConfigError, match="SearchSpace or CellSpecs"):
        ArchitectureDistribution(42, "egs")  # type: ignore[arg-type]
    d = ArchitectureDistribution(FakeSpace(), "dirichlet")
    with pytest.raises(ConfigError, match="cell types: normal, reduce"):
        d.set_mask("cell", torch.ones(14, 8, dtype=torch.bool))
    with pytest.raises(ConfigError, match=r"\[14, 8\]"):
        d.set_mask("normal", torch.ones(14, 7, dtype=torch.bool))


def test_distribution_config_is_informative() -> None:
    cfg = ArchitectureDistribution(FakeSpace(), {"type": "egs", "samples": 4}).config()
    assert cfg["space"] == "fake" and cfg["executor"] == "exact"
    assert cfg["estimator"]["type"] == "egs" and cfg["estimator"]["samples"] == 4


def test_no_arch_params_in_sample_graph_leaves_other_than_logits() -> None:
    d = ArchitectureDistribution(FakeSpace(), "egs", seed=0)
    loss = _forward(d.sample(_gen()), _feats()).sum()
    grads = torch.autograd.grad(loss, list(d.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------- with the real spaces
def _real_space(name: str) -> SearchSpace:
    if name == "nb201":
        mod = pytest.importorskip("datanas_core.space.nb201")
        return mod.NB201Space()
    mod = pytest.importorskip("datanas_core.space.darts")
    return mod.DartsSpace(extended=name == "darts_ext")


def _supernet(space: SearchSpace) -> nn.Module:
    if space.name == "nb201":
        return space.build_supernet(C=4, N=1)  # type: ignore[call-arg]
    return space.build_supernet(C=4, layers=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("space_name", "est"),
    [("darts", "gdas"), ("darts", {"type": "egs", "samples": 2}), ("nb201", "gdas"), ("nb201", "egs")],
    ids=lambda v: _id(v),
)
def test_real_supernet_exact_and_sparse_agree(space_name: str, est: object, one_thread: None) -> None:
    space = _real_space(space_name)
    net = _supernet(space)
    x = torch.randn(2, 3, 8, 8, generator=_gen(0))
    outs, grads = [], []
    for executor in ("exact", "sparse"):
        d = ArchitectureDistribution(space, est, executor, seed=0)  # type: ignore[arg-type]
        arch = d.sample(_gen(1))
        y = net(x, arch)
        y = y[0] if isinstance(y, tuple) else y
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append({ct: p.grad.clone() for ct, p in d.logits.items()})  # type: ignore[union-attr]
    assert torch.equal(outs[0], outs[1])  # bit-identical: zero weights multiply exactly
    for ct in grads[0]:
        assert torch.isfinite(grads[0][ct]).all() and torch.isfinite(grads[1][ct]).all()
        assert grads[0][ct].abs().sum() > 0 and grads[1][ct].abs().sum() > 0


@pytest.mark.parametrize(
    ("space_name", "rule"),
    [
        ("darts", "topk_edges"),
        ("darts", "topk_pairs"),
        ("darts_ext", "data"),
        ("darts_ext", "threshold"),
        ("nb201", "argmax_edge"),
    ],
)
def test_derived_genotypes_validate_in_real_spaces(space_name: str, rule: str) -> None:
    from datanas_core.derive import derive

    space = _real_space(space_name)
    d = ArchitectureDistribution(space, {"type": "egs", "samples": 4}, seed=0)
    with torch.no_grad():
        for p in d.logits.values():
            p.add_(torch.rand(p.shape, generator=_gen(2)))
    g = derive(d, space, rule)
    space.validate(g)
    assert g.space == space.name


def test_expected_cost_with_real_space_table() -> None:
    from datanas_core.regularizers import ExpectedCost

    space = _real_space("darts")
    d = ArchitectureDistribution(space, "softmax", seed=0)
    v = ExpectedCost(metric="params")(d)
    costs = space.edge_costs("params")
    manual = sum(float((d.probs()[ct].detach() * costs[ct]).sum()) for ct in costs)
    assert v.item() == pytest.approx(manual, rel=1e-5) and v.item() > 0
