"""The exact executor's forward-only path for zero-weight ops gives the plain path's gradients (issue 17).

Every test compares, in the same run and on the same supernet, the lean exact path against the plain
reference path (``ArchSample.plain_exact()``: every active op in the autograd graph), in float64.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datanas_core.distribution import ArchitectureDistribution
from datanas_core.ops import AvgPool3x3, MaxPool3x3
from datanas_core.sample import ArchSample
from datanas_core.space.base import SPACES
from datanas_core.space.mixed import MixedOp, forward_only_blocker, zero_weight_terms

TOL = 1e-10

SPACE_CASES = [
    ("nb201", {"C": 4, "N": 1}),
    ("darts", {"C": 4, "layers": 3}),
    ("darts_ext", {"C": 4, "layers": 3}),
    ("entrannas_darts", {"C": 4, "layers": 3}),
    ("entrannas_nb201", {"C": 4, "N": 1}),
    ("drnas_darts", {"C": 4, "layers": 3, "partial_channels": 2, "skip_zero": False}),
    ("drnas_nb201", {"C": 4, "N": 1, "partial_channels": 2, "skip_zero": False}),
]
ESTIMATORS = [
    {"type": "egs", "samples": 2},
    {"type": "egs", "samples": 1},
    "softmax",
    "dirichlet",
    "snas",
]


def _setup(space_name: str, kwargs: dict[str, Any], estimator: Any, seed: int = 0) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    space = SPACES.build(space_name)
    net = space.build_supernet(**kwargs).double()
    dist = ArchitectureDistribution(space, estimator, seed=seed, dtype=torch.float64)
    return net, dist


def _grads(net: nn.Module, dist: nn.Module, arch: ArchSample, x: torch.Tensor, y: torch.Tensor) -> list[Any]:
    params = list(net.parameters()) + list(dist.parameters())
    loss = F.cross_entropy(net(x, arch), y)
    return list(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True))


def _assert_same(ref: list[Any], new: list[Any]) -> int:
    """Every gradient equal (relative error <= TOL), ``None`` exactly where the reference has ``None``;
    returns how many gradients were compared."""
    assert len(ref) == len(new)
    n = 0
    for i, (a, b) in enumerate(zip(ref, new, strict=True)):
        assert (a is None) == (b is None), f"gradient {i}: reference {a is None}, lean {b is None}"
        if a is None:
            continue
        scale = a.abs().max().item()
        err = (a - b).abs().max().item()
        assert err <= TOL * max(scale, 1e-300) or err == 0.0, f"gradient {i}: rel. error {err / scale:.3g}"
        n += 1
    return n


def _data(n: int = 2, hw: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 3, hw, hw, generator=g, dtype=torch.float64), torch.randint(
        0, 10, (n,), generator=g
    )


@pytest.mark.parametrize(("space_name", "kwargs"), SPACE_CASES, ids=[c[0] for c in SPACE_CASES])
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=["egs2", "egs1", "softmax", "dirichlet", "snas"])
def test_lean_exact_gradients_equal_plain(space_name: str, kwargs: dict[str, Any], estimator: Any) -> None:
    net, dist = _setup(space_name, kwargs, estimator)
    x, y = _data()
    arch = dist.sample(torch.Generator().manual_seed(3))
    ref = _grads(net, dist, arch.plain_exact(), x, y)
    new = _grads(net, dist, arch, x, y)
    assert _assert_same(ref, new) > 0
    # the architecture gradient is really there (not trivially equal): some logit gradient is non-zero
    assert any(g is not None and g.abs().sum() > 0 for g in ref[-len(list(dist.parameters())) :])


def _count_graph_runs(net: nn.Module) -> tuple[dict[str, int], list[Any]]:
    """Per op class, how many op outputs were built with / without an autograd graph."""
    counts = {"graph": 0, "nograd": 0}
    handles = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        counts["graph" if out.requires_grad else "nograd"] += 1

    for m in net.modules():
        if isinstance(m, MixedOp):
            for op in m.ops:
                if not isinstance(op, nn.Identity):  # returns its input: no output of its own
                    handles.append(op.register_forward_hook(hook))
    return counts, handles


def test_zero_weight_ops_run_forward_only_and_not_at_all_without_arch_grad() -> None:
    net, dist = _setup("nb201", {"C": 4, "N": 1}, {"type": "egs", "samples": 1})
    x, y = _data()
    arch = dist.sample(torch.Generator().manual_seed(3))
    w = arch["cell"].weights.detach()[:, 2:]  # ops with a computation (not none, not the identity skip)
    nonzero = int((w != 0).sum().item())
    zero = int((w == 0).sum().item())
    assert zero > 0 and nonzero > 0
    counts, handles = _count_graph_runs(net)
    net(x, arch)
    assert counts == {"graph": 3 * nonzero, "nograd": 3 * zero}  # 3 searchable cells with N=1
    counts.update(graph=0, nograd=0)
    net(x, arch.plain_exact())
    assert counts == {"graph": 3 * (nonzero + zero), "nograd": 0}
    counts.update(graph=0, nograd=0)
    net(x, arch.detach())  # weight step: no architecture gradient, zero-weight ops skipped
    assert counts == {"graph": 3 * nonzero, "nograd": 0}
    for h in handles:
        h.remove()


def test_weight_step_on_detached_sample_gives_plain_weight_gradients() -> None:
    """Skipped zero-weight ops still give their parameters exact-zero gradients (not None), as before."""
    net, dist = _setup("darts", {"C": 4, "layers": 3}, {"type": "egs", "samples": 2})
    x, y = _data()
    arch = dist.sample(torch.Generator().manual_seed(5)).detach()
    params = list(net.parameters())

    def grads(a: ArchSample) -> list[Any]:
        return list(torch.autograd.grad(F.cross_entropy(net(x, a), y), params, allow_unused=True))

    ref = grads(arch.plain_exact())
    new = grads(arch)
    _assert_same(ref, new)
    assert any(g is not None and g.abs().sum() == 0 for g in new)  # zero-weight ops' parameters


def test_searcher_steps_match_plain_path() -> None:
    """Two full search steps (weight + architecture, SGD with momentum and weight decay) end in the same
    parameters on the lean and the plain exact path."""
    from datanas_core.search import SearchConfig, Searcher

    class Task:
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            return F.cross_entropy(model(batch[0], arch), batch[1])

    class PlainTask(Task):
        def loss(self, model: Any, batch: Any, arch: Any) -> Any:
            return super().loss(model, batch, arch.plain_exact())

    states = []
    for task in (PlainTask(), Task()):
        torch.manual_seed(0)
        cfg = SearchConfig(epochs=1, estimator="egs", estimator_options={"samples": 2}, executor="exact")
        s = Searcher(SPACES.build("nb201"), task, cfg, supernet_kwargs={"C": 4, "N": 1})
        x, y = _data(4)
        for _ in range(2):
            s.step((x.float(), y), (x.float(), y))
        states.append([p.detach().clone() for p in [*s.supernet.parameters(), *s.distribution.parameters()]])
    for a, b in zip(*states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _NoForwardOnly(nn.Module):
    supports_forward_only = False

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_op_without_forward_only_path_falls_back_with_a_logged_reason(caplog: Any) -> None:
    torch.manual_seed(0)
    m = MixedOp([("a", nn.Conv2d(2, 2, 3, padding=1, bias=False)), ("b", _NoForwardOnly())], C_out=2).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    params = [x, w, *m.parameters()]
    ref = torch.autograd.grad((m(x, w, [0, 1]) * g).sum(), params)
    outs: list[bool] = []
    m.op("b").register_forward_hook(lambda _m, _i, o: outs.append(o.requires_grad))
    with caplog.at_level(logging.WARNING, logger="datanas_core.space.mixed"):
        new = torch.autograd.grad((m(x, w, [0, 1], zero={1}) * g).sum(), params)
    assert outs == [True]  # ran with autograd, not forward-only
    assert "supports_forward_only=False" in caplog.text
    _assert_same(list(ref), list(new))
    assert new[1][1] != 0  # the zero weight still gets its straight-through gradient


def test_forward_only_blocker_names_dropout() -> None:
    assert forward_only_blocker(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.1))) is not None
    assert forward_only_blocker(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.0))) is None
    assert forward_only_blocker(nn.Conv2d(1, 1, 1)) is None


def test_zero_weight_terms_gradients() -> None:
    base = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    o = torch.randn(2, 3, 4, dtype=torch.float64)
    p = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = zero_weight_terms(base, [w], [o], [p])
    assert torch.equal(y, base)
    g = torch.randn(3, 4, dtype=torch.float64)
    gb, gw, gp = torch.autograd.grad(y, [base, w, p], g)
    assert torch.equal(gb, g)
    torch.testing.assert_close(gw, (o * g).sum(dim=(1, 2)))
    assert torch.equal(gp, torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 5), (1, 2, 3, 2), (3, 4, 9, 11), (1, 1, 2, 2)])
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_avg_pool_equals_nn_avgpool(shape: tuple[int, ...], stride: int) -> None:
    ref_pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ref = ref_pool(x)
    out = AvgPool3x3(stride)(x)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-14)
    g = torch.randn_like(ref)
    (gr,) = torch.autograd.grad(ref, x, g)
    (go,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(go, gr, rtol=1e-13, atol=1e-14)
    x32 = x.detach().float()
    torch.testing.assert_close(AvgPool3x3(stride)(x32), ref_pool(x32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 5), (3, 4, 9, 11)])
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_max_pool_equals_nn_maxpool_with_ties(shape: tuple[int, ...], stride: int) -> None:
    x = torch.randint(0, 3, shape).double().requires_grad_(True)  # many ties
    ref = nn.MaxPool2d(3, stride=stride, padding=1)(x)
    out = MaxPool3x3(stride)(x)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@pytest.mark.parametrize(("space_name", "kwargs"), SPACE_CASES[:2], ids=[c[0] for c in SPACE_CASES[:2]])
@pytest.mark.parametrize("estimator", [{"type": "egs", "samples": 2}, "softmax"], ids=["egs2", "softmax"])
def test_checkpoint_cells_gives_the_same_gradients(
    space_name: str, kwargs: dict[str, Any], estimator: Any
) -> None:
    net, dist = _setup(space_name, kwargs, estimator)
    x, y = _data()
    arch = dist.sample(torch.Generator().manual_seed(3))
    ref = _grads(net, dist, arch.plain_exact(), x, y)
    net.checkpoint_cells = True
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        new = _grads(net, dist, arch, x, y)
    assert _assert_same(ref, new) > 0
    net.checkpoint_cells = False
    saved_plain: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_plain.append(t.numel()) or t, lambda t: t):
        _grads(net, dist, arch, x, y)
    assert sum(saved) < sum(saved_plain)  # fewer activations kept
    built = SPACES.build(space_name).build_supernet(**kwargs, checkpoint_cells=True)
    assert built.checkpoint_cells


@pytest.mark.parametrize(("space_name", "kwargs"), SPACE_CASES[:2], ids=[c[0] for c in SPACE_CASES[:2]])
def test_lean_dense_edge_keeps_less_and_updates_batchnorm_alike(
    space_name: str, kwargs: dict[str, Any]
) -> None:
    """Softmax (every weight non-zero): the lean edge keeps fewer activations for backward than the plain
    one (shared ReLU, BatchNorm/pool inner products from kept inputs) and leaves the same BatchNorm state."""
    import copy

    net, dist = _setup(space_name, kwargs, "softmax")
    twin = copy.deepcopy(net)
    x, y = _data()
    arch = dist.sample(torch.Generator().manual_seed(3))
    sizes: dict[str, list[int]] = {"lean": [], "plain": []}
    storages: dict[str, set[int]] = {"lean": set(), "plain": set()}

    def pack(key: str) -> Any:
        def f(t: torch.Tensor) -> torch.Tensor:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in storages[key]:
                storages[key].add(ptr)
                sizes[key].append(t.untyped_storage().nbytes())
            return t

        return f

    with torch.autograd.graph.saved_tensors_hooks(pack("lean"), lambda t: t):
        lean_loss = F.cross_entropy(net(x, arch), y)
    with torch.autograd.graph.saved_tensors_hooks(pack("plain"), lambda t: t):
        plain_loss = F.cross_entropy(twin(x, arch.plain_exact()), y)
    torch.testing.assert_close(lean_loss, plain_loss, rtol=1e-12, atol=1e-12)
    assert sum(sizes["lean"]) < 0.85 * sum(sizes["plain"])
    for (n, a), (_, b) in zip(net.named_buffers(), twin.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=n)
