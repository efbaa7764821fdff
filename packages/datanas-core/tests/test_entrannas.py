"""EnTranNAS: roles, feature sharing, transit cells, DST estimator / rules / regulariser, tiny searches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import datanas_core.entrannas  # noqa: F401  (registers spaces, estimator, rules, regulariser)
from datanas_core import (
    ArchitectureDistribution,
    ConfigError,
    DartsExtSpace,
    NB201Space,
    SearchConfig,
    Searcher,
    arch_from_genotype,
    derive,
    get_space,
)
from datanas_core.entrannas import (
    CellPlan,
    DartsEnTranNASCell,
    DSTEstimator,
    DSTSparsity,
    TransitPlan,
    beta_key,
    resolve_roles,
)
from datanas_core.estimators import ESTIMATORS
from datanas_core.genotype import CellGenotype
from datanas_core.regularizers import REGULARIZERS
from datanas_core.sample import ArchSample, CellSample
from datanas_core.space.darts import DartsSearchCell
from datanas_core.space.mixed import PreparedCellSample

DARTS_KW = {"C": 4, "layers": 5, "num_classes": 3}
NB201_KW = {"C": 4, "N": 1, "num_classes": 3}


class _Task:
    def loss(self, model, batch, arch):  # noqa: ANN001, ANN201
        x, y = batch
        logits = model(x, arch)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}


def _data(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)) for _ in range(n)]


def _spread_logits(dist: ArchitectureDistribution, std: float = 1.5, seed: int = 0) -> None:
    """Separate the architecture logits so that DST keeps only some pairs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dist.logits.values():
            p.copy_(std * torch.randn(p.shape, generator=g))


def _support(w: torch.Tensor, spec, exclude=("none",)) -> set[tuple[int, int, str]]:  # noqa: ANN001
    out = set()
    for r, k in torch.nonzero(w.detach() > 0).tolist():
        if spec.ops[k] not in exclude:
            src, dst = spec.edges[r]
            out.add((src, dst, spec.ops[k]))
    return out


def _triples(cell: CellGenotype) -> set[tuple[int, int, str]]:
    return {(e.src, e.dst, e.op) for e in cell.edges}


# ------------------------------------------------------------------------------ registration / roles
def test_registered_names() -> None:
    from datanas_core.derive import DERIVATION_RULES
    from datanas_core.space.base import SPACES

    assert {"entrannas_darts", "entrannas_nb201"} <= set(SPACES.names())
    assert "dst" in ESTIMATORS.names()
    assert {"dst", "entrannas", "entrannas_nb201"} <= set(DERIVATION_RULES.names())
    assert "dst_sparsity" in REGULARIZERS.names()
    # genotypes are tagged with the core space they belong to (retrainable with the usual networks)
    assert get_space("entrannas_darts").name == "darts_ext"
    assert get_space("entrannas_darts", extended=False).name == "darts"
    assert get_space("entrannas_nb201").name == "nb201"


def test_default_roles_one_engine_cell_per_type() -> None:
    net = get_space("entrannas_darts").build_supernet(**DARTS_KW)
    types = [c.cell_type for c in net.cells]
    assert types == ["normal", "reduce", "normal", "reduce", "normal"]
    assert net.roles == ("engine", "engine", "transit", "transit", "transit")
    assert [c.role for c in net.cells] == list(net.roles)
    nb = get_space("entrannas_nb201").build_supernet(C=4, N=2, num_classes=3)
    assert nb.roles == ("engine",) + ("transit",) * 5


@pytest.mark.parametrize(
    ("engine_cells", "transit"),
    [("first", (2, 3, 4)), ("last", (0, 1, 2)), ("all", ()), (2, (4,)), ([0, -2], (1, 2, 4))],
)
def test_engine_cell_placement(engine_cells, transit) -> None:  # noqa: ANN001
    types = ["normal", "reduce", "normal", "reduce", "normal"]
    roles = resolve_roles(types, engine_cells)
    assert tuple(i for i, r in enumerate(roles) if r == "transit") == transit


def test_engine_cells_errors_name_the_problem() -> None:
    types = ["normal", "reduce", "normal"]
    with pytest.raises(ConfigError, match="reduce"):
        resolve_roles(types, [0])
    with pytest.raises(ConfigError, match="out of range"):
        resolve_roles(types, [7])
    with pytest.raises(ConfigError, match="'first', 'last', 'all'"):
        resolve_roles(types, "middle")
    with pytest.raises(ConfigError, match="engine_cells"):
        get_space("entrannas_darts", engine_cells="middle")
    with pytest.raises(ConfigError, match="transit_weights"):
        get_space("entrannas_darts", transit_weights="soft")


def test_role_does_not_change_parameters() -> None:
    space = get_space("entrannas_darts")
    a = space.build_supernet(**DARTS_KW)
    b = space.build_supernet(**DARTS_KW, engine_cells="all")
    assert list(a.state_dict()) == list(b.state_dict())
    b.load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------------------ DST estimator
def _dst_dist(space_name: str = "entrannas_darts", seed: int = 0, **opts) -> ArchitectureDistribution:  # noqa: ANN003
    return ArchitectureDistribution(get_space(space_name), {"type": "dst", **opts}, seed=seed)


@pytest.mark.parametrize("normalize", ["edge", "node"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dst_keeps_at_least_one_input_per_node_any_in_degree(normalize: str, seed: int) -> None:
    dist = _dst_dist(normalize=normalize)
    _spread_logits(dist, std=3.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    degrees = set()
    with torch.no_grad():
        for key in dist.extra:  # random thresholds, some beyond the ceiling
            dist.extra[key].copy_(4.0 * torch.randn(dist.extra[key].shape, generator=g) + 2.0)
    arch = dist.sample().detach()
    for ct, spec in dist.cells.items():
        w = arch[ct].weights
        none = spec.ops.index("none")
        assert torch.all(w[:, none] == 0)
        for node in spec.nodes:
            rows = spec.in_edges(node)
            kept = int((w[rows] > 0).sum())
            assert kept >= 1, f"{ct} node {node} kept no input"
            degrees.add(len({r for r in rows if bool((w[r] > 0).any())}))
            if normalize == "node":
                assert float(w[rows].sum()) == pytest.approx(1.0, abs=1e-5)
        if normalize == "edge":
            sums = w.sum(-1)
            assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]), atol=1e-5)
    assert len(degrees) > 1  # variable in-degree


def test_dst_formula_by_hand() -> None:
    """q = relu(p / max_node p - sigmoid(beta)) per allowed op, renormalised per edge."""
    dist = _dst_dist()
    _spread_logits(dist, std=1.0, seed=3)
    spec = dist.cells["normal"]
    with torch.no_grad():
        dist.extra[beta_key("normal")].copy_(torch.tensor([-1.0, 0.0, 0.5, 1.0]))
    w = dist.probs()["normal"].detach()
    p = torch.softmax(dist.logits["normal"].detach(), -1).clone()
    p[:, 0] = 0  # none excluded
    expected = torch.zeros_like(p)
    for u, node in enumerate(spec.nodes):
        rows = spec.in_edges(node)
        t = torch.sigmoid(dist.extra[beta_key("normal")][u].detach())
        q = F.relu(p[rows] / p[rows].max() - t)
        expected[rows] = q / q.sum(-1, keepdim=True).clamp_min(1e-30) * (q.sum(-1, keepdim=True) > 0)
    assert torch.allclose(w, expected, atol=1e-6)


def test_dst_gradients_reach_alpha_and_beta() -> None:
    dist = _dst_dist()
    _spread_logits(dist, std=0.3, seed=1)
    arch = dist.sample()
    target = {
        ct: torch.rand(s.weights.shape, generator=torch.Generator().manual_seed(5)) for ct, s in arch.items()
    }
    loss = sum((arch[ct].weights * target[ct]).sum() for ct in arch)
    loss.backward()
    for ct in dist.cells:
        assert dist.logits[ct].grad is not None and bool(dist.logits[ct].grad.abs().sum() > 0)
        gb = dist.extra[beta_key(ct)].grad
        assert gb is not None and torch.isfinite(gb).all() and bool(gb.abs().sum() > 0)


def test_dst_ops_per_edge_one_and_auto_normalisation() -> None:
    est = DSTEstimator(ops_per_edge=1)
    assert est.normalize == "node"
    assert DSTEstimator().normalize == "edge"
    dist = _dst_dist("entrannas_nb201", ops_per_edge=1)
    _spread_logits(dist, std=0.5)
    w = dist.sample()["cell"].weights
    assert int((w > 0).sum(-1).max()) <= 1


def test_dst_option_errors() -> None:
    for bad in ({"normalize": "row"}, {"threshold_init": 1.0}, {"ops_per_edge": 0}, {"max_threshold": 1.5}):
        with pytest.raises(ConfigError):
            DSTEstimator(**bad)
    with pytest.raises(ConfigError, match="thresholds"):
        DSTEstimator().probs(torch.zeros(14, 8), get_space("darts").cells()["normal"])


def test_distribution_passes_extra_to_probs_and_mode_only_for_dst() -> None:
    dist = _dst_dist()
    _spread_logits(dist, std=1.0)
    probs = dist.probs()
    sample, mode = dist.sample(), dist.mode()
    for ct in dist.cells:
        assert torch.equal(probs[ct], sample[ct].weights)
        assert torch.equal(mode[ct].weights, sample[ct].weights)
    with torch.no_grad():
        dist.extra[beta_key("normal")].fill_(3.0)  # raising the thresholds changes the view
    assert not torch.equal(dist.probs()["normal"], probs["normal"])
    soft = ArchitectureDistribution(get_space("darts"), "softmax", seed=0)
    assert torch.allclose(soft.probs()["normal"], torch.softmax(soft.logits["normal"], -1))


# ------------------------------------------------------------------------------------------ DST rules
def test_dst_genotype_equals_engine_active_graph() -> None:
    dist = _dst_dist(seed=4)
    _spread_logits(dist, std=1.5, seed=4)
    space = get_space("entrannas_darts")
    g = derive(dist, space, "dst")
    space.validate(g)
    DartsExtSpace().validate(g)
    arch = dist.sample()
    for ct, spec in dist.cells.items():
        engine_active = _support(arch[ct].weights, spec)
        assert _triples(g.cells[ct]) == engine_active
        # the native (sparse) executor runs exactly those pairs
        prep = PreparedCellSample.from_sample(arch[ct], spec.ops, spec.num_edges)
        ran = {(spec.edges[e][0], spec.edges[e][1], spec.ops[k]) for e, ks in enumerate(prep.run) for k in ks}
        assert ran == engine_active
    # the default rule of the space is the same graph
    assert derive(dist, space) == g


def test_dst_rule_rejects_non_dst_probabilities_and_entrannas_rule_falls_back() -> None:
    soft = ArchitectureDistribution(get_space("darts"), "softmax", seed=0)
    _spread_logits(soft, std=1.0)
    with pytest.raises(ConfigError, match="not DST weights"):
        derive(soft, get_space("darts"), {"type": "dst", "strict": True})
    dense = derive(soft, get_space("darts_ext"), "dst")  # non-strict: warns and keeps every pair
    assert all(len(dense.cells[ct].edges) == 14 * 7 for ct in ("normal", "reduce"))
    auto = derive(soft, get_space("entrannas_darts", extended=False), "entrannas")
    top2 = derive(soft, get_space("darts"), "topk_edges")
    assert auto.cells == top2.cells
    nb = ArchitectureDistribution(get_space("nb201"), "softmax", seed=0)
    _spread_logits(nb, std=1.0)
    assert (
        derive(nb, get_space("entrannas_nb201")).cells == derive(nb, get_space("nb201"), "argmax_edge").cells
    )


# ------------------------------------------------------------------------------------------ feature sharing
def _softmax_cell_sample(spec, seed: int) -> CellSample:  # noqa: ANN001
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(spec.num_edges, spec.num_ops, generator=g), -1)
    return CellSample(w, torch.ones_like(w, dtype=torch.bool), w, None, False)


def _tie_to_darts_cell(shared: DartsEnTranNASCell, plain: DartsSearchCell, spec) -> None:  # noqa: ANN001
    plain.preprocess0.load_state_dict(shared.preprocess0.state_dict())
    plain.preprocess1.load_state_dict(shared.preprocess1.state_dict())
    for e in range(spec.num_edges):
        plain.edges[e].load_state_dict(shared.ops[shared.slot_of_edge[e]].state_dict())


@pytest.mark.parametrize("cell_type", ["normal", "reduce"])
def test_feature_shared_engine_cell_equals_darts_cell_with_tied_weights(cell_type: str) -> None:
    torch.manual_seed(0)
    spec = get_space("darts").cells()[cell_type]
    shared = DartsEnTranNASCell(spec, 6, 6, 4, False, role="engine", feature_sharing=True)
    plain = DartsSearchCell(spec, 6, 6, 4, False)
    assert shared.num_modules == 5 and len(plain.edges) == 14
    _tie_to_darts_cell(shared, plain, spec)
    s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    sample = _softmax_cell_sample(spec, 1)
    prep = PreparedCellSample.from_sample(sample, spec.ops, spec.num_edges)
    out_shared = shared(s0, s1, CellPlan(prep, None))
    out_plain = plain(s0, s1, prep)
    assert out_shared.shape == out_plain.shape
    assert torch.allclose(out_shared, out_plain, atol=1e-5)
    # the gradient of a shared module is the sum of its tied copies' gradients
    out_shared.square().sum().backward()
    out_plain.square().sum().backward()
    src = 1
    slot = shared.slot_of_edge[spec.edges.index((src, 3))]
    name = "ops.3.0.1.weight"  # sep_conv_3x3 (slot 3 after the three parameter-free ops): a depthwise conv
    g_shared = dict(shared.ops[slot].named_parameters())[name].grad
    g_tied = sum(
        dict(plain.edges[e].named_parameters())[name].grad for e, (s, _) in enumerate(spec.edges) if s == src
    )
    assert torch.allclose(g_shared, g_tied, atol=1e-5)


def test_feature_shared_cells_equal_unshared_cells_in_both_roles() -> None:
    torch.manual_seed(0)
    spec = get_space("darts").cells()["normal"]
    genotype = CellGenotype(
        [
            (0, 2, "sep_conv_3x3"),
            (1, 2, "sep_conv_3x3"),
            (0, 3, "sep_conv_3x3"),
            (2, 3, "max_pool_3x3"),
            (1, 4, "skip_connect"),
            (0, 5, "dil_conv_3x3"),
            (4, 5, "avg_pool_3x3"),
            (1, 5, "sep_conv_3x3"),
        ],
        spec.concat,
    )
    transit = TransitPlan.from_genotype(genotype, spec)
    sample = _softmax_cell_sample(spec, 2)
    prep = PreparedCellSample.from_sample(sample, spec.ops, spec.num_edges)
    s0, s1 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for role in ("engine", "transit"):
        shared = DartsEnTranNASCell(spec, 4, 4, 4, False, role=role, feature_sharing=True)
        unshared = DartsEnTranNASCell(spec, 4, 4, 4, False, role=role, feature_sharing=False)
        unshared.preprocess0.load_state_dict(shared.preprocess0.state_dict())
        unshared.preprocess1.load_state_dict(shared.preprocess1.state_dict())
        for e in range(spec.num_edges):
            unshared.ops[e].load_state_dict(shared.ops[shared.slot_of_edge[e]].state_dict())
        a = shared(s0, s1, CellPlan(prep, transit))
        b = unshared(s0, s1, CellPlan(prep, transit))
        assert torch.allclose(a, b, atol=1e-5), role


# ------------------------------------------------------------------------------------------ transit cells
def test_transit_cell_runs_exactly_the_derived_graph_without_alpha_gradient() -> None:
    torch.manual_seed(0)
    space = get_space("entrannas_darts")
    dist = ArchitectureDistribution(space, "dst", seed=0)
    _spread_logits(dist, std=2.0, seed=7)
    spec = dist.cells["reduce"]
    arch = dist.sample()
    net = space.build_supernet(**DARTS_KW)
    transit_cell = net.cells[3]
    assert transit_cell.role == "transit" and transit_cell.cell_type == "reduce"
    plan = net.prepare(arch)["reduce"]
    assert plan.transit.genotype == derive(dist, space).cells["reduce"]
    s0, s1 = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 4, 4)  # outputs of cells 1 and 2
    out = transit_cell(s0, s1, plan)
    # by hand: each node sums op(source) over its derived (source, op) pairs, with the cell's shared modules
    states = [transit_cell.preprocess0(s0), transit_cell.preprocess1(s1)]
    for node in spec.nodes:
        acc = 0
        for e in plan.transit.genotype.inputs_of(node):
            row = spec.edge_index[(e.src, e.dst)]
            acc = acc + transit_cell.ops[transit_cell.slot_of_edge[row]].op(e.op)(states[e.src])
        states.append(acc)
    assert torch.allclose(out, torch.cat(states[2:], 1), atol=1e-5)
    params = list(dist.parameters())
    grads = torch.autograd.grad(out.sum(), params, allow_unused=True)
    assert all(g is None for g in grads)
    engine_cell = net.cells[1]
    eng = engine_cell(torch.randn(2, 12, 8, 8), torch.randn(2, 16, 8, 8), plan)  # stem and cell 0
    grads = torch.autograd.grad(eng.sum(), params, allow_unused=True)
    assert grads[list(dist.logits).index("reduce")] is not None


def test_detached_transit_weights_scale_pairs_without_alpha_gradient() -> None:
    space = get_space("entrannas_darts")
    dist = _dst_dist(seed=2)
    _spread_logits(dist, std=1.0, seed=2)
    plain = space.build_supernet(**DARTS_KW)
    weighted = space.build_supernet(**DARTS_KW, transit_weights="detached")
    weighted.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    arch = dist.sample()
    feats_plain = plain.forward_intermediates(x, arch, intermediates_only=True)
    feats_weighted = weighted.forward_intermediates(x, arch, intermediates_only=True)
    assert torch.allclose(feats_plain[2], feats_weighted[2])  # stem + engine cells 0, 1: identical
    assert not torch.allclose(feats_plain[3], feats_weighted[3])  # cell 2 is the first transit cell
    cell = weighted.cells[2]
    plan = weighted.prepare(arch)["normal"]
    out = cell(feats_weighted[1].detach(), feats_weighted[2].detach(), plan)
    assert all(g is None for g in torch.autograd.grad(out.sum(), list(dist.parameters()), allow_unused=True))


def test_space_config_identifies_the_method() -> None:
    cfg = get_space("entrannas_darts", engine_cells=[0, 1], feature_sharing=False).config()
    assert cfg["name"] == "darts_ext" and cfg["method"] == "entrannas"
    assert cfg["engine_cells"] == [0, 1] and cfg["feature_sharing"] is False and cfg["rule"] == "entrannas"
    assert get_space("entrannas_nb201").config()["rule"] == "entrannas_nb201"
    with pytest.raises(ConfigError, match="alias"):
        get_space("entrannas_nb201").build_supernet(C=4, N=1, layers=2)


def test_fixed_genotype_code_runs_the_genotype_in_every_cell() -> None:
    """arch_from_genotype (the 'child' evaluation) makes engine and transit cells run the same graph."""
    space = get_space("entrannas_darts")
    dist = _dst_dist(seed=1)
    _spread_logits(dist, std=2.0, seed=1)
    g = derive(dist, space)
    fixed = arch_from_genotype(g, space)
    net = space.build_supernet(**DARTS_KW)
    assert net.transit_genotype(fixed) == dict(g.cells)
    all_engine = space.build_supernet(**DARTS_KW, engine_cells="all")
    all_engine.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(net(x, fixed), all_engine(x, fixed), atol=1e-5)


def test_nb201_dst_derives_the_engine_topology_with_one_op_per_edge() -> None:
    space = get_space("entrannas_nb201")
    net = space.build_supernet(**NB201_KW)
    dist = ArchitectureDistribution(space, "dst", seed=0)
    _spread_logits(dist, std=0.3, seed=3)
    arch = dist.sample()
    assert net(torch.randn(2, 3, 8, 8), arch).shape == (2, 3)
    g = derive(dist, space)
    NB201Space().validate(g)
    spec = dist.cells["cell"]
    engine_edges = {(s, d) for s, d, _ in _support(arch["cell"].weights, spec)}
    assert {(e.src, e.dst) for e in g.cells["cell"].edges} == engine_edges
    assert net.transit_genotype(arch)["cell"] == g.cells["cell"]
    # a rule without the projection is refused by the NB201 supernet
    unprojected = get_space("entrannas_nb201", rule="dst").build_supernet(**NB201_KW)
    with pytest.raises(ConfigError, match="several ops"):
        unprojected(torch.randn(2, 3, 8, 8), arch)
    # with ops_per_edge=1 in the estimator, the ops coincide too
    dist1 = ArchitectureDistribution(space, {"type": "dst", "ops_per_edge": 1}, seed=0)
    _spread_logits(dist1, std=0.3, seed=3)
    w = dist1.sample()["cell"].weights
    assert _triples(derive(dist1, space).cells["cell"]) == _support(w, spec)


# ------------------------------------------------------------------------------------------ searches
class _Recorder:
    """Forward pre-hook on a transit cell: records the derived graph each forward pass used."""

    def __init__(self) -> None:
        self.graphs: list[CellGenotype] = []

    def __call__(self, module, args) -> None:  # noqa: ANN001
        self.graphs.append(args[-1].transit.genotype)


@pytest.mark.parametrize(
    ("space_name", "estimator", "kwargs"),
    [
        ("entrannas_darts", {"type": "dst"}, DARTS_KW),
        ("entrannas_darts", {"type": "softmax"}, DARTS_KW),
        ("entrannas_nb201", {"type": "dst"}, {"C": 4, "N": 2, "num_classes": 3}),
    ],
)
def test_transit_cells_follow_the_derived_genotype_at_every_step(space_name, estimator, kwargs) -> None:  # noqa: ANN001
    space = get_space(space_name)
    est = dict(estimator)
    cfg = SearchConfig(
        epochs=1,
        estimator=est.pop("type"),
        estimator_options=est,
        executor="sparse",
        regularizers=(),
        a_lr=0.3,  # large, so the derived graph changes between steps
        a_weight_decay=0.0,
    )
    s = Searcher(space, _Task(), cfg, supernet_kwargs=kwargs)
    if cfg.estimator == "dst":  # some pairs below the thresholds, several still competing
        _spread_logits(s.distribution, std=1.5 if space_name == "entrannas_darts" else 0.2, seed=2)
    transit = next(c for c in s.supernet.cells if getattr(c, "role", None) == "transit")
    rec = _Recorder()
    transit.register_forward_pre_hook(rec)
    ct = transit.cell_type
    data = _data(8, seed=1)
    seen = set()
    for i in range(4):
        before = s.derive()
        n0 = len(rec.graphs)
        s.step(data[2 * i], data[2 * i + 1])
        after = s.derive()
        arch_graph, weight_graph = rec.graphs[n0], rec.graphs[-1]
        assert arch_graph == before.cells[ct]  # alpha step: the graph derived before the update
        assert weight_graph == after.cells[ct]  # weight step: re-derived from the updated alpha
        seen.add(after.cells[ct])
    assert len(seen) > 1, "alpha never changed the derived graph; the test would not detect a stale graph"


@pytest.mark.parametrize(
    ("space_name", "estimator", "options", "kwargs", "check_space"),
    [
        ("entrannas_darts", "dst", {"init_std": 1.0}, DARTS_KW, DartsExtSpace()),
        ("entrannas_nb201", "dst", {}, NB201_KW, NB201Space()),
        ("entrannas_nb201", "dst", {"ops_per_edge": 1}, NB201_KW, NB201Space()),
        ("entrannas_nb201", "softmax", {}, NB201_KW, NB201Space()),
    ],
)
def test_tiny_search_end_to_end(space_name, estimator, options, kwargs, check_space) -> None:  # noqa: ANN001
    space = get_space(space_name)
    regs = ({"type": "dst_sparsity", "weight": 0.01},) if estimator == "dst" else ()
    cfg = SearchConfig(epochs=1, estimator=estimator, estimator_options=options, regularizers=regs)
    s = Searcher(space, _Task(), cfg, supernet_kwargs=kwargs)
    alpha0 = [p.detach().clone() for p in s.distribution.parameters()]
    data = _data(4)
    result = s.fit(data[:2], data[2:], eval_loader=data[2:])
    check_space.validate(result.genotype)
    check_space.build_derived(result.genotype, **kwargs)
    assert any(not torch.equal(a, p) for a, p in zip(alpha0, s.distribution.parameters(), strict=True))
    rec = result.history[-1]
    assert 0.0 <= rec["child_acc"] <= 1.0 and 0.0 <= rec["search_acc"] <= 1.0
    state = s.state_dict()
    s2 = Searcher(space, _Task(), cfg, supernet_kwargs=kwargs)
    s2.load_state_dict(state)
    assert s2.derive() == s.derive()


# ------------------------------------------------------------------------------------------ regulariser
def test_dst_sparsity_pushes_thresholds_up() -> None:
    dist = _dst_dist()
    _spread_logits(dist, std=0.5)
    for form in ("mass", "threshold"):
        dist.zero_grad()
        reg = DSTSparsity(weight=1.0, form=form)
        reg(dist).backward()
        for ct in dist.cells:
            assert bool((dist.extra[beta_key(ct)].grad <= 0).all())
            assert bool((dist.extra[beta_key(ct)].grad < 0).any())
    soft = ArchitectureDistribution(get_space("darts"), "softmax", seed=0)
    with pytest.raises(ConfigError, match="dst"):
        DSTSparsity()(soft)
    with pytest.raises(ConfigError, match="form"):
        DSTSparsity(form="l1")


def test_dst_support_shrinks_as_thresholds_rise() -> None:
    dist = _dst_dist()
    _spread_logits(dist, std=0.5)
    counts = []
    for b in (-2.0, 0.0, 2.0, 6.0):
        with torch.no_grad():
            for key in dist.extra:
                dist.extra[key].fill_(b)
        counts.append(sum(int((w > 0).sum()) for w in dist.probs().values()))
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert counts[-1] >= sum(spec.num_nodes for spec in dist.cells.values())


def test_sample_is_mapping_of_cell_samples() -> None:
    arch = _dst_dist().sample()
    assert isinstance(arch, ArchSample) and not arch.hard
