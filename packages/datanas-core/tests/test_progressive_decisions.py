"""Progressive edge decisions (SearchConfig.progressive_decisions, datanas_core.search.decisions)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig, Searcher
from datanas_core.search.config import preset_config
from datanas_core.search.decisions import decided_edges, due_decisions, progressive_decide
from datanas_core.testing import ToySpace, ToyTask, toy_batches


def _searcher(**cfg: object) -> Searcher:
    base: dict[str, object] = {
        "epochs": 3,
        "estimator": "egs",
        "estimator_options": {"samples": 2},
        "progressive_decisions": (0.0, 0.5),
        "schedule_unit": "step",
        "arch_travel": 3.0,
    }
    base.update(cfg)
    return Searcher(ToySpace(), ToyTask(), SearchConfig(**base))  # type: ignore[arg-type]


def _edges(s: Searcher) -> int:
    return sum(spec.num_edges for spec in s.distribution.cells.values())


@given(
    start=st.floats(0.0, 0.9),
    width=st.floats(0.05, 1.0),
    total=st.integers(1, 500),
    edges=st.integers(1, 30),
)
def test_due_decisions_grow_monotonically_from_none_to_all(
    start: float, width: float, total: int, edges: int
) -> None:
    end = min(1.0, start + width)
    due = [due_decisions((start, end), k, total, edges) for k in range(total)]
    assert due == sorted(due)
    assert all(0 <= d <= edges for d in due)
    assert due[-1] == edges  # every edge is decided by the last step
    for k, d in enumerate(due):
        frac = (k + 1) / total
        if frac <= start:
            assert d == 0
        if frac >= end:
            assert d == edges


def test_edges_are_decided_most_certain_first_and_stay_decided() -> None:
    s = _searcher()
    n = _edges(s)
    # make every edge's margin distinct: edge r gets a top-op lead growing with r
    with torch.no_grad():
        for ct, spec in s.distribution.cells.items():
            logits = s.distribution.logits[ct]
            logits.zero_()
            for r in range(spec.num_edges):
                logits[r, r % spec.num_ops] = 0.1 * (r + 1)
    s.steps_per_epoch = 4
    s.epoch = 0
    s.global_step = 2  # step 3 of 12: 3/12 = 0.25 of the window (0, 0.5) -> half the edges due
    logs = progressive_decide(s)
    assert logs["decided_edges"] == n // 2
    spec = next(iter(s.distribution.cells.values()))
    mask = s.distribution.estimator.mask_of(spec, s.distribution.logits[spec.cell_type])
    assert mask is not None
    one_op = (mask.sum(dim=-1) == 1).tolist()
    # the decided edges are the ones with the largest lead, each fixed to its top op
    expected = sorted(range(spec.num_edges), key=lambda r: -(r + 1))[: n // 2]
    assert [r for r, d in enumerate(one_op) if d] == sorted(expected)
    for r in expected:
        assert mask[r].nonzero().flatten().tolist() == [r % spec.num_ops]
    probs = s.distribution.probs()[spec.cell_type].detach()
    for r in expected:
        assert probs[r].max().item() == pytest.approx(1.0)  # decided: probability 1 on the chosen op
    # decisions are never undone, and by the end of the window every edge is decided
    s.global_step = 11
    assert progressive_decide(s)["decided_edges"] == n
    assert decided_edges(s.distribution) == n


def test_a_search_with_decisions_ends_decided_and_stable_and_resumes_identically() -> None:
    data = toy_batches(4)
    full = _searcher()
    full.fit(data[:2], data[2:])
    n = _edges(full)
    assert decided_edges(full.distribution) == n
    ent = full.distribution.entropy().item()
    assert ent == pytest.approx(0.0, abs=1e-6)
    genotype = full.derive()

    class StopAfterFirstEpoch:
        def on_epoch_end(self, searcher: Searcher, record: dict[str, object]) -> None:
            searcher.stop_requested = True

    first = _searcher()
    first.callbacks.append(StopAfterFirstEpoch())
    first.fit(data[:2], data[2:])
    resumed = _searcher()
    resumed.load_state_dict(first.state_dict())  # masks travel with the estimator state
    assert decided_edges(resumed.distribution) == decided_edges(first.distribution)
    resumed.fit(data[:2], data[2:])
    for a, b in zip(full.distribution.parameters(), resumed.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.derive().to_dict() == genotype.to_dict()


def test_without_the_option_nothing_is_masked() -> None:
    data = toy_batches(4)
    s = _searcher(progressive_decisions=None)
    s.fit(data[:2], data[2:])
    assert decided_edges(s.distribution) == 0


@pytest.mark.parametrize(
    "bad", [(0.5, 0.5), (0.6, 0.2), (-0.1, 0.5), (0.0, 1.5), (0.1,), "0.1:0.5", (True, 0.5)]
)
def test_bad_windows_are_refused_with_the_value(bad: object) -> None:
    with pytest.raises(ConfigError, match="progressive_decisions"):
        SearchConfig(progressive_decisions=bad)  # type: ignore[arg-type]


def test_config_round_trip_and_the_preset() -> None:
    cfg = SearchConfig(progressive_decisions=[0.1, 0.5])  # type: ignore[arg-type]
    assert cfg.progressive_decisions == (0.1, 0.5)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    preset = preset_config("data_decide", "nb201")
    assert preset.progressive_decisions == (0.3, 0.7)
    assert preset.estimator == "egs" and preset.resolved_executor == "exact"
    assert preset.estimator_options["samples"] == 4 and preset.arch_warmup_epochs == 3
    # the study's budget (280 architecture steps) gets exactly the measured 3e-3 per step
    from datanas_core.schedules import arch_learning_rate

    assert arch_learning_rate(preset, 0, 280) == 0.003


def test_the_summary_warns_only_about_an_undecided_search() -> None:
    from types import SimpleNamespace

    from datanas_core.cli_options import search_warnings

    decided = SimpleNamespace(history=[{"decided": True, "decision_verdict": "decided search: entropy 0.1"}])
    undecided = SimpleNamespace(history=[{"decided": False, "decision_verdict": "undecided search: ..."}])
    assert search_warnings(decided) == []
    assert search_warnings(undecided) == ["undecided search: ..."]
