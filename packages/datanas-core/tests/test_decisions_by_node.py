"""Node-aware progressive decisions (issue #16): in keep-k spaces (DARTS' ``topk_edges``, GDAS'
``topk_pairs``) a node that holds k decided non-``none`` edges has its other edges fixed to ``none``, so the
derived cell is exactly the decided edges; NB201 (``argmax_edge``) decides exactly as before."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from datanas_core import SearchConfig, Searcher, get_space
from datanas_core.search import decisions as decisions_module
from datanas_core.search.decisions import decided_edges, due_decisions, node_quota, progressive_decide
from datanas_core.testing import ToySpace, ToyTask


def _data(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)) for _ in range(n)]


def _darts(epochs: int = 4, window: tuple[float, float] = (0.0, 0.5), **cfg: Any) -> Searcher:
    """A tiny DARTS supernet: 3 intermediate nodes (2, 3 and 4 inputs), C=4, 2 cells, 8x8 inputs."""
    base: dict[str, Any] = {
        "epochs": epochs,
        "estimator": "egs",
        "estimator_options": {"samples": 2},
        "executor": "exact",
        "progressive_decisions": window,
        "schedule_unit": "step",
        "arch_travel": 3.0,
    }
    base.update(cfg)
    space = get_space("darts", steps=3, multiplier=3)
    return Searcher(
        space, ToyTask(), SearchConfig(**base), supernet_kwargs={"C": 4, "layers": 2, "num_classes": 3}
    )


def _mask(s: Searcher, ct: str) -> torch.Tensor:
    spec = s.distribution.cells[ct]
    m = s.distribution.estimator.mask_of(spec, s.distribution.logits[ct])
    return torch.ones(spec.num_edges, spec.num_ops, dtype=torch.bool) if m is None else m.cpu()


def _decided_genotype(s: Searcher) -> dict[str, set[tuple[int, int, str]]]:
    """``{cell: {(src, dst, op)}}`` of the edges decided to an op other than ``none``."""
    out: dict[str, set[tuple[int, int, str]]] = {}
    for ct, spec in s.distribution.cells.items():
        m = _mask(s, ct)
        out[ct] = set()
        for r, (src, dst) in enumerate(spec.edges):
            if int(m[r].sum()) == 1 and spec.ops[int(m[r].nonzero()[0, 0])] != "none":
                out[ct].add((src, dst, spec.ops[int(m[r].nonzero()[0, 0])]))
    return out


def _derived(s: Searcher) -> dict[str, set[tuple[int, int, str]]]:
    g = s.derive()
    return {ct: {(e.src, e.dst, e.op) for e in cell.edges} for ct, cell in g.cells.items()}


def _assert_every_node_holds_k(s: Searcher, k: int = 2) -> None:
    for ct, spec in s.distribution.cells.items():
        m = _mask(s, ct)
        assert bool((m.sum(-1) == 1).all()), f"{ct}: undecided edges left"
        for node in spec.nodes:
            ops = [spec.ops[int(m[r].nonzero()[0, 0])] for r in spec.in_edges(node)]
            kept = [o for o in ops if o != "none"]
            assert len(kept) == min(k, len(ops)), f"{ct} node {node}: {ops}"


_SOFTMAX = {"samples": 2, "normalize": "softmax"}  # probabilities = softmax(logits), as the comments compute


def _at(s: Searcher, step: int, steps_per_epoch: int = 4) -> dict[str, float]:
    s.steps_per_epoch = steps_per_epoch
    s.epoch = step // steps_per_epoch
    s.global_step = step
    return progressive_decide(s)


# ------------------------------------------------------------------------------------ the rule's k
def test_node_quota_follows_the_rule_of_the_search() -> None:
    assert node_quota(_darts()) == (2, ("none",))  # the space's default rule, topk_edges
    assert node_quota(_darts(rule="topk_pairs")) == (2, ("none",))  # GDAS
    assert node_quota(_darts(rule="topk_edges", rule_options={"k": 1})) == (1, ("none",))
    assert node_quota(_darts(rule_options={"k": 3})) == (3, ("none",))  # options on the space's default rule
    assert node_quota(_darts(rule="data")) is None  # a variable number of inputs per node
    assert node_quota(_darts(rule="argmax_edge")) is None
    nb201 = Searcher(get_space("nb201"), ToyTask(), SearchConfig(epochs=1), supernet_kwargs={"C": 4, "N": 1})
    assert node_quota(nb201) is None


# ------------------------------------------------------------------------------------ decision order
def test_a_full_node_prunes_its_other_edges_and_none_edges_wait(caplog: pytest.LogCaptureFixture) -> None:
    s = _darts(window=(0.0, 1.0), estimator_options=_SOFTMAX)
    spec = s.distribution.cells["normal"]
    col = {op: j for j, op in enumerate(spec.ops)}
    row = {e: r for r, e in enumerate(spec.edges)}
    with torch.no_grad():
        for logits in s.distribution.logits.values():
            logits.zero_()  # the reduce cell stays uniform: score 0, decided after every normal edge
        n = s.distribution.logits["normal"]
        n[row[(0, 3)], col["skip_connect"]] = 2.0
        n[row[(1, 3)], col["max_pool_3x3"]] = 2.5
        n[row[(2, 3)], col["dil_conv_3x3"]] = 0.5  # uncertain: will be pruned when node 3 is full
        n[row[(1, 4)], col["none"]] = 4.0  # confidently none: the largest margin, little non-none mass
        n[row[(0, 4)], col["sep_conv_3x3"]] = 3.0
        n[row[(2, 4)], col["sep_conv_5x5"]] = 1.0
    total_edges = 18
    # 2 decisions due: by margin x non-none mass the two most certain op edges, (0, 4) then (1, 3)
    step = next(i for i in range(16) if due_decisions((0.0, 1.0), i, 16, total_edges) == 2)
    assert _at(s, step)["decided_edges"] == 2
    m = _mask(s, "normal")
    assert m[row[(0, 4)]].nonzero().flatten().tolist() == [col["sep_conv_3x3"]]
    assert m[row[(1, 3)]].nonzero().flatten().tolist() == [col["max_pool_3x3"]]
    assert int(m[row[(1, 4)]].sum()) == spec.num_ops  # the none edge waits despite its largest margin
    # the third decision fills node 3 (two inputs), whose last edge is pruned to none at once
    step3 = next(i for i in range(16) if due_decisions((0.0, 1.0), i, 16, total_edges) == 3)
    with caplog.at_level(logging.INFO, logger="datanas_core.search.decisions"):
        assert _at(s, step3)["decided_edges"] == 4  # one decision + one pruning
    m = _mask(s, "normal")
    assert m[row[(0, 3)]].nonzero().flatten().tolist() == [col["skip_connect"]]
    assert m[row[(2, 3)]].nonzero().flatten().tolist() == [col["none"]]
    assert "pruned edge normal/2->3: none (node 3 holds its 2 decided input(s))" in caplog.text
    # the end of the window: every node holds exactly k=2 inputs and the derived cell is the decided one
    assert _at(s, 15)["decided_edges"] == total_edges
    _assert_every_node_holds_k(s)
    m = _mask(s, "normal")
    assert m[row[(1, 4)]].nonzero().flatten().tolist() == [col["none"]]  # pruned: node 4 had (0,4),(2,4)
    assert m[row[(2, 4)]].nonzero().flatten().tolist() == [col["sep_conv_5x5"]]
    assert _derived(s) == _decided_genotype(s)
    s.space.validate(s.derive())


def test_a_none_decision_does_not_count_but_cannot_leave_a_node_short() -> None:
    s = _darts(window=(0.0, 1.0), estimator_options=_SOFTMAX)
    spec = s.distribution.cells["normal"]
    col = {op: j for j, op in enumerate(spec.ops)}
    row = {e: r for r, e in enumerate(spec.edges)}
    with torch.no_grad():
        for logits in s.distribution.logits.values():
            logits.zero_()
        n = s.distribution.logits["normal"]
        # node 4 (4 inputs): three edges lean to none; node 2 (2 inputs): one edge leans to none
        n[row[(1, 4)], col["none"]] = 2.0  # score 0.44 x 0.49: decided first
        n[row[(0, 4)], col["none"]] = 3.0  # score 0.70 x 0.26: second
        n[row[(3, 4)], col["none"]] = 1.0
        n[row[(1, 2)], col["none"]] = 5.0
        n[row[(1, 2)], col["avg_pool_3x3"]] = 3.0
    due = [due_decisions((0.0, 1.0), i, 16, 18) for i in range(16)]
    _at(s, due.index(1))
    m = _mask(s, "normal")
    assert m[row[(1, 4)]].nonzero().flatten().tolist() == [
        col["none"]
    ]  # its own top op; node 4 can afford it
    _at(s, due.index(2))
    m = _mask(s, "normal")
    assert m[row[(0, 4)]].nonzero().flatten().tolist() == [col["none"]]  # 2 open edges left for 2 places
    # node 4's last none-leaning edge (3, 4) must now take an op (margin 0 among its uniform non-none ops);
    # (1, 2)'s top op is none, but node 2 needs both its inputs: it is fixed to its best non-none op
    _at(s, due.index(3))
    m = _mask(s, "normal")
    assert m[row[(1, 2)]].nonzero().flatten().tolist() == [col["avg_pool_3x3"]]
    _at(s, 15)
    _assert_every_node_holds_k(s)
    m = _mask(s, "normal")
    assert spec.ops[int(m[row[(3, 4)]].nonzero()[0, 0])] != "none"
    assert spec.ops[int(m[row[(2, 4)]].nonzero()[0, 0])] != "none"
    assert _derived(s) == _decided_genotype(s)
    s.space.validate(s.derive())


def test_topk_pairs_derives_the_decided_edges_too() -> None:
    s = _darts(window=(0.0, 1.0), rule="topk_pairs")
    _at(s, 15)
    _assert_every_node_holds_k(s)
    assert _derived(s) == _decided_genotype(s)


def test_without_none_every_edge_is_decided_to_its_top_op_as_before() -> None:
    space = ToySpace(ops=("lin_a", "lin_b"), num_nodes=3)
    s = Searcher(
        space,
        ToyTask(),
        SearchConfig(epochs=1, estimator="egs", progressive_decisions=(0.0, 0.5), schedule_unit="step"),
    )
    before = {ct: p.detach().clone() for ct, p in s.distribution.probs().items()}
    _at(s, 3)
    for ct, spec in s.distribution.cells.items():
        m = _mask(s, ct)
        assert bool((m.sum(-1) == 1).all())
        assert m.float().argmax(-1).tolist() == before[ct].argmax(-1).tolist()
        del spec


# ------------------------------------------------------------------------------------ a real search
class _Record:
    def __init__(self) -> None:
        self.genotypes: list[dict[str, set[tuple[int, int, str]]]] = []

    def on_epoch_end(self, searcher: Searcher, record: dict[str, object]) -> None:
        self.genotypes.append(_derived(searcher))


class _StopAfterFirstEpoch:
    def on_epoch_end(self, searcher: Searcher, record: dict[str, object]) -> None:
        searcher.stop_requested = True


def test_a_tiny_darts_search_ends_on_the_decided_cell_stable_and_resumes_identically() -> None:
    data = _data(4)
    full = _darts()  # 4 epochs of 2 steps: decisions over the first 4 architecture steps
    rec = _Record()
    full.callbacks.append(rec)
    full.fit(data[:2], data[2:])
    assert decided_edges(full.distribution) == 18
    _assert_every_node_holds_k(full)
    decided = _decided_genotype(full)
    assert _derived(full) == decided
    assert rec.genotypes[1:] == [decided] * 3  # the window ends with epoch 1: no change afterwards
    full.space.validate(full.derive())

    first = _darts()
    first.callbacks.append(_StopAfterFirstEpoch())
    first.fit(data[:2], data[2:])
    assert 0 < decided_edges(first.distribution) < 18  # stopped in the middle of the window
    resumed = _darts()
    resumed.load_state_dict(first.state_dict())
    resumed.fit(data[:2], data[2:])
    for a, b in zip(full.distribution.parameters(), resumed.distribution.parameters(), strict=True):
        assert torch.equal(a, b)
    for ct in full.distribution.cells:
        assert torch.equal(_mask(full, ct), _mask(resumed, ct))
    assert resumed.derive().to_dict() == full.derive().to_dict()


# ------------------------------------------------------------------------------------ NB201 unchanged
def _old_progressive_masks(searcher: Searcher) -> dict[str, torch.Tensor]:
    """The masks the algorithm before node-aware decisions (commit 250302e) would set; a verbatim copy of its
    selection logic."""
    from datanas_core.schedules import arch_step_position

    cfg = searcher.config
    dist = searcher.distribution
    k, total = arch_step_position(cfg, searcher.steps_per_epoch, searcher.global_step)  # type: ignore[arg-type]
    masks = decisions_module._masks(dist)
    num_edges = sum(spec.num_edges for spec in dist.cells.values())
    decided = decisions_module._one_op_rows(masks)
    target = due_decisions(cfg.progressive_decisions, k, total, num_edges)  # type: ignore[arg-type]
    if decided >= target:
        return masks
    with torch.no_grad():
        probs = {ct: p.detach().float().cpu() for ct, p in dist.probs().items()}
    while decided < target:
        best: tuple[float, str, int, int] | None = None
        for ct, spec in dist.cells.items():
            m = masks[ct].cpu()
            p = probs[ct].masked_fill(~m, -1.0)
            for r in range(spec.num_edges):
                if int(m[r].sum()) <= 1:
                    continue
                top = torch.topk(p[r], 2)
                margin = float(top.values[0] - top.values[1])
                if best is None or margin > best[0]:
                    best = (margin, ct, r, int(top.indices[0]))
        if best is None:
            break
        margin, ct, r, op = best
        row = torch.zeros_like(masks[ct][r])
        row[op] = True
        masks[ct][r] = row
        decided += 1
    return masks


def test_nb201_decides_bit_identically_to_the_old_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    space = get_space("nb201")
    cfg = SearchConfig(
        epochs=3,
        estimator="egs",
        estimator_options={"samples": 2},
        executor="exact",
        progressive_decisions=(0.1, 0.7),
        schedule_unit="step",
        arch_travel=3.0,
        arch_warmup_epochs=1,
    )
    s = Searcher(space, ToyTask(), cfg, supernet_kwargs={"C": 4, "N": 1, "num_classes": 3})
    real = decisions_module.progressive_decide
    sequence: list[dict[str, torch.Tensor]] = []

    def checked(searcher: Searcher) -> dict[str, float]:
        expected = _old_progressive_masks(searcher) if searcher.epoch >= cfg.arch_warmup_epochs else None
        out = real(searcher)
        if expected is not None:
            got = decisions_module._masks(searcher.distribution)
            for ct in expected:
                assert torch.equal(expected[ct], got[ct]), f"step {searcher.global_step}: {ct}"
            sequence.append(got)
        return out

    monkeypatch.setattr(decisions_module, "progressive_decide", checked)
    data = _data(6)
    s.fit(data[:3], data[3:])
    assert len(sequence) == 6  # every architecture step was compared
    counts = [decisions_module._one_op_rows(m) for m in sequence]
    assert counts[0] < counts[-1] == 6 and len(set(counts)) > 2  # decisions really happened, step by step
    assert node_quota(s) is None


def test_a_decided_edge_keeps_its_op_in_the_derivation_when_relu_egs_logits_drift_below_0() -> None:
    s = _darts(window=(0.0, 1.0))  # SearchConfig's egs: relu-normalised probabilities
    assert s.distribution.estimator.normalize == "relu"
    _at(s, 15)
    _assert_every_node_holds_k(s)
    with torch.no_grad():
        for logits in s.distribution.logits.values():
            logits.fill_(-0.5)  # the decided ops' logits drift below 0
    for ct, p in s.distribution.probs().items():  # a decided row stays probability 1 on its op
        m = s.distribution.estimator.mask_of(s.distribution.cells[ct], p)
        assert torch.equal(p.detach(), m.to(p.dtype))
    assert _derived(s) == _decided_genotype(s)
