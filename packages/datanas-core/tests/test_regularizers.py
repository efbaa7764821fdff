"""Regularisers: values against their definitions, gradients to alpha, and errors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError, UnknownNameError
from datanas_core.genotype import Genotype
from datanas_core.regularizers import (
    REGULARIZERS,
    DirichletKL,
    DistributionConstraint,
    EntropyPenalty,
    ExpectedCost,
    L2Penalty,
    build_regularizer,
)
from datanas_core.space.base import CellSpec, SearchSpace

OPS = ("none", "skip_connect", "conv_3x3", "conv_5x5")
CELLS = {
    "normal": CellSpec.dense("normal", 2, 3, OPS),
    "reduce": CellSpec.dense("reduce", 2, 3, OPS),
}  # 9 x 4


class CostSpace(SearchSpace):
    name = "costed"

    def cells(self) -> Mapping[str, CellSpec]:
        return CELLS

    def build_supernet(self, **hparams: Any) -> nn.Module:
        raise NotImplementedError

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        raise NotImplementedError

    def edge_costs(self, metric: str = "params") -> dict[str, Any]:
        row = torch.tensor([0.0, 0.0, 10.0, 20.0]) * (2 if metric == "flops" else 1)
        return {ct: row.expand(9, 4).clone() for ct in CELLS}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dist(est: object = "egs", seed: int = 0, space: object = None) -> ArchitectureDistribution:
    d = ArchitectureDistribution(space or CELLS, est, seed=seed)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in d.logits.values():
            p.add_(torch.rand(p.shape, generator=_gen(seed + 1)))
    return d


def _grad_norm(d: ArchitectureDistribution, value: torch.Tensor) -> float:
    grads = torch.autograd.grad(value, list(d.logits.values()))
    return float(sum(g.abs().sum() for g in grads))


def _sgd_step(d: ArchitectureDistribution, loss: torch.Tensor, lr: float) -> None:
    params = list(d.parameters())
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.sub_(lr * g)


# ---------------------------------------------------------------- ADC
def test_adc_matches_data_code_form() -> None:
    d = _dist({"type": "egs", "samples": 3})
    arch = d.sample(_gen(2))
    adc = DistributionConstraint()
    probs = d.probs()
    expected = sum(
        float((probs[ct].detach() - arch[ct].code).abs().mean())  # type: ignore[operator]
        for ct in CELLS
    )
    v = adc(d, arch)
    assert v.item() == pytest.approx(expected, rel=1e-6)
    assert adc.weight == 0.1 and adc.weighted(d, arch).item() == pytest.approx(0.1 * expected, rel=1e-6)
    assert _grad_norm(d, v) > 0


def test_adc_is_zero_at_target_equal_probs_and_positive_otherwise() -> None:
    d = _dist()
    probs = {k: v.detach() for k, v in d.probs().items()}
    for distance in ("l1", "l2", "kl"):
        at_probs = DistributionConstraint(distance=distance, target=probs)(d)
        assert at_probs.item() == pytest.approx(0.0, abs=1e-6)
        sampled = DistributionConstraint(distance=distance)(d, d.sample(_gen()))
        assert sampled.item() > 1e-3
        uniform = DistributionConstraint(distance=distance, target="uniform")(d)
        assert uniform.item() > 0
        assert _grad_norm(d, sampled) > 0


def test_adc_pulls_probs_towards_the_code() -> None:
    d = _dist({"type": "egs", "samples": 2})
    arch = d.sample(_gen())
    adc = DistributionConstraint()
    before = adc(d, arch).item()
    for _ in range(20):
        _sgd_step(d, adc(d, arch), lr=1.0)
    assert adc(d, arch).item() < before


def test_adc_normalize_override_and_errors() -> None:
    d = _dist("egs")  # relu probabilities
    arch = d.sample(_gen())
    relu = DistributionConstraint()(d, arch)
    soft = DistributionConstraint(normalize="softmax")(d, arch)
    assert relu.item() != pytest.approx(soft.item())
    with pytest.raises(ConfigError, match="target='sample' needs the ArchSample"):
        DistributionConstraint()(d, None)
    with pytest.raises(ConfigError, match="no code"):
        DistributionConstraint()(_dist("softmax"), _dist("softmax").sample())
    with pytest.raises(ConfigError, match="valid values: l1, l2, kl"):
        DistributionConstraint(distance="l3")
    with pytest.raises(ConfigError, match="valid values: sample, uniform"):
        DistributionConstraint(target="mode")
    with pytest.raises(ConfigError, match="weight"):
        DistributionConstraint(weight=-1)


# ---------------------------------------------------------------- Dirichlet KL
def test_dirichlet_kl_zero_at_anchor_positive_elsewhere() -> None:
    d = ArchitectureDistribution(CELLS, "dirichlet", seed=0)
    with torch.no_grad():
        for p in d.logits.values():
            p.zero_()  # beta = ELU(0) + 1 = 1 = the anchor
    kl = DirichletKL()
    assert kl(d).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        d.logits["normal"].copy_(torch.randn(9, 4, generator=_gen()))
    v = kl(d)
    beta = torch.nn.functional.elu(d.logits["normal"].detach()) + 1
    manual = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(beta), torch.distributions.Dirichlet(torch.ones(9, 4))
    ).sum()
    assert v.item() == pytest.approx(manual.item(), rel=1e-5) and v.item() > 0
    assert _grad_norm(d, v) > 0
    assert DirichletKL(anchor=2.0)(d).item() != pytest.approx(v.item())


def test_dirichlet_kl_needs_dirichlet() -> None:
    with pytest.raises(ConfigError, match="needs a Dirichlet estimator.*'egs'"):
        DirichletKL()(_dist("egs"))
    with pytest.raises(ConfigError, match="anchor"):
        DirichletKL(anchor=0)


# ---------------------------------------------------------------- L2, entropy
def test_l2_and_its_gradient() -> None:
    d = _dist()
    v = L2Penalty()(d)
    assert v.item() == pytest.approx(sum(float((p.detach() ** 2).sum()) for p in d.logits.values()), rel=1e-6)
    v.backward()
    for p in d.logits.values():
        assert torch.allclose(p.grad, 2 * p.detach())  # type: ignore[arg-type]


def test_entropy_penalty_is_mean_edge_entropy() -> None:
    d = _dist("softmax")
    with torch.no_grad():
        for p in d.logits.values():
            p.zero_()
    assert EntropyPenalty()(d).item() == pytest.approx(math.log(4), rel=1e-6)
    d = _dist("softmax")
    v = EntropyPenalty()(d)
    assert v.item() == pytest.approx(d.entropy().item() / 18, rel=1e-5)
    assert _grad_norm(d, v) > 0


# ---------------------------------------------------------------- expected cost
def test_expected_cost_with_explicit_table() -> None:
    d = _dist("softmax")
    costs = {ct: torch.arange(4.0).expand(9, 4) for ct in CELLS}
    probs = d.probs()
    expected = sum(float((probs[ct].detach() * costs[ct]).sum()) for ct in CELLS)
    lin = ExpectedCost(costs=costs)
    assert lin(d).item() == pytest.approx(expected, rel=1e-6)
    assert ExpectedCost(costs=costs, budget=10.0)(d).item() == pytest.approx(expected / 10, rel=1e-6)
    assert ExpectedCost(costs=costs, form="log")(d).item() == pytest.approx(math.log(expected), rel=1e-6)
    under = ExpectedCost(costs=costs, form="hinge", budget=2 * expected)(d)
    over = ExpectedCost(costs=costs, form="hinge", budget=expected / 2)(d)
    assert under.item() == 0.0 and over.item() == pytest.approx(1.0, rel=1e-5)
    assert _grad_norm(d, over) > 0 and _grad_norm(d, lin(d)) > 0


def test_expected_cost_lowers_costly_ops_under_gradient_descent() -> None:
    d = _dist("softmax")
    costs = {ct: torch.tensor([0.0, 0.0, 10.0, 20.0]).expand(9, 4) for ct in CELLS}
    reg = ExpectedCost(costs=costs)
    before = d.probs()["normal"][:, 3].mean().item()
    for _ in range(10):
        _sgd_step(d, reg(d), lr=0.1)
    assert d.probs()["normal"][:, 3].mean().item() < before


def test_expected_cost_from_space_and_from_sample() -> None:
    d = _dist("gdas", space=CostSpace())
    params = ExpectedCost(metric="params")(d)
    flops = ExpectedCost(metric="flops")(d)
    assert flops.item() == pytest.approx(2 * params.item(), rel=1e-6)
    arch = d.sample(_gen())
    sampled = ExpectedCost(use_sample=True)(d, arch)
    manual = sum(float((arch[ct].weights.detach() * CostSpace().edge_costs()[ct]).sum()) for ct in CELLS)
    assert sampled.item() == pytest.approx(manual)
    assert _grad_norm(d, sampled) > 0  # through the straight-through one-hot


def test_expected_cost_space_argument_and_registry_default() -> None:
    d = _dist("softmax")  # built from cell specs: no space attached
    via_arg = ExpectedCost(space=CostSpace())(d)
    via_build = REGULARIZERS.build({"type": "expected_cost"}, space=CostSpace())(d)
    assert via_arg.item() == pytest.approx(via_build.item()) and via_arg.item() > 0


def test_expected_cost_errors() -> None:
    with pytest.raises(ConfigError, match="needs a cost table"):
        ExpectedCost()(_dist())
    with pytest.raises(ConfigError, match="provides no 'params' cost table"):
        ExpectedCost()(_dist(space=_NoCost()))
    with pytest.raises(ConfigError, match="needs a budget"):
        ExpectedCost(form="hinge")
    with pytest.raises(ConfigError, match="valid values: linear, log, hinge"):
        ExpectedCost(form="square")
    with pytest.raises(ConfigError, match="valid values: params, flops"):
        ExpectedCost(metric="latency")
    with pytest.raises(ConfigError, match="needs the current ArchSample"):
        ExpectedCost(costs={ct: torch.ones(9, 4) for ct in CELLS}, use_sample=True)(_dist())
    with pytest.raises(ConfigError, match="no entry for cell type 'reduce'"):
        ExpectedCost(costs={"normal": torch.ones(9, 4)})(_dist())


class _NoCost(CostSpace):
    name = "nocost"

    def edge_costs(self, metric: str = "params") -> dict[str, Any]:
        return SearchSpace.edge_costs(self, metric)


# ---------------------------------------------------------------- registry
def test_registry_and_build() -> None:
    assert {"adc", "dirichlet_kl", "l2", "entropy", "expected_cost"} <= set(REGULARIZERS.names())
    adc = build_regularizer({"type": "adc", "weight": 0.5, "distance": "l2"})
    assert isinstance(adc, DistributionConstraint) and adc.weight == 0.5 and adc.needs_sample
    assert not build_regularizer("l2").needs_sample
    with pytest.raises(UnknownNameError, match=r"adc, dirichlet_kl, .*entropy, expected_cost, l2"):
        build_regularizer("adx")
    with pytest.raises(ConfigError, match="unknown option"):
        build_regularizer({"type": "adc", "wieght": 0.1})
    assert "DistributionConstraint(weight=0.5" in repr(adc)
