"""Searches that decide: per-architecture-step schedules, the decision monitor and its verdict, and the
Table-8 consistency check (DATA's 1/n weighting, fixed held-out set, standard errors)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.runtime.monitors import ConsistencyMonitor, DecisionMonitor, decision_stats
from datanas_core.schedules import arch_learning_rate, arch_step_position
from datanas_core.search import SearchConfig, Searcher, arch_from_genotype
from datanas_core.testing import ToySpace, ToyTask, toy_batches


def _searcher(**cfg: object) -> Searcher:
    base: dict[str, object] = {"epochs": 3, "estimator": "egs", "estimator_options": {"samples": 2}}
    base.update(cfg)
    return Searcher(ToySpace(), ToyTask(), SearchConfig(**base))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ step schedules
def test_arch_step_position_counts_from_the_end_of_the_warmup() -> None:
    cfg = SearchConfig(epochs=4, arch_warmup_epochs=1)
    assert arch_step_position(cfg, 10, 0) == (0, 30)
    assert arch_step_position(cfg, 10, 10) == (0, 30)
    assert arch_step_position(cfg, 10, 25) == (15, 30)
    assert arch_step_position(cfg, 10, 99) == (29, 30)
    with pytest.raises(ConfigError, match="steps per epoch"):
        arch_step_position(cfg, None, 0)  # type: ignore[arg-type]


def test_arch_travel_makes_the_lr_budget_aware_with_a_linear_warmup() -> None:
    cfg = SearchConfig(arch_travel=12.0, a_lr_warmup=0.25)
    # 300 and 40,000 architecture steps move the logits equally far: lr * steps == travel after warm-up
    for total in (300, 40_000):
        lrs = [arch_learning_rate(cfg, k, total) for k in range(total)]
        assert lrs[-1] == pytest.approx(12.0 / total)
        assert lrs[0] < lrs[total // 8] < lrs[total // 4] == pytest.approx(12.0 / total)
        assert sum(lrs) == pytest.approx(12.0 * (1 - 0.25 / 2), rel=1e-2)
    cos = SearchConfig(a_lr=1e-3, a_lr_schedule="cosine:1:0.1", schedule_unit="step")
    assert arch_learning_rate(cos, 0, 100) == pytest.approx(1e-3)
    assert arch_learning_rate(cos, 99, 100) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        {"schedule_unit": "batch"},
        {"a_lr_warmup": 1.0},
        {"arch_travel": 0.0},
        {"a_lr_schedule": "linear:1:-1"},
    ],
)
def test_bad_schedule_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SearchConfig(**bad)  # type: ignore[arg-type]


def test_step_schedules_drive_tau_and_lr_every_step() -> None:
    s = _searcher(
        schedule_unit="step", arch_travel=2.0, estimator_options={"samples": 2, "tau": "linear:5:1"}
    )
    data = toy_batches(6)
    s.steps_per_epoch = 2
    taus, lrs = [], []
    for i in range(6):
        s.epoch = i // 2
        logs = s.step(data[i], data[(i + 1) % 6])
        taus.append(logs["tau"])
        lrs.append(logs["a_lr"])
    assert taus == pytest.approx([5.0, 4.2, 3.4, 2.6, 1.8, 1.0])  # per step, not per epoch
    assert lrs == pytest.approx([2.0 / 6] * 6)


def test_step_schedules_are_a_function_of_the_step_so_resume_matches_an_uninterrupted_run() -> None:
    cfg = {"schedule_unit": "step", "arch_travel": 1.0, "a_lr_warmup": 0.5}
    data = toy_batches(4)
    full = _searcher(**cfg)
    full.fit(data[:2], data[2:])
    assert full.steps_per_epoch == 2

    class StopAfterFirstEpoch:
        def on_epoch_end(self, searcher: Searcher, record: dict[str, object]) -> None:
            searcher.stop_requested = True

    first = _searcher(**cfg)
    first.callbacks.append(StopAfterFirstEpoch())
    first.fit(data[:2], data[2:])
    assert first.epoch == 1
    resumed = _searcher(**cfg)
    resumed.load_state_dict(first.state_dict())
    resumed.fit(data[:2], data[2:])
    for a, b in zip(full.distribution.parameters(), resumed.distribution.parameters(), strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------ decisions
def test_decision_stats_margin_and_normalised_entropy() -> None:
    p = {"c": torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.3, 0.2, 0.0]])}
    st = decision_stats(p)["c"]
    assert st["margin"] == pytest.approx([0.0, 1.0, 0.2])
    assert st["entropy"][0] == pytest.approx(1.0) and st["entropy"][1] == pytest.approx(0.0)


def test_undecided_search_says_so_and_what_to_change(caplog: pytest.LogCaptureFixture) -> None:
    s = _searcher(epochs=1)
    mon = DecisionMonitor()
    s.callbacks.append(mon)
    data = toy_batches(4)
    with caplog.at_level(logging.WARNING):
        result = s.fit(data[:2], data[2:])
    last = result.history[-1]
    assert last["decided"] is False and last["decision_entropy"] > 0.99
    assert set(last["decision"]) == set(s.space.cells())
    verdict = last["decision_verdict"]
    assert "not supported by the search" in verdict and "data_decide" in verdict
    assert "--progressive-decisions" in verdict and "--arch-travel" in verdict
    assert "UNDECIDED" in caplog.text


def test_decided_search_and_genotype_stability() -> None:
    s = _searcher(epochs=2)
    with torch.no_grad():
        for p in s.distribution.parameters():
            p.zero_()
            p[:, -1] = 5.0  # one op dominates every edge
    mon = DecisionMonitor()
    s.callbacks.append(mon)
    s.config = s.config.replace(a_lr=1e-12)
    data = toy_batches(4)
    result = s.fit(data[:2], data[2:])
    assert [r["decided"] for r in result.history] == [True, True]
    assert [r["genotype_stable_epochs"] for r in result.history] == [1, 2]
    assert result.history[-1]["decision_verdict"].startswith("decided search")
    state = mon.state_dict()
    other = DecisionMonitor()
    other.load_state_dict(state)
    assert other.stable_epochs == 2


# ------------------------------------------------------------------------------------ consistency
def _two_op_genotype(space: ToySpace) -> Genotype:
    edges = []
    for ct, spec in space.cells().items():
        ops = [o for o in spec.ops if o != "none"]
        src, dst = spec.edges[0]
        edges.append((ct, [EdgeChoice(src, dst, ops[0]), EdgeChoice(src, dst, ops[1])]))
        for s2, d2 in spec.edges[1:]:
            edges[-1][1].append(EdgeChoice(s2, d2, ops[0]))
    return Genotype(space.name, {ct: CellGenotype(tuple(e), space.cells()[ct].concat) for ct, e in edges})


def test_child_code_weights_multi_op_edges_by_one_over_n() -> None:
    space = ToySpace()
    g = _two_op_genotype(space)
    space.validate(g)  # the toy space admits two ops on an edge, which this test needs
    one = arch_from_genotype(g, space)
    mean = arch_from_genotype(g, space, weighting="mean")
    for ct in space.cells():
        w1, wm = one[ct].weights, mean[ct].weights
        assert torch.equal(w1 != 0, wm != 0)
        assert torch.allclose(wm.sum(-1)[w1.sum(-1) > 0], torch.ones(int((w1.sum(-1) > 0).sum())))
        assert float(w1[0].sum()) == 2.0 and float(wm[0].max()) == 0.5


def test_consistency_uses_a_fixed_set_of_at_least_min_samples_with_standard_errors() -> None:
    s = _searcher(epochs=1)
    loader = toy_batches(10, batch_size=8)
    seen: list[int] = []

    class Counting:
        def __iter__(self):  # type: ignore[no-untyped-def]
            for i, b in enumerate(loader):
                seen.append(i)
                yield b

    mon = ConsistencyMonitor(Counting(), min_samples=20)
    record: dict[str, object] = {"epoch": 0}
    mon.on_epoch_end(s, record)
    assert seen == [0, 1, 2]  # 24 >= 20 examples: three batches of 8, then it stops
    assert record["consistency_samples"] == 24 and record["consistency_weighting"] == "mean"
    for key in ("search_acc_se", "child_acc_se", "consistency_drop_se"):
        assert math.isfinite(float(record[key])) and float(record[key]) >= 0  # type: ignore[arg-type]
    assert record["consistency_gap"] == pytest.approx(abs(record["search_acc"] - record["child_acc"]))  # type: ignore[operator]
    # the default: 2,048 examples, or the whole loader when it is smaller
    seen.clear()
    ConsistencyMonitor(Counting()).on_epoch_end(s, {"epoch": 0})
    assert seen == list(range(10))
    with pytest.raises(ConfigError, match="weighting"):
        ConsistencyMonitor(loader, weighting="sum")


def test_undecided_verdict_tells_ties_from_uniform() -> None:
    """A distribution that has concentrated on near-equal ops (low entropy, top ops tied: EGS with relu
    normalisation often ends so) is undecided for a different reason than a near-uniform one; the verdict must
    not call it "close to uniform"."""
    s = _searcher(epochs=1)
    s.steps_per_epoch = 2
    mon = DecisionMonitor()
    tied = mon._verdict(s, entropy=0.52, margin=0.002, weak=0.93, decided=False)
    assert "close to uniform" not in tied
    assert "concentrated (mean normalised entropy 0.520, below 0.7) but on near-equal ops" in tied
    assert "median top-op margin 0.002, 93% of the edges below 0.05" in tied
    flat = mon._verdict(s, entropy=0.99, margin=0.002, weak=1.0, decided=False)
    assert "still close to uniform (mean normalised entropy 0.990, decided below 0.7;" in flat
    for v in (tied, flat):
        assert v.startswith("UNDECIDED SEARCH: the derived cell is not supported by the search.")
        assert "--progressive-decisions 0.3 0.7" in v
