"""Measured criteria of progressive decisions (SearchConfig.decision_criterion "fix" / "remove", DARTS-PT style):
what they measure, that the measurement changes nothing, that "margin" is unchanged, resume, config and CLI."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from datanas_core import SearchConfig, Searcher, get_space
from datanas_core.errors import ConfigError
from datanas_core.search import decisions as decisions_module
from datanas_core.search.config import METHOD_FIELDS
from datanas_core.search.decisions import (
    decided_edges,
    decision_batches_from,
    measure_candidates,
    progressive_decide,
)
from datanas_core.testing import ToyTask


def _data(n: int, batch: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g))
        for _ in range(n)
    ]


def _config(**cfg: Any) -> SearchConfig:
    base: dict[str, Any] = {
        "epochs": 3,
        "estimator": "egs",
        "estimator_options": {"samples": 2},
        "executor": "exact",
        "progressive_decisions": (0.0, 0.8),
        "schedule_unit": "step",
        "arch_travel": 3.0,
        "decision_batches": 2,
        "decision_samples": 2,
    }
    base.update(cfg)
    return SearchConfig(**base)


def _nb201(task: Any = None, **cfg: Any) -> Searcher:
    """A tiny NB201 supernet (C=4, N=1, 8x8 inputs, 3 classes): 6 edges x 5 ops."""
    return Searcher(
        get_space("nb201"),
        task or ToyTask(),
        _config(**cfg),
        supernet_kwargs={"C": 4, "N": 1, "num_classes": 3},
    )


def _masks(s: Searcher) -> dict[str, torch.Tensor]:
    return decisions_module._masks(s.distribution)


def _at(s: Searcher, step: int, steps_per_epoch: int = 2) -> None:
    s.steps_per_epoch = steps_per_epoch
    s.epoch = step // steps_per_epoch
    s.global_step = step


class _EdgeCostTask:
    """A loss that is a known linear function of the sampled op weights: ``sum(cost * weights)`` per cell
    type (the supernet is not run), so fixing edge ``r`` to op ``j`` changes the loss by exactly
    ``cost[r, j]`` minus what the edge's sample contributed."""

    def __init__(self, costs: dict[str, torch.Tensor]) -> None:
        self.costs = costs
        self.calls = 0

    def loss(self, model: Any, batch: Any, arch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        total = sum((self.costs[ct] * arch[ct].weights).sum() for ct in arch)
        return total, {}


def _costs(s: Searcher) -> dict[str, torch.Tensor]:
    """Edge ``r``'s cheapest op is ``r % 5`` with a lead over the next of ``0.1 * (r + 1)``; the others cost 1."""
    out = {}
    for ct, spec in s.distribution.cells.items():
        c = torch.ones(spec.num_edges, spec.num_ops)
        for r in range(spec.num_edges):
            c[r, r % spec.num_ops] = 1.0 - 0.1 * (r + 1)
        out[ct] = c
    return out


# ------------------------------------------------------------------------------------ margin unchanged
def test_margin_is_bit_identical_to_a_search_without_the_new_fields() -> None:
    data = _data(6)
    runs = []
    for extra in ({}, {"decision_criterion": "margin", "decision_batches": 3, "decision_samples": 5}):
        base = {k: v for k, v in _config().to_dict().items() if not k.startswith("decision_")}
        base.pop("approximations")
        s = Searcher(
            get_space("nb201"),
            ToyTask(),
            SearchConfig(**{**base, **extra}),
            supernet_kwargs={"C": 4, "N": 1, "num_classes": 3},
        )
        masks = []
        for i in range(6):
            _at(s, i)
            s.step(data[i], data[(i + 3) % 6])
            masks.append(_masks(s))
        assert s.decision_batches is None  # margin never reads held-out batches
        runs.append((s, masks))
    (a, ma), (b, mb) = runs
    assert decided_edges(a.distribution) > 0
    for x, y in zip(ma, mb, strict=True):
        for ct in x:
            assert torch.equal(x[ct], y[ct])
    for p, q in zip(a.distribution.parameters(), b.distribution.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(a.supernet.state_dict().values(), b.supernet.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------ what is measured
@pytest.mark.parametrize("criterion", ["fix", "remove"])
def test_a_known_loss_decides_the_edge_with_the_largest_lead_to_its_cheapest_op(criterion: str) -> None:
    probe = _nb201()
    task = _EdgeCostTask(_costs(probe))
    s = _nb201(task, estimator="softmax", estimator_options={}, decision_criterion=criterion)
    with torch.no_grad():
        for logits in s.distribution.logits.values():
            logits.zero_()  # uniform: removing op j leaves 1/4 on each other op
    s.decision_batches = _data(2)
    ct = next(iter(s.distribution.cells))
    spec = s.distribution.cells[ct]
    scores, baseline = measure_candidates(s)
    cost = task.costs[ct].double()
    for r in range(spec.num_edges):
        v = scores[(ct, r)]
        if criterion == "fix":
            # fixing r to j: cost[r, j] plus the other edges' uniform mixtures (the same for every j)
            others = sum(float(cost[q].mean()) for q in range(spec.num_edges) if q != r)
            assert torch.allclose(v, cost[r] + others, atol=1e-5)
        else:
            assert baseline is not None
            assert baseline == pytest.approx(float(cost.mean(-1).sum()), abs=1e-5)
            # removing j: the edge's mean over the other 4 ops
            expected = (cost[r].sum() - cost[r]) / 4 - cost[r].mean()
            assert torch.allclose(v, expected, atol=1e-5)
    assert task.calls == (30 + (criterion == "remove")) * 2 * 2  # candidates x samples x batches
    _at(s, 2, steps_per_epoch=6)  # step 3 of 18 in the window (0, 0.8): one edge due
    assert progressive_decide(s)["decided_edges"] == 1
    m = _masks(s)[ct]
    # the largest lead (0.1 * 6) is edge 5's, whose cheapest op is 5 % 5 = 0
    assert [int(m[r].sum()) for r in range(spec.num_edges)] == [5, 5, 5, 5, 5, 1]
    assert m[5].nonzero().flatten().tolist() == [0]
    # the next edges follow by lead, each to its cheapest op
    _at(s, 8, steps_per_epoch=6)
    assert progressive_decide(s)["decided_edges"] == 3
    m = _masks(s)[ct]
    for r in range(spec.num_edges):
        if int(m[r].sum()) == 1:
            assert m[r].nonzero().flatten().tolist() == [r % spec.num_ops]
    decided = [r for r in range(spec.num_edges) if int(m[r].sum()) == 1]
    assert decided == list(range(spec.num_edges - len(decided), spec.num_edges))


def test_fix_equals_a_brute_force_recomputation_on_a_real_supernet() -> None:
    """The deterministic softmax relaxation, so the recomputation needs no random numbers: each candidate is
    the supernet (training-mode BatchNorm) with one mask row set to one op, averaged over the batches."""
    s = _nb201(estimator="softmax", estimator_options={}, decision_criterion="fix", decision_samples=1)
    batches = _data(2)
    s.decision_batches = batches
    scores, _ = measure_candidates(s)
    ct = next(iter(s.distribution.cells))
    spec = s.distribution.cells[ct]
    state = {k: v.clone() for k, v in s.supernet.state_dict().items()}
    s.supernet.train()
    for r in range(spec.num_edges):
        for j in range(spec.num_ops):
            m = torch.ones(spec.num_edges, spec.num_ops, dtype=torch.bool)
            m[r] = False
            m[r, j] = True
            s.distribution.set_mask(ct, m)
            with torch.no_grad():
                arch = s.distribution.sample()
                expected = sum(float(ToyTask().loss(s.supernet, b, arch)[0]) for b in batches) / len(batches)
            assert float(scores[(ct, r)][j]) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    s.distribution.set_mask(ct, None)
    s.supernet.load_state_dict(state)
    # the decision is the edge with the largest runner-up-minus-best gap, fixed to its best op
    gaps = {}
    for r in range(spec.num_edges):
        v = scores[(ct, r)]
        top2 = torch.topk(-v, 2)
        gaps[r] = (float(-top2.values[1] - -top2.values[0]), int(top2.indices[0]))
    best_r = max(range(spec.num_edges), key=lambda r: (gaps[r][0], -r))
    _at(s, 2, steps_per_epoch=6)
    progressive_decide(s)
    m = _masks(s)[ct]
    assert m[best_r].nonzero().flatten().tolist() == [gaps[best_r][1]]
    assert decided_edges(s.distribution) == 1


# ------------------------------------------------------------------------------------ nothing changes
@pytest.mark.parametrize("criterion", ["fix", "remove"])
def test_measuring_leaves_alpha_masks_buffers_generators_and_weights_bit_identical(criterion: str) -> None:
    s = _nb201(decision_criterion=criterion)
    data = _data(4)
    s.decision_batches = data[:2]
    for i in range(2):  # move the weights, BN statistics and alpha off their initial values; decide one edge
        _at(s, i)
        s.step(data[i], data[i + 2])
    ct = next(iter(s.distribution.cells))
    spec = s.distribution.cells[ct]
    assert (
        s.distribution.estimator.mask_of(spec, s.distribution.logits[ct]) is not None
    )  # a decision was made
    before = {
        "alpha": [p.detach().clone() for p in s.distribution.parameters()],
        "net": {k: v.clone() for k, v in s.supernet.state_dict().items()},
        "masks": _masks(s),
        "gen": s.generator.get_state().clone(),
        "rng": torch.get_rng_state().clone(),
        "est": s.distribution.estimator.state_dict(),
        "training": s.supernet.training,
    }
    assert any("running_mean" in k for k in before["net"])  # NB201's BN tracks running statistics
    measure_candidates(s)
    assert all(torch.equal(a, b) for a, b in zip(before["alpha"], s.distribution.parameters(), strict=True))
    after = s.supernet.state_dict()
    assert all(torch.equal(before["net"][k], after[k]) for k in after)
    assert all(torch.equal(before["masks"][c], m) for c, m in _masks(s).items())
    assert torch.equal(before["gen"], s.generator.get_state())
    assert torch.equal(before["rng"], torch.get_rng_state())
    est = s.distribution.estimator.state_dict()
    assert est.keys() == before["est"].keys()
    assert all(torch.equal(before["est"]["masks"][c], m) for c, m in est["masks"].items())
    assert s.supernet.training == before["training"]
    # a cell type without a mask gets none back (not an all-True one)
    fresh = _nb201(decision_criterion=criterion)
    fresh.decision_batches = data[:1]
    measure_candidates(fresh)
    assert fresh.distribution.estimator.mask_of(spec, fresh.distribution.logits[ct]) is None
    # and measuring twice gives the same numbers (common random numbers, own generator)
    assert torch.equal(measure_candidates(fresh)[0][(ct, 0)], measure_candidates(fresh)[0][(ct, 0)])


# ------------------------------------------------------------------------------------ a whole search
@pytest.mark.parametrize("criterion", ["fix", "remove"])
def test_a_measured_search_ends_decided_and_resumes_identically(
    criterion: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = _data(4)
    with caplog.at_level(logging.INFO, logger="datanas_core.search.decisions"):
        full = _nb201(decision_criterion=criterion, decision_samples=1)
        full.fit(data[:2], data[2:])
    n = sum(spec.num_edges for spec in full.distribution.cells.values())
    assert decided_edges(full.distribution) == n
    assert full.decision_batches is not None and len(full.decision_batches) == 2
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decided edge")]
    assert len(lines) == n and all(f"criterion {criterion}: gap" in line and " s)" in line for line in lines)
    # the derived cell is exactly the decided edges
    genotype = full.derive()
    spec = next(iter(full.distribution.cells.values()))
    m = _masks(full)[spec.cell_type]
    decided = {(src, dst, spec.ops[int(m[r].nonzero()[0, 0])]) for r, (src, dst) in enumerate(spec.edges)}
    got = {(e.src, e.dst, e.op) for e in genotype.cells[spec.cell_type].edges}
    assert got == {e for e in decided if e[2] != "none"}  # NB201 genotypes leave out 'none' edges

    class StopAfterFirstEpoch:
        def on_epoch_end(self, searcher: Searcher, record: dict[str, object]) -> None:
            searcher.stop_requested = True

    first = _nb201(decision_criterion=criterion, decision_samples=1)
    first.callbacks.append(StopAfterFirstEpoch())
    first.fit(data[:2], data[2:])
    assert 0 < decided_edges(first.distribution) < n  # the interruption falls inside the window
    resumed = _nb201(decision_criterion=criterion, decision_samples=1)
    resumed.load_state_dict(first.state_dict())
    resumed.fit(data[:2], data[2:])  # a fresh searcher: the held-out batches are drawn again
    for ct in full.distribution.cells:
        assert torch.equal(_masks(full)[ct], _masks(resumed)[ct])
    for a, b in zip(full.distribution.parameters(), resumed.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.supernet.state_dict().values(), resumed.supernet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.derive().to_dict() == genotype.to_dict()


def test_held_out_batches_come_from_a_fixed_epoch_and_leave_the_loader_where_it_was() -> None:
    from torch.utils.data import TensorDataset

    from datanas_core.runtime.data import DeterministicLoader, EpochStream

    x = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    loader = DeterministicLoader(TensorDataset(x, torch.zeros(20)), 4, seed=3, shuffle=True)
    epoch0 = [b[0] for b in loader]  # epoch 0; the loader now stands at epoch 1
    assert loader.next_epoch == 1
    got = decision_batches_from(loader, 2)
    assert [torch.equal(a[0], b) for a, b in zip(got, epoch0[:2], strict=True)] == [True, True]
    assert loader.next_epoch == 1  # the search's own validation stream is unchanged
    stream = EpochStream(loader, 7, lambda: 5)  # what run_search passes to fit
    assert all(
        torch.equal(a[0], b) for a, b in zip(decision_batches_from(stream, 2), epoch0[:2], strict=True)
    )
    assert decision_batches_from([1, 2, 3], 2) == [1, 2]


# ------------------------------------------------------------------------------------ errors
def test_a_measured_criterion_without_batches_is_an_error_not_a_fallback() -> None:
    s = _nb201(decision_criterion="fix")
    _at(s, 2, steps_per_epoch=6)
    with pytest.raises(ConfigError, match="decision_batches"):
        progressive_decide(s)
    assert decided_edges(s.distribution) == 0
    with pytest.raises(ConfigError, match="validation loader"):
        s.fit(_data(2), None)


def test_keep_k_cells_refuse_a_measured_criterion() -> None:
    space = get_space("darts", steps=3, multiplier=3)
    s = Searcher(
        space,
        ToyTask(),
        _config(decision_criterion="remove"),
        supernet_kwargs={"C": 4, "layers": 2, "num_classes": 3},
    )
    with pytest.raises(
        ConfigError, match=r"decision_criterion='remove' is not supported in keep-k.*'margin'"
    ):
        s.fit(_data(2), _data(2))
    s.decision_batches = _data(1)
    _at(s, 2, steps_per_epoch=6)
    with pytest.raises(ConfigError, match="keep-k"):
        progressive_decide(s)
    # the data rule keeps no k: measured criteria work there
    data_rule = Searcher(
        space,
        ToyTask(),
        _config(decision_criterion="fix", rule="data", decision_batches=1, decision_samples=1),
        supernet_kwargs={"C": 4, "layers": 2, "num_classes": 3},
    )
    data_rule.decision_batches = _data(1)
    _at(data_rule, 4, steps_per_epoch=30)  # step 5 of 90: 18 edges x 5/72 -> one due
    assert progressive_decide(data_rule)["decided_edges"] >= 1


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (
            {"decision_criterion": "magnitude"},
            r"decision_criterion must be one of margin, fix, remove; got 'magnitude'",
        ),
        ({"decision_batches": 0}, r"decision_batches must be a positive integer, got 0"),
        ({"decision_samples": True}, r"decision_samples must be a positive integer, got True"),
        ({"decision_samples": 1.5}, r"decision_samples must be a positive integer, got 1.5"),
        ({"decision_criterion": "fix", "progressive_decisions": None}, r"decision_criterion='fix'.*window"),
    ],
)
def test_bad_decision_settings_are_refused_with_the_value(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(**bad)


def test_the_fields_round_trip_and_are_method_fields() -> None:
    cfg = _config(decision_criterion="remove", decision_batches=3, decision_samples=4)
    d = cfg.to_dict()
    assert (d["decision_criterion"], d["decision_batches"], d["decision_samples"]) == ("remove", 3, 4)
    assert SearchConfig.from_dict(d) == cfg
    old = {k: v for k, v in d.items() if not k.startswith("decision_")}  # a config saved before the fields
    assert SearchConfig.from_dict(old).decision_criterion == "margin"
    assert {"decision_criterion", "decision_batches", "decision_samples"} <= set(METHOD_FIELDS)


def test_cli_flags_set_the_fields_and_a_bad_criterion_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from datanas_core.cli_options import SEARCH_CONFIG_OPTIONS, add_options, config_changes, new_parser

    p = new_parser("prog", "test")
    add_options(p, SEARCH_CONFIG_OPTIONS)
    args = p.parse_args(
        ["--progressive-decisions", "0.1", "0.7", "--decision-criterion", "fix", "--decision-batches", "4"]
    )
    changes = config_changes(args)
    assert changes == {
        "progressive_decisions": (0.1, 0.7),
        "decision_criterion": "fix",
        "decision_batches": 4,
    }
    assert SearchConfig(**changes).decision_samples == 2
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--decision-criterion", "magnitude"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--decision-criterion" in lines[0] and "magnitude" in lines[0], lines
    assert all(c in lines[0] for c in ("margin", "fix", "remove")), lines
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--decision-batches", "x"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--decision-batches" in lines[0], lines
