"""Estimator invariants: shapes, sums, EGS code law, gradients, reproducibility, errors."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from datanas_core.derive import exact_cover_probability
from datanas_core.errors import ConfigError, NumericalError, UnknownNameError
from datanas_core.estimators import (
    ESTIMATORS,
    DirichletEstimator,
    EGSEstimator,
    Estimator,
    GDASEstimator,
    GumbelFamily,
    build_estimator,
)
from datanas_core.sample import CellSample
from datanas_core.space.base import CellSpec

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
SPEC = CellSpec.dense("normal", 2, 4, DARTS_OPS)  # 14 x 8, the DARTS cell

ALL = [
    "softmax",
    "snas",
    "gdas",
    "egs",
    {"type": "egs", "normalize": "softmax", "samples": 3},
    {"type": "egs", "granularity": "node", "samples": 3},
    {"type": "egs", "granularity": "node", "normalize": "softmax", "samples": 2},
    {"type": "egs", "combine": "prob_or", "samples": 4},
    "dirichlet",
    {"type": "gumbel", "hard": True, "samples": 2, "code_norm": "sum"},
]


def _id(spec: object) -> str:
    return spec if isinstance(spec, str) else "-".join(f"{v}" for v in spec.values())  # type: ignore[union-attr]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(est: Estimator, spec: CellSpec = SPEC, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    a = est.init_logits((spec.num_edges, spec.num_ops), _gen(seed))
    a = a + scale * torch.randn(a.shape, generator=_gen(seed + 100))
    return a.requires_grad_(True)


def _rows_spec(n: int, ops: tuple[str, ...]) -> CellSpec:
    """n independent rows (all the same edge) to draw many edge-level samples in one call."""
    return CellSpec("many", 1, 1, ops, ((0, 1),) * n, (1,))


def _simulate(sample: CellSample, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A stand-in supernet: edge output y_e = sum over computed ops of w f + zero-valued proxies."""
    w, m = sample.weights, sample.mask
    y = (w * f * m).sum(-1)
    if sample.grad_proxy:
        y = y + (w * (~m)).sum(-1)
    return (c * y).sum()


# ---------------------------------------------------------------- invariants
@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_shapes_sums_and_probs(spec: object) -> None:
    est = build_estimator(spec)  # type: ignore[arg-type]
    a = _logits(est)
    s = est.sample(a, SPEC, generator=_gen())
    for t in (s.weights, s.mask, s.probs):
        assert tuple(t.shape) == (14, 8)
    assert s.mask.dtype == torch.bool
    assert torch.allclose(s.probs.sum(-1), torch.ones(14), atol=1e-5)
    assert (s.weights >= 0).all()
    node = getattr(est, "granularity", "edge") == "node"
    non_none = getattr(est, "code_norm", "") == "non_none"
    if non_none:
        sums = s.weights[:, 1:].sum(-1)  # "none" is column 0
        if node:
            node_sums = torch.stack([sums[SPEC.in_edges(n)].sum() for n in SPEC.nodes])
            assert all(abs(v - 1) < 1e-5 or v == 0 for v in node_sums.tolist())
        else:
            assert all(abs(v - 1) < 1e-5 or v == 0 for v in sums.tolist())
    elif node:
        node_sums = torch.stack([s.weights[SPEC.in_edges(n)].sum() for n in SPEC.nodes])
        assert torch.allclose(node_sums, torch.ones(4), atol=1e-5)
    else:
        assert torch.allclose(s.weights.sum(-1), torch.ones(14), atol=1e-5)
    if est.stochastic:
        assert s.code is not None and not s.code.requires_grad
        assert torch.equal(s.code, s.weights.detach())
    else:
        assert s.code is None


@pytest.mark.parametrize("normalize", ["relu", "softmax"])
@pytest.mark.parametrize("m", [1, 2, 4, 7])
def test_egs_codes_are_k_hot_with_k_at_most_m(normalize: str, m: int) -> None:
    est = EGSEstimator(samples=m, normalize=normalize)
    spec = _rows_spec(2000, DARTS_OPS)
    a = est.init_logits((2000, 8), _gen()) + torch.rand(2000, 8, generator=_gen(1))
    w = est.sample(a, spec, generator=_gen(2)).weights.detach()
    k = (w > 0).sum(-1)
    assert int(k.min()) >= 1 and int(k.max()) <= m
    if m > 1:
        assert int(k.max()) > 1  # the ensemble really turns on several ops
    if normalize == "relu":  # active entries all equal 1/k
        assert torch.allclose(w.sum(-1), torch.ones(2000), atol=1e-6)
        assert torch.allclose(w.max(-1).values, 1.0 / k.float(), atol=1e-6)


def _code_frequencies(est: GumbelFamily, p: list[float], n: int, seed: int) -> Counter[tuple[int, ...]]:
    spec = _rows_spec(n, tuple(f"op{i}" for i in range(len(p))))
    if est.normalize == "relu":
        a = torch.tensor(p).expand(n, -1).clone()
    else:
        a = torch.tensor(p).log().expand(n, -1).clone()
    w = est.sample(a, spec, generator=_gen(seed)).weights.detach()
    return Counter(tuple(int(v) for v in row) for row in (w > 0).tolist())


def _check_law(freq: Counter[tuple[int, ...]], p: list[float], m: int, n: int) -> None:
    total = 0.0
    for bits in itertools.product((0, 1), repeat=len(p)):
        if not any(bits):
            assert freq[bits] == 0
            continue
        expected = exact_cover_probability([q for q, b in zip(p, bits, strict=True) if b], m)
        total += expected
        observed = freq[bits] / n
        tol = 5 * math.sqrt(max(expected * (1 - expected), 1e-8) / n) + 1e-3
        assert abs(observed - expected) < tol, (bits, observed, expected)
    assert total == pytest.approx(1.0)


@pytest.mark.parametrize("normalize", ["relu", "softmax"])
def test_egs_follows_or_of_m_categorical_law_symmetric(normalize: str) -> None:
    # The DATA poster: p = [.5, .5], M = 2 -> [1,0] .25, [1,1] .5, [0,1] .25.
    n = 20000
    freq = _code_frequencies(EGSEstimator(samples=2, normalize=normalize), [0.5, 0.5], n, seed=3)
    for code, expected in (((1, 0), 0.25), ((1, 1), 0.5), ((0, 1), 0.25)):
        assert abs(freq[code] / n - expected) < 0.02
    _check_law(freq, [0.5, 0.5], 2, n)


@pytest.mark.parametrize("combine", ["max", "prob_or"])
def test_egs_follows_or_law_asymmetric_m3(combine: str) -> None:
    p, n = [0.6, 0.3, 0.1], 20000
    freq = _code_frequencies(EGSEstimator(samples=3, combine=combine), p, n, seed=4)
    _check_law(freq, p, 3, n)


def test_single_gumbel_sample_follows_categorical() -> None:
    p, n = [0.7, 0.2, 0.1], 20000
    freq = _code_frequencies(EGSEstimator(samples=1), p, n, seed=5)
    _check_law(freq, p, 1, n)


@pytest.mark.parametrize(
    ("granularity", "law"),
    [
        # DATA's gumbel_sample_weight_multi_node: relu(alpha) over the node's flattened logits, jointly
        ("node", [0.6, 0.2, 0.1, 0.1]),
        # datanas variant: each in-edge's probability row divided by the number of in-edges
        ("node_edge_mean", [0.375, 0.125, 0.25, 0.25]),
    ],
)
def test_node_granularity_follows_joint_or_law(granularity: str, law: list[float]) -> None:
    # Many nodes, each with two in-edges over ops (a, b); relu logits (3, 1) and (0.5, 0.5).
    n = 10000
    edges = tuple(e for j in range(2, n + 2) for e in ((0, j), (1, j)))
    spec = CellSpec("node", 2, n, ("a", "b"), edges, (2,))
    est = EGSEstimator(samples=2, granularity=granularity)
    row0, row1 = [3.0, 1.0], [0.5, 0.5]
    a = torch.tensor([row0, row1]).repeat(n, 1)
    w = est.sample(a, spec, generator=_gen(6)).weights.detach()
    codes = (w.view(n, 4) > 0).int()
    freq = Counter(tuple(r) for r in codes.tolist())
    _check_law(freq, law, 2, n)
    sums = w.view(n, 4).sum(-1)
    assert torch.allclose(sums, torch.ones(n), atol=1e-6)


def test_prob_or_has_same_forward_value_but_different_gradient() -> None:
    a1 = _logits(EGSEstimator(samples=4))
    a2 = a1.detach().clone().requires_grad_(True)
    f, c = torch.randn(14, 8, generator=_gen(7)), torch.randn(14, generator=_gen(8))
    s1 = EGSEstimator(samples=4, combine="max").sample(a1, SPEC, generator=_gen(9))
    s2 = EGSEstimator(samples=4, combine="prob_or").sample(a2, SPEC, generator=_gen(9))
    assert torch.equal(s1.weights, s2.weights)
    _simulate(s1, f, c).backward()
    _simulate(s2, f, c).backward()
    assert not torch.allclose(a1.grad, a2.grad)  # type: ignore[arg-type]


def test_softmax_variant_handles_none_only_code_without_blowup() -> None:
    # p(none) ~ 1: the code is [1, 0, ...]; DATA's 1e-9 denominator would scale gradients by 1e9.
    est = EGSEstimator(samples=2, normalize="softmax", tau=1.0)
    a = torch.full((14, 8), -20.0)
    a[:, 0] = 20.0
    a.requires_grad_(True)
    s = est.sample(a, SPEC, generator=_gen())
    assert torch.equal(s.weights.detach()[:, 0], torch.ones(14))
    _simulate(s, torch.randn(14, 8), torch.randn(14)).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().max() < 10  # type: ignore[union-attr]


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("executor", ["exact", "sparse"])
@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_gradients_reach_alpha(spec: object, executor: str) -> None:
    from datanas_core.distribution import apply_executor

    est = build_estimator(spec)  # type: ignore[arg-type]
    a = _logits(est, scale=0.5)
    s = apply_executor(est.sample(a, SPEC, generator=_gen(1)), executor)
    _simulate(s, torch.randn(14, 8, generator=_gen(2)), torch.randn(14, generator=_gen(3))).backward()
    g = a.grad
    assert g is not None and torch.isfinite(g).all()
    assert (g.abs() > 0).float().mean() > 0.5, g  # most logits get a signal


def test_gdas_native_mask_is_one_hot_with_proxies() -> None:
    est = GDASEstimator()
    s = est.sample(_logits(est), SPEC, generator=_gen())
    assert s.grad_proxy
    assert torch.equal(s.mask.sum(-1), torch.ones(14, dtype=torch.long))
    assert torch.equal(s.mask, s.weights.detach() != 0)
    assert torch.equal(s.weights.detach(), s.mask.float())  # exactly one-hot in value
    assert est.default_executor == "sparse" and EGSEstimator().default_executor == "exact"


def test_gdas_resamples_and_stays_finite_at_low_temperature() -> None:
    est = GDASEstimator(tau=0.01)
    a = torch.randn(14, 8) * 30
    s = est.sample(a, SPEC, generator=_gen())
    assert torch.isfinite(s.weights).all()


# ---------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("spec", [s for s in ALL if s != "softmax"], ids=_id)
def test_sampling_reproducible_from_generator(spec: object) -> None:
    est = build_estimator(spec)  # type: ignore[arg-type]
    a = _logits(est, scale=0.1)
    w1 = est.sample(a, SPEC, generator=_gen(11)).weights
    w2 = est.sample(a, SPEC, generator=_gen(11)).weights
    w3 = est.sample(a, SPEC, generator=_gen(12)).weights
    assert torch.equal(w1, w2)
    assert not torch.equal(w1, w3)


def test_dirichlet_leaves_global_rng_untouched() -> None:
    est = DirichletEstimator()
    a = _logits(est)
    state = torch.get_rng_state()
    est.sample(a, SPEC, generator=_gen())
    assert torch.equal(state, torch.get_rng_state())


def test_none_generator_uses_global_rng() -> None:
    est = EGSEstimator()
    a = _logits(est)
    torch.manual_seed(0)
    w1 = est.sample(a, SPEC).weights
    torch.manual_seed(0)
    assert torch.equal(w1, est.sample(a, SPEC).weights)


# ---------------------------------------------------------------- Dirichlet
def test_dirichlet_samples_on_simplex_with_pathwise_gradient() -> None:
    est = DirichletEstimator()
    a = _logits(est)
    s = est.sample(a, SPEC, generator=_gen())
    assert (s.weights > 0).all() and torch.allclose(s.weights.sum(-1), torch.ones(14), atol=1e-5)
    (s.weights * torch.randn(14, 8)).sum().backward()
    assert a.grad is not None and (a.grad != 0).all()
    beta = est.concentration(a.detach())
    assert torch.allclose(beta, torch.nn.functional.elu(a.detach()) + 1)


def test_dirichlet_mean_concentrates_with_large_beta() -> None:
    est = DirichletEstimator(probs_view="mean")
    a = torch.tensor([[50.0, 10.0, 1.0]]).expand(4000, 3).clone()
    spec = _rows_spec(4000, ("a", "b", "c"))
    w = est.sample(a, spec, generator=_gen()).weights
    target = est.probs(a, spec)[0]
    assert torch.allclose(w.mean(0), target, atol=0.01)
    assert torch.allclose(target, torch.tensor([51.0, 11.0, 2.0]) / 64)


def test_dirichlet_pruning_mask() -> None:
    est = DirichletEstimator()
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[:, :4] = False
    est.set_mask("normal", mask)
    a = _logits(est)
    s = est.sample(a, SPEC, generator=_gen())
    assert torch.equal(s.weights.detach()[:, :4], torch.zeros(14, 4))
    assert torch.allclose(s.weights.sum(-1), torch.ones(14), atol=1e-5)
    assert torch.equal(s.mask, mask)
    assert torch.equal(est.probs(a.detach(), SPEC)[:, :4], torch.zeros(14, 4))
    other = CellSpec.dense("reduce", 2, 4, DARTS_OPS)
    assert (est.sample(a, other, generator=_gen()).weights > 0).all()  # masks are per cell type
    with pytest.raises(ConfigError, match="keeps no op"):
        est.set_mask("normal", torch.zeros(14, 8, dtype=torch.bool))


def test_gumbel_masks_never_sample_pruned_ops() -> None:
    est = EGSEstimator(samples=4)
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[:, 5:] = False
    est.set_mask("normal", mask)
    w = est.sample(_logits(est), SPEC, generator=_gen()).weights
    assert torch.equal(w.detach()[:, 5:], torch.zeros(14, 3))


@pytest.mark.parametrize("normalize", ["relu", "softmax"])
def test_a_one_op_row_has_probability_one_and_no_gradient_whatever_its_logit(normalize: str) -> None:
    # a progressive decision is a one-op mask: Adam must not be able to move the edge off its op (relu EGS
    # used to pass relu(a) / (relu(a) + 1e-7), a gradient Adam scales up; below 0 the edge vanished)
    est = EGSEstimator(samples=4, normalize=normalize)
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[3] = False
    mask[3, 5] = True
    est.set_mask("normal", mask)
    a = _logits(est).detach()
    a[3, 5] = -0.25  # drifted below 0
    a.requires_grad_(True)
    p = est.probs(a, SPEC)
    assert torch.equal(p[3].detach(), torch.nn.functional.one_hot(torch.tensor(5), 8).to(p.dtype))
    (p * torch.randn(14, 8, generator=_gen())).sum().backward()
    assert a.grad is not None and torch.equal(a.grad[3], torch.zeros(8))
    assert a.grad[[0, 1, 2, 4]].abs().sum() > 0  # the other rows still learn
    if normalize == "relu":  # rows that keep several ops: DATA's normalisation, unchanged
        r = torch.relu(a.detach()[0])
        assert torch.equal(p[0].detach(), r / (r.sum() + 1e-7))
    w = est.sample(a, SPEC, generator=_gen()).weights.detach()
    assert torch.equal(w[3], torch.nn.functional.one_hot(torch.tensor(5), 8).to(w.dtype))


# ---------------------------------------------------------------- state
def test_initialisations_follow_the_methods() -> None:
    shape = (200, 50)
    relu = EGSEstimator().init_logits(shape, _gen())
    assert abs(relu.mean().item() - 1) < 1e-4 and abs(relu.std().item() - 1e-3) < 1e-4
    soft = EGSEstimator(normalize="softmax").init_logits(shape, _gen())
    assert abs(soft.mean().item()) < 1e-4
    snas = build_estimator("snas").init_logits(shape, _gen())
    assert abs(snas.mean().item() - 1) < 1e-3 and abs(snas.std().item() - 0.01) < 1e-3
    darts = build_estimator("softmax").init_logits(shape, _gen())
    assert abs(darts.std().item() - 1e-3) < 1e-4
    assert torch.equal(darts, build_estimator("softmax").init_logits(shape, _gen()))


def test_temperature_schedules_and_state_round_trip() -> None:
    egs = EGSEstimator()
    egs.set_epoch(0, 100)
    assert egs.temperature == 5.0
    egs.set_epoch(99, 100)
    assert egs.temperature == pytest.approx(1.0)
    assert EGSEstimator(tau=1.0).temperature == 1.0  # the released DATA behaviour
    gdas = GDASEstimator()
    gdas.set_epoch(249, 250)
    assert gdas.temperature == pytest.approx(0.1)
    snas = build_estimator("snas")
    snas.set_epoch(149, 150)
    assert snas.temperature == pytest.approx(0.03)
    grow = EGSEstimator(samples="step:2,4:0.5")
    grow.set_epoch(7, 10)
    assert grow.samples == 4
    state = grow.state_dict()
    fresh = EGSEstimator(samples="step:2,4:0.5")
    assert fresh.samples == 2
    fresh.load_state_dict(state)
    assert (fresh.samples, fresh.temperature) == (4, grow.temperature)


def test_epoch_state_override_and_tau_changes_soft_samples_only() -> None:
    snas = build_estimator("snas")
    a = _logits(snas)
    hot = snas.sample(a, SPEC, generator=_gen(), epoch_state={"tau": 10.0}).weights
    cold = snas.sample(a, SPEC, generator=_gen(), epoch_state={"tau": 0.05}).weights
    assert hot.max() < cold.max()
    egs = EGSEstimator(samples=2)
    w1 = egs.sample(a, SPEC, generator=_gen(), epoch_state={"tau": 5.0}).weights
    w2 = egs.sample(a, SPEC, generator=_gen(), epoch_state={"tau": 1.0}).weights
    assert torch.equal(w1, w2)  # tau only shapes the straight-through gradient of hard samples
    with pytest.raises(ConfigError, match="> 0"):
        egs.sample(a, SPEC, generator=_gen(), epoch_state={"tau": 0.0})
    with pytest.raises(ConfigError, match=">= 1"):
        egs.sample(a, SPEC, generator=_gen(), epoch_state={"samples": 0})


def test_m_alias_and_config_round_trip() -> None:
    assert EGSEstimator(M=5).samples == 5
    assert build_estimator({"type": "egs", "M": 3}).samples == 3
    with pytest.raises(ConfigError, match="alias"):
        EGSEstimator(samples=2, M=3)
    for spec in ALL:
        est = build_estimator(spec)  # type: ignore[arg-type]
        again = build_estimator(est.config())
        assert type(again) is type(est) and again.config() == est.config()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [{"samples": 0}, {"M": 0}, {"samples": -1}, {"samples": "linear:3:0"}])
def test_bad_ensemble_size(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="ensemble size M must be >= 1"):
        EGSEstimator(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["softmax", "snas", "gdas", "egs"])
@pytest.mark.parametrize("tau", [0, -1.0, "linear:1:0"])
def test_bad_temperature(name: str, tau: object) -> None:
    with pytest.raises(ConfigError, match="tau must be > 0"):
        build_estimator({"type": name, "tau": tau})


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_nan_logits_raise_numerical_error_naming_cell(spec: object) -> None:
    est = build_estimator(spec)  # type: ignore[arg-type]
    a = _logits(est).detach()
    a[3, 2] = float("nan")
    with pytest.raises(NumericalError, match=r"'normal'.*normal/1->3"):
        est.sample(a, SPEC, generator=_gen())


def test_unknown_names_list_valid_values() -> None:
    with pytest.raises(UnknownNameError, match=r"dirichlet, .*egs, .*gdas, gumbel, snas, softmax") as info:
        build_estimator("egz")
    assert "Did you mean 'egs'" in str(info.value)
    with pytest.raises(ConfigError, match="valid values: softmax, relu"):
        EGSEstimator(normalize="sigmoid")
    with pytest.raises(ConfigError, match="valid values: edge, node"):
        EGSEstimator(granularity="cell")
    with pytest.raises(ConfigError, match="valid values: max, prob_or"):
        EGSEstimator(combine="sum")
    with pytest.raises(ConfigError, match="unknown option"):
        build_estimator({"type": "egs", "sample": 4})
    assert {"softmax", "snas", "gdas", "egs", "dirichlet", "gumbel"} <= set(ESTIMATORS.names())


def test_wrong_logit_shape() -> None:
    with pytest.raises(ConfigError, match=r"\[14, 8\]"):
        EGSEstimator().sample(torch.zeros(14, 7), SPEC)


@pytest.mark.parametrize("granularity", ["edge", "node"])
def test_sample_is_vectorised(granularity: str) -> None:
    """No Python loop over edges: sampling 20k rows makes exactly as many torch calls as 14 rows."""
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.n += 1
            return func(*args, **(kwargs or {}))

    est = EGSEstimator(samples=4, granularity=granularity)

    def n_calls(spec: CellSpec) -> int:
        a = est.init_logits((spec.num_edges, spec.num_ops), _gen())
        est.sample(a, spec, generator=_gen())  # warm the per-spec index caches
        with Count() as c:
            est.sample(a, spec, generator=_gen())
        return c.n

    big = CellSpec.dense("big", 2, 40, DARTS_OPS)  # 860 edges
    small_calls, big_calls = n_calls(SPEC), n_calls(big)
    assert small_calls == big_calls, (small_calls, big_calls)
    assert small_calls < 80
