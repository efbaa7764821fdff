"""Derivation rules on hand-built distributions, DATA's n*, determinism and errors."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from datanas_core.derive import (
    DERIVATION_RULES,
    AllEdgesArgmax,
    ArgmaxPerEdge,
    EGSMultinomial,
    Threshold,
    TopKEdges,
    TopKPairs,
    build_rule,
    derive,
    exact_cover_probability,
)
from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError, NumericalError, UnknownNameError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.space.base import CellSpec, SearchSpace

OPS = ("none", "a", "b", "c")
# 2 inputs, 2 nodes: rows 0:(0,2) 1:(1,2) 2:(0,3) 3:(1,3) 4:(2,3)
CELL = CellSpec.dense("normal", 2, 2, OPS)
P = torch.tensor(
    [
        [0.70, 0.10, 0.15, 0.05],
        [0.10, 0.30, 0.30, 0.30],
        [0.00, 0.50, 0.25, 0.25],
        [0.60, 0.20, 0.10, 0.10],
        [0.20, 0.10, 0.10, 0.60],
    ],
    dtype=torch.float64,
)


class FakeSpace(SearchSpace):
    name = "fake"

    def cells(self) -> Mapping[str, CellSpec]:
        return {"normal": CELL}

    def build_supernet(self, **hparams: Any) -> nn.Module:
        raise NotImplementedError

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        raise NotImplementedError


def _edges(rule: Any, p: torch.Tensor = P, cell: CellSpec = CELL) -> set[tuple[int, int, str]]:
    cg = rule({cell.cell_type: p}, {cell.cell_type: cell})[cell.cell_type]
    assert isinstance(cg, CellGenotype)
    return {(e.src, e.dst, e.op) for e in cg.edges}


# ---------------------------------------------------------------- DARTS / GDAS / NB201 / SNAS rules
def test_topk_edges_darts_rule() -> None:
    # node 2: both in-edges (only two); node 3: rows 4 (max non-none .6) and 2 (.5) beat row 3 (.2).
    # none (0.7 on row 0) is ignored both for ranking and for the op choice.
    assert _edges(TopKEdges()) == {(0, 2, "b"), (1, 2, "a"), (2, 3, "c"), (0, 3, "a")}


def test_topk_edges_k1_is_one_predecessor_rule() -> None:
    assert _edges(TopKEdges(k=1)) == {(1, 2, "a"), (2, 3, "c")}


def test_topk_edges_ties_prefer_lower_row_and_lower_op() -> None:
    p = torch.full((5, 4), 0.25, dtype=torch.float64)
    assert _edges(TopKEdges(k=1), p) == {(0, 2, "a"), (0, 3, "a")}


def test_topk_pairs_gdas_rule_allows_two_ops_on_one_edge() -> None:
    assert _edges(TopKPairs()) == {(1, 2, "a"), (1, 2, "b"), (2, 3, "c"), (0, 3, "a")}
    assert _edges(TopKPairs(k=1)) == {(1, 2, "a"), (2, 3, "c")}


def test_argmax_edge_nb201_rule() -> None:
    # rows 0 and 3: none wins -> edge omitted
    assert _edges(ArgmaxPerEdge()) == {(1, 2, "a"), (0, 3, "a"), (2, 3, "c")}
    keep_all = _edges(ArgmaxPerEdge(include_none=False))
    assert keep_all == {(0, 2, "b"), (1, 2, "a"), (0, 3, "a"), (1, 3, "a"), (2, 3, "c")}
    assert _edges(AllEdgesArgmax()) == _edges(ArgmaxPerEdge())


def test_threshold_rule() -> None:
    assert _edges(Threshold(0.3)) == {(1, 2, "a"), (1, 2, "b"), (1, 2, "c"), (2, 3, "c"), (0, 3, "a")}
    assert _edges(Threshold(0.95)) == {(1, 2, "a"), (2, 3, "c")}  # min_per_node=1 keeps the best pair
    assert _edges(Threshold(0.95, min_per_node=0)) == set()
    assert _edges(Threshold(0.9, relative=True)) == {(1, 2, "a"), (1, 2, "b"), (1, 2, "c"), (2, 3, "c")}


# ---------------------------------------------------------------- DATA
def _brute_force_exact_set(q: list[float], subset: set[int], m: int) -> float:
    total = 0.0
    for seq in itertools.product(range(len(q)), repeat=m):
        if set(seq) == subset:
            total += math.prod(q[i] for i in seq)
    return total


def _inclusion_exclusion(qs: list[float], m: int) -> float:
    n = len(qs)
    return sum((-1) ** (n - r) * sum(s) ** m for r in range(1, n + 1) for s in itertools.combinations(qs, r))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_exact_cover_probability_matches_brute_force(m: int) -> None:
    rng = random.Random(m)
    for _ in range(5):
        raw = [rng.random() for _ in range(5)]
        q = [x / sum(raw) for x in raw]
        for n in range(1, 6):
            brute = _brute_force_exact_set(q, set(range(n)), m)
            assert exact_cover_probability(q[:n], m) == pytest.approx(brute, abs=1e-12)
            assert _inclusion_exclusion(q[:n], m) == pytest.approx(brute, abs=1e-12)
        # the exact-set probabilities of all non-empty subsets sum to 1
        subsets = [s for r in range(1, 6) for s in itertools.combinations(q, r)]
        assert sum(exact_cover_probability(list(s), m) for s in subsets) == pytest.approx(1.0)


def test_exact_cover_probability_large_m_is_stable() -> None:
    q = [0.1] * 10
    # all ten categories hit in 30 draws: P = 10! S(30, 10) / 10^30, computed exactly with integers
    stirling = sum((-1) ** j * math.comb(10, j) * (10 - j) ** 30 for j in range(11)) // math.factorial(10)
    exact = math.factorial(10) * stirling / 10**30
    assert exact_cover_probability(q, 30) == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ConfigError, match="M must be an int >= 1"):
        exact_cover_probability(q, 0)


SINGLE = CellSpec.dense("single", 1, 1, OPS)  # one node, one in-edge


def _node(
    p: list[list[float]], m: int, cell: CellSpec = SINGLE, **kw: Any
) -> tuple[list[Any], int, list[float]]:
    return EGSMultinomial(samples=m, **kw).node_choice(p, cell, cell.num_inputs)


def test_data_n_star_two_by_hand() -> None:
    # q = (a .5, b .5), M = 2: P_1 = .25, P_2 = .5 -> n* = 2, keep a and b on the same edge.
    kept, n_star, probs = _node([[0.0, 0.5, 0.5, 0.0]], 2)
    assert probs == pytest.approx([0.25, 0.5]) and n_star == 2 and kept == [(0, 1), (0, 2)]
    # q = (.6, .3, .1), M = 3: P_1 = .216, P_2 = .9^3 - .6^3 - .3^3 = .486, P_3 = 3! .6 .3 .1 = .108
    kept, n_star, probs = _node([[0.0, 0.6, 0.3, 0.1]], 3)
    assert probs == pytest.approx([0.216, 0.486, 0.108]) and n_star == 2 and kept == [(0, 1), (0, 2)]


def test_data_n_star_one_by_hand() -> None:
    # q = (a .9, b .1), M = 2: P_1 = .81 > P_2 = .18 -> n* = 1
    kept, n_star, probs = _node([[0.0, 0.9, 0.1, 0.0]], 2)
    assert probs == pytest.approx([0.81, 0.18]) and n_star == 1 and kept == [(0, 1)]


def test_data_first_maximum_wins_on_ties() -> None:
    # q uniform over 3 ops, M = 3: P_2 = 6/27 = P_3 -> n* = 2
    kept, n_star, probs = _node([[0.0, 1 / 3, 1 / 3, 1 / 3]], 3)
    assert probs[1] == pytest.approx(probs[2]) and n_star == 2 and kept == [(0, 1), (0, 2)]


def test_data_merges_none_across_edges() -> None:
    # two in-edges, each 30 % none: merged none = .3 of the joint, the two ops .35 each
    cell = CellSpec.dense("two", 2, 1, OPS)
    p = [[0.3, 0.7, 0.0, 0.0], [0.3, 0.0, 0.7, 0.0]]
    kept, n_star, probs = _node(p, 3, cell)
    assert probs[0] == pytest.approx(0.35**3)
    assert probs == pytest.approx([_inclusion_exclusion([0.35, 0.35, 0.3][:n], 3) for n in (1, 2, 3)])
    assert n_star == 2 and kept == [(0, 1), (1, 2)]
    # without merging, each none would be 0.15 and rank below; merged it is a single category at 0.3
    kept, n_star, _ = _node([[0.6, 0.4, 0.0, 0.0], [0.6, 0.0, 0.4, 0.0]], 1, cell)
    assert n_star == 1 and kept == [(0, 1)]  # none (.6) wins, min_inputs=1 keeps the best real pair


def test_data_none_only_node_and_min_inputs() -> None:
    p = [[0.8, 0.2, 0.0, 0.0]]
    kept, n_star, _ = _node(p, 2, min_inputs=0)
    assert n_star == 1 and kept == []  # DATA's code: a node without input
    kept, _, _ = _node(p, 2)
    assert kept == [(0, 1)]


def test_data_n_star_maximises_brute_force_probability() -> None:
    rng = random.Random(0)
    cell = CellSpec.dense("two", 2, 1, OPS)
    for m in (2, 3, 4):
        for _ in range(5):
            rows = [[rng.random() for _ in OPS] for _ in range(2)]
            p = [[x / sum(r) for x in r] for r in rows]
            kept, n_star, probs = _node(p, m, cell, min_inputs=0)
            cats = [p[0][0] + p[1][0]] + [p[e][k] for e in range(2) for k in range(1, 4)]
            q = [c / 2 for c in cats]
            order = sorted(range(len(q)), key=lambda i: -q[i])
            brute = [_brute_force_exact_set(q, set(order[:n]), m) for n in range(1, m + 1)]
            assert probs == pytest.approx(brute, abs=1e-12)
            assert n_star == 1 + max(range(m), key=lambda i: (brute[i], -i))
            assert len(kept) == n_star - (0 in order[:n_star])


def test_data_rule_on_full_cell_gives_variable_in_degree() -> None:
    g = _edges(EGSMultinomial(samples=4), P)
    nodes = {dst for _, dst, _ in g}
    assert nodes == {2, 3} and all(op != "none" for *_, op in g)
    assert len(g) >= 3


# ---------------------------------------------------------------- derive()
def _dist(est: object = "egs") -> ArchitectureDistribution:
    d = ArchitectureDistribution(FakeSpace(), est, seed=0)  # type: ignore[arg-type]
    with torch.no_grad():
        d.logits["normal"].add_(torch.rand(5, 4, generator=torch.Generator().manual_seed(3)))
    return d


def test_derive_from_distribution_is_pure_and_deterministic() -> None:
    d = _dist()
    before = d.logits["normal"].detach().clone()
    g1 = derive(d, FakeSpace())
    g2 = derive(d, FakeSpace(), "topk_edges")
    assert g1 == g2 and g1.space == "fake" and g1.meta["rule"]["type"] == "topk_edges"
    assert torch.equal(before, d.logits["normal"]) and d.logits["normal"].grad is None
    FakeSpace().validate(g1)
    assert all(len(g1.cells["normal"].inputs_of(n)) == 2 for n in (2, 3))
    assert derive(d) == g1  # space taken from the distribution's cells


def test_derive_from_probability_mapping() -> None:
    g = derive({"normal": P}, FakeSpace(), {"type": "topk_pairs", "k": 1})
    assert {(e.src, e.dst, e.op) for e in g.cells["normal"].edges} == {(1, 2, "a"), (2, 3, "c")}
    g2 = derive({"normal": P}, {"normal": CELL}, "argmax_edge", space_name="nb-like")
    assert g2.space == "nb-like"
    assert Genotype.from_json(g2.to_json()) == g2


def test_derive_data_rule_takes_m_from_distribution() -> None:
    d = _dist({"type": "egs", "samples": 3})
    g = derive(d, FakeSpace(), "data")
    assert g.meta["rule"]["samples"] == 3
    assert g == derive(d, FakeSpace(), {"type": "data", "samples": 3})
    with pytest.raises(ConfigError, match="needs M"):
        derive({"normal": P}, FakeSpace(), "data")


def test_every_registered_rule_runs_and_is_deterministic() -> None:
    d = _dist({"type": "egs", "samples": 3})
    for name in DERIVATION_RULES.names():
        g1, g2 = derive(d, FakeSpace(), name), derive(d, FakeSpace(), name)
        assert g1 == g2 and all(e.op != "none" for e in g1.cells["normal"].edges), name


def test_derive_errors() -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"valid derivation rule names: all_edges_argmax, argmax_edge, choice, data, .*threshold, topk_edges",
    ):
        derive({"normal": P}, FakeSpace(), "top2")
    bad = P.clone()
    bad[4, 1] = float("nan")
    with pytest.raises(NumericalError, match="'normal'.*normal/2->3"):
        derive({"normal": bad}, FakeSpace())
    with pytest.raises(ConfigError, match="no probabilities for cell type 'normal'"):
        derive({"reduce": P}, FakeSpace())
    with pytest.raises(ConfigError, match=r"\[5, 4\]"):
        derive({"normal": P[:, :3]}, FakeSpace())
    with pytest.raises(ConfigError, match="needs the space"):
        derive({"normal": P})
    with pytest.raises(ConfigError, match="excluded"):
        derive({"normal": P}, FakeSpace(), {"type": "topk_edges", "exclude": list(OPS)})
    with pytest.raises(ConfigError, match="k must be an int >= 1"):
        build_rule({"type": "topk_edges", "k": 0})
    with pytest.raises(ConfigError, match="M must be an int >= 1"):
        EGSMultinomial(samples=0)
    with pytest.raises(ConfigError, match=r"threshold must be in \[0, 1\]"):
        Threshold(1.5)


def test_rule_reprs_and_configs_rebuild() -> None:
    for rule in (TopKEdges(k=1), TopKPairs(), ArgmaxPerEdge(False), EGSMultinomial(M=4), Threshold(0.2)):
        again = build_rule(rule.config())
        assert again.config() == rule.config() and type(again) is type(rule)
        assert type(rule).__name__ in repr(rule)


def test_genotype_edge_types() -> None:
    cg = TopKEdges()({"normal": P}, {"normal": CELL})["normal"]
    assert all(isinstance(e, EdgeChoice) for e in cg.edges) and cg.concat == (2, 3)


def test_space_default_rule_options_are_used_when_no_rule_is_given() -> None:
    from datanas_core import ArchitectureDistribution, derive
    from datanas_core.testing import ToySpace

    class OnePredecessor(ToySpace):
        default_rule_options = {"k": 1}

    space = OnePredecessor(num_nodes=3)
    dist = ArchitectureDistribution(space, "softmax", seed=0)
    g = derive(dist, space)
    assert all(len(g.cells["cell"].inputs_of(n)) == 1 for n in space.cell("cell").nodes)
    g2 = derive(dist, ToySpace(num_nodes=3))
    assert any(len(g2.cells["cell"].inputs_of(n)) == 2 for n in space.cell("cell").nodes)
