"""Behaviour of the bilevel search loop on the tiny toy space."""

from __future__ import annotations

import pytest
import torch

from datanas_core.errors import ConfigError, NumericalError
from datanas_core.search import SearchConfig, Searcher, arch_from_genotype
from datanas_core.testing import ToySpace, ToyTask, toy_batches

ESTIMATORS = ["softmax", "egs", "gdas", "snas", "dirichlet"]


def _searcher(estimator: str = "egs", **cfg: object) -> Searcher:
    base = {"epochs": 2, "estimator": estimator, "estimator_options": {}, "regularizers": ()}
    base.update(cfg)
    return Searcher(ToySpace(), ToyTask(), SearchConfig(**base))  # type: ignore[arg-type]


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_step_updates_both_levels(estimator: str) -> None:
    s = _searcher(estimator)
    w0, a0 = _params(s.supernet), _params(s.distribution)
    batches = toy_batches(2)
    logs = s.step(batches[0], batches[1])
    assert {"train_loss", "val_loss", "lr"} <= set(logs)
    assert any(not torch.equal(a, b) for a, b in zip(a0, _params(s.distribution), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(w0, _params(s.supernet), strict=True))


def test_arch_step_only_touches_arch_and_weight_step_only_weights() -> None:
    s = _searcher("egs")
    batches = toy_batches(2)
    w0, a0 = _params(s.supernet), _params(s.distribution)
    s._arch_first_order(batches[1])
    assert all(torch.equal(a, b) for a, b in zip(w0, _params(s.supernet), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(a0, _params(s.distribution), strict=True))
    a1 = _params(s.distribution)
    s._weight_step(batches[0])
    assert all(torch.equal(a, b) for a, b in zip(a1, _params(s.distribution), strict=True))


def test_warmup_freezes_architecture() -> None:
    s = _searcher("softmax", arch_warmup_epochs=1)
    a0 = _params(s.distribution)
    b = toy_batches(2)
    s.step(b[0], b[1])
    assert all(torch.equal(x, y) for x, y in zip(a0, _params(s.distribution), strict=True))


@pytest.mark.parametrize("order", ["first", "second", "single_level"])
def test_fit_runs_and_derives_valid_genotype(order: str) -> None:
    s = _searcher("softmax" if order != "single_level" else "snas", order=order)
    data = toy_batches(4)
    result = s.fit(data[:2], data[2:], eval_loader=data[2:])
    ToySpace().validate(result.genotype)
    assert len(result.history) == 2
    assert {"child_acc", "search_acc"} <= set(result.history[-1])


def test_same_seed_same_result_and_different_seed_differs() -> None:
    data = toy_batches(4)
    r1 = _searcher("egs", seed=3).fit(data[:2], data[2:])
    s2 = _searcher("egs", seed=3)
    r2 = s2.fit(data[:2], data[2:])
    s3 = _searcher("egs", seed=4)
    s3.fit(data[:2], data[2:])
    s1 = _searcher("egs", seed=3)
    s1.fit(data[:2], data[2:])
    for a, b in zip(s1.distribution.parameters(), s2.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    assert r1.genotype == r2.genotype
    assert any(
        not torch.equal(a, b)
        for a, b in zip(s1.distribution.parameters(), s3.distribution.parameters(), strict=True)
    )


def test_state_dict_round_trip_resumes_identically() -> None:
    data = toy_batches(4)
    full = _searcher("egs", epochs=2)
    full.fit(data[:2], data[2:])
    half = _searcher("egs", epochs=2)
    half.train_epoch(data[:2], data[2:])
    half.w_scheduler.step()
    half.epoch = 1
    half.batch_in_epoch = 0  # as fit() leaves it at an epoch boundary
    state = half.state_dict()
    resumed = _searcher("egs", epochs=2)
    resumed.load_state_dict(state)
    resumed.fit(data[:2], data[2:])
    for a, b in zip(full.distribution.parameters(), resumed.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.supernet.parameters(), resumed.supernet.parameters(), strict=True):
        assert torch.equal(a, b)


def test_derived_code_inside_supernet_equals_derived_network() -> None:
    s = _searcher("softmax")
    g = s.derive()
    arch = arch_from_genotype(g, s.space)
    x, _ = toy_batches(1)[0]
    derived = s.space.build_derived(g)
    derived.net.load_state_dict(s.supernet.state_dict())
    torch.testing.assert_close(s.supernet(x, arch), derived(x))


def test_nan_loss_raises_before_optimizer_step() -> None:
    s = _searcher("softmax")
    x, y = toy_batches(1)[0]
    bad = (x * float("nan"), y)
    w0 = _params(s.supernet)
    with pytest.raises(NumericalError, match="training loss|architecture loss"):
        s.step(bad, bad)
    assert all(torch.equal(a, b) for a, b in zip(w0, _params(s.supernet), strict=True))


def test_config_validation_messages() -> None:
    with pytest.raises(ConfigError, match="order must be one of first, second, single_level"):
        SearchConfig(order="third")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="epochs"):
        SearchConfig(epochs=0)
    with pytest.raises(ConfigError, match="unknown preset 'dart'; valid presets"):
        SearchConfig.preset("dart")
    with pytest.raises(ConfigError, match="unknown SearchConfig field"):
        SearchConfig.from_dict({"epoch": 3})
    assert SearchConfig.preset("gdas").step_order == "weight_first"
    assert SearchConfig.from_dict(SearchConfig.preset("data_m7").to_dict()) == SearchConfig.preset("data_m7")


def test_second_order_hypergradient_matches_finite_differences() -> None:
    """dL_val(w - xi grad_w L_train(w, a), a)/da, checked entry by entry with central differences."""
    torch.manual_seed(0)
    space = ToySpace(dim=3, in_features=2, num_classes=2)
    cfg = SearchConfig(
        epochs=1,
        estimator="softmax",
        estimator_options={},
        regularizers=(),
        order="second",
        w_momentum=0.0,
        w_weight_decay=0.0,
        w_lr=0.5,
        a_weight_decay=0.0,
        unrolled_eps=1e-4,
    )
    s = Searcher(space, ToyTask(), cfg)
    s.supernet.double()
    s.distribution.double()
    train, val = toy_batches(2, in_features=2, num_classes=2, dtype=torch.float64)
    xi = 0.5
    alpha = next(iter(s.distribution.parameters()))

    def objective(a_val: torch.Tensor) -> float:
        with torch.no_grad():
            alpha.copy_(a_val)
        arch = s.distribution.sample(generator=torch.Generator().manual_seed(0))
        loss, _ = ToyTask().loss(s.supernet, train, arch)
        grads = torch.autograd.grad(loss, list(s.supernet.parameters()))
        names = [n for n, _ in s.supernet.named_parameters()]
        w_prime = {
            n: p.detach() - xi * g for n, p, g in zip(names, s.supernet.parameters(), grads, strict=True)
        }
        arch = s.distribution.sample(generator=torch.Generator().manual_seed(0))
        out = torch.func.functional_call(s.supernet, w_prime, (val[0], arch))
        return float(torch.nn.functional.cross_entropy(out, val[1]).detach())

    a0 = alpha.detach().clone()
    numeric = torch.zeros_like(a0)
    h = 1e-6
    for idx in range(a0.numel()):
        d = torch.zeros_like(a0).view(-1)
        d[idx] = h
        d = d.view_as(a0)
        numeric.view(-1)[idx] = (objective(a0 + d) - objective(a0 - d)) / (2 * h)
    with torch.no_grad():
        alpha.copy_(a0)
    captured: list[torch.Tensor] = []
    s.arch_grad_hooks.append(lambda ps: captured.append(ps[0].grad.detach().clone()))
    s._arch_second_order(train, val)
    torch.testing.assert_close(captured[0], numeric, rtol=1e-3, atol=1e-6)


def test_rebuild_optimizers_keeps_schedule_position_and_lr() -> None:
    s = _searcher("softmax", epochs=6)
    b = toy_batches(2)
    for _ in range(3):
        s.step(b[0], b[1])
        s.w_scheduler.step()
    before = (s.w_scheduler.last_epoch, s.w_optimizer.param_groups[0]["lr"])
    s.rebuild_optimizers()
    assert (s.w_scheduler.last_epoch, s.w_optimizer.param_groups[0]["lr"]) == before
    s.w_scheduler.step()
    ref = _searcher("softmax", epochs=6)
    for _ in range(4):
        ref.w_scheduler.step()
    assert s.w_optimizer.param_groups[0]["lr"] == pytest.approx(ref.w_optimizer.param_groups[0]["lr"])


def test_uniform_weight_sampling_ignores_the_distribution() -> None:
    """weight_sampling='uniform': weight-step codes are drawn at zero logits, so an op the distribution has
    all but ruled out is still sampled (and trained) about 1/K of the time; the arch step is unchanged."""
    s = _searcher("gdas", weight_sampling="uniform", executor="sparse")  # sparse: mask = drawn ops
    with torch.no_grad():
        for p in s.distribution.parameters():
            p.zero_()
            p[:, 1] = 30.0  # the distribution puts all its mass on op 1
    spec = next(iter(s.space.cells().values()))
    K = spec.num_ops
    hits = torch.zeros(K)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        arch = s.sample(gen, uniform=True)
        hits += next(iter(arch.values())).mask.float().sum(0)
    freq = hits / hits.sum()
    assert torch.allclose(freq, torch.full((K,), 1.0 / K), atol=0.03), freq
    biased = next(iter(s.sample(gen).values())).mask.float()
    assert bool(biased[:, 1].all()) and int(biased.sum()) == biased.shape[0]
    uni = next(iter(s.sample(gen, uniform=True).values()))
    assert uni.weights.grad_fn is None or not uni.weights.requires_grad


def test_uniform_weight_sampling_trains_ops_the_distribution_avoids() -> None:
    def grads_of_op(s: Searcher, k: int) -> float:
        b = toy_batches(1)[0]
        s._weight_step(b)
        total = 0.0
        for cell in s.supernet.modules():
            if hasattr(cell, "ops") and isinstance(cell.ops, torch.nn.ModuleList):
                for edge in cell.ops:
                    op = edge[k]
                    for p in op.parameters():
                        if p.grad is not None:
                            total += float(p.grad.abs().sum())
        return total

    results = {}
    for mode in ("distribution", "uniform"):
        s = _searcher("gdas", weight_sampling=mode, executor="sparse")
        with torch.no_grad():
            for p in s.distribution.parameters():
                p.zero_()
                p[:, 1] = 30.0
        spec = next(iter(s.space.cells().values()))
        k = next(i for i, o in enumerate(spec.ops) if o != "none" and i != 1)
        results[mode] = sum(grads_of_op(s, k) for _ in range(5))
    assert results["distribution"] == 0.0
    assert results["uniform"] > 0.0


def test_weight_sampling_validation() -> None:
    with pytest.raises(ConfigError, match="weight_sampling must be one of distribution, uniform; got 'fair'"):
        SearchConfig(weight_sampling="fair")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a bilevel order"):
        SearchConfig(weight_sampling="uniform", order="single_level")


@pytest.mark.parametrize(
    ("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_weight_optimizer_choice(name: str, cls: type) -> None:
    s = _searcher("egs", w_optimizer=name, w_weight_decay=1e-3)
    assert type(s.w_optimizer) is cls
    assert s.w_optimizer.param_groups[0]["weight_decay"] == 1e-3
    w0 = [p.detach().clone() for p in s.supernet.parameters()]
    b = toy_batches(2)
    s.step(b[0], b[1])
    assert any(not torch.equal(a, p) for a, p in zip(w0, s.supernet.parameters(), strict=True))
    s.rebuild_optimizers()  # keeps the kind and the learning rate
    assert type(s.w_optimizer) is cls


def test_weight_optimizer_validation() -> None:
    with pytest.raises(ConfigError, match="w_optimizer must be one of sgd, adam, adamw; got 'rmsprop'"):
        SearchConfig(w_optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="order='second' needs w_optimizer='sgd'"):
        SearchConfig(w_optimizer="adam", order="second", step_order="arch_first")


def test_step_puts_an_evaluated_supernet_back_in_training_mode() -> None:
    s = _searcher()
    train, val = next(iter(toy_batches(2, seed=0))), next(iter(toy_batches(2, seed=1)))
    s.supernet.eval()
    s.step(train, val)
    assert all(m.training for m in s.supernet.modules())
    # a submodule the user put in eval mode while the supernet trains stays so (train() is not re-run)
    sub = next(m for m in s.supernet.modules() if m is not s.supernet)
    sub.eval()
    s.step(train, val)
    assert s.supernet.training and not sub.training


def test_weight_sgd_is_foreach_and_bitwise_equal_to_the_loop() -> None:
    """The weights' SGD runs as one foreach update: the same values, bit for bit, as PyTorch's per-tensor loop
    (momentum, weight decay, Nesterov, tensors without a gradient in some steps)."""
    s = _searcher(w_nesterov=True)
    assert s.w_optimizer.defaults["foreach"] is True
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        ps = [torch.randn(n, generator=g, dtype=dtype, requires_grad=True) for n in (3, 257, 1)]
        qs = [p.detach().clone().requires_grad_(True) for p in ps]
        kw = {"lr": 0.05, "momentum": 0.9, "weight_decay": 3e-4, "nesterov": True}
        loop, fused = torch.optim.SGD(ps, foreach=False, **kw), torch.optim.SGD(qs, foreach=True, **kw)
        for it in range(4):
            for i, (p, q) in enumerate(zip(ps, qs, strict=True)):
                grad = None if (i + it) % 3 == 0 else torch.randn(p.shape, generator=g, dtype=dtype)
                p.grad, q.grad = grad, None if grad is None else grad.clone()
            loop.step()
            fused.step()
        assert all(torch.equal(p, q) for p, q in zip(ps, qs, strict=True))
