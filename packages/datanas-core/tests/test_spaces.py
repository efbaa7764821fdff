from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from datanas_core.errors import (
    ConfigError,
    GenotypeError,
    IncompatibleGenotypeError,
    SearchSpaceError,
    UnknownNameError,
)
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.published import load_published
from datanas_core.sample import ArchSample, CellSample
from datanas_core.space.base import SPACES
from datanas_core.space.darts import DARTS_OPS, DRNAS_OPS, DartsExtSpace, DartsSpace
from datanas_core.space.nb201 import NB201_OPS, NB201Space
from datanas_core.space.networks import count_parameters, drop_path

BEST_NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: intra-op threads only add contention (and stall badly on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _soft_arch(space, seed: int = 0) -> ArchSample:
    g = _gen(seed)
    cells = {}
    for ct, spec in space.cells().items():
        w = torch.softmax(torch.randn(spec.num_edges, spec.num_ops, generator=g), -1).requires_grad_(True)
        cells[ct] = CellSample(w, torch.ones_like(w, dtype=torch.bool), w.detach())
    return ArchSample(cells)


def _one_hot_arch(space, seed: int = 0, grad_proxy: bool = True) -> ArchSample:
    """GDAS-like sample: one non-none op per edge, straight-through-style leaf weights."""
    g = _gen(seed)
    cells = {}
    for ct, spec in space.cells().items():
        idx = torch.randint(1, spec.num_ops, (spec.num_edges,), generator=g)
        w = nn.functional.one_hot(idx, spec.num_ops).float().requires_grad_(True)
        cells[ct] = CellSample(w, w.detach() != 0, w.detach(), grad_proxy=grad_proxy)
    return ArchSample(cells, hard=True)


def _genotype_code(space, genotype: Genotype) -> dict[str, torch.Tensor]:
    codes = {}
    for ct, spec in space.cells().items():
        w = torch.zeros(spec.num_edges, spec.num_ops)
        for e in genotype.cells[ct].edges:
            w[spec.edge_index[(e.src, e.dst)], spec.op_index(e.op)] = 1.0
        codes[ct] = w
    return codes


def _randomise_bn_stats(model: nn.Module, seed: int) -> None:
    g = _gen(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _copy(src: nn.Module, dst: nn.Module) -> None:
    """Copy matching state (conv weights, BN statistics); affine BN parameters of dst stay 1/0."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    assert not unexpected
    assert all(k.endswith(("weight", "bias")) for k in missing)


# ----------------------------------------------------------------------------------------------------------
# Registry and specs
# ----------------------------------------------------------------------------------------------------------


def test_spaces_are_registered_by_name() -> None:
    assert {"darts", "darts_ext", "nb201"} <= set(SPACES.names())
    assert SPACES.build("darts").name == "darts" and SPACES.build("darts").strict
    ext = SPACES.build("darts_ext")
    assert isinstance(ext, DartsExtSpace) and ext.name == "darts_ext" and not ext.strict
    assert DartsSpace(extended=True).name == "darts_ext"
    assert SPACES.build({"type": "darts", "ops": DRNAS_OPS}).ops == DRNAS_OPS
    with pytest.raises(UnknownNameError, match="darts"):
        SPACES.get("dart")


def test_darts_cell_specs() -> None:
    cells = DartsSpace().cells()
    assert list(cells) == ["normal", "reduce"]
    for ct, spec in cells.items():
        assert spec.num_edges == 14 and spec.ops == DARTS_OPS and spec.concat == (2, 3, 4, 5)
        assert spec.reduction is (ct == "reduce")
    small = DartsSpace(steps=3, multiplier=2).cells()["normal"]
    assert small.num_edges == 2 + 3 + 4 and small.concat == (3, 4)
    assert DartsSpace(ops=DRNAS_OPS).cells()["reduce"].num_ops == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ops": []}, "must not be empty"),
        ({"ops": ["skip_connect", "skip_connect"]}, "distinct"),
        ({"steps": 0}, "steps"),
        ({"multiplier": 5}, "cannot exceed"),
    ],
)
def test_darts_space_rejects_bad_options(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DartsSpace(**kwargs)


def test_unknown_op_in_space_lists_registered_ops() -> None:
    with pytest.raises(UnknownNameError, match="sep_conv_3x3"):
        DartsSpace(ops=["none", "sep_conv_9x9"])


def test_nb201_cell_spec() -> None:
    spec = NB201Space().cells()["cell"]
    assert spec.num_inputs == 1 and spec.num_edges == 6 and spec.ops == NB201_OPS and spec.concat == (3,)
    assert NB201Space.default_rule == "argmax_edge"


# ----------------------------------------------------------------------------------------------------------
# Supernets
# ----------------------------------------------------------------------------------------------------------


def test_darts_supernet_soft_forward_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    space = DartsSpace()
    net = space.build_supernet(C=4, layers=3, num_classes=5)
    arch = _soft_arch(space)
    x = torch.randn(2, 3, 8, 8)
    y = net(x, arch)
    assert y.shape == (2, 5)
    y.sum().backward()
    for ct in ("normal", "reduce"):
        grad = arch[ct].weights.grad
        assert torch.count_nonzero(grad[:, 1:]) == 14 * 7  # every real op receives gradient
        assert torch.all(grad[:, 0] == 0)  # none has zero output and zero gradient
    assert net.forward_features(x, arch).shape == (2, net.num_features, 2, 2)
    assert len(net.weight_parameters()) == len(list(net.parameters()))
    assert all(not bn.affine for c in net.cells for bn in c.modules() if isinstance(bn, nn.BatchNorm2d))


def test_darts_supernet_one_hot_with_grad_proxy_reaches_every_logit() -> None:
    torch.manual_seed(0)
    space = DartsSpace()
    net = space.build_supernet(C=4, layers=3)
    arch = _one_hot_arch(space)
    net(torch.randn(2, 3, 8, 8), arch).sum().backward()
    for ct in ("normal", "reduce"):
        assert torch.all(arch[ct].weights.grad != 0)
    no_proxy = _one_hot_arch(space, grad_proxy=False)
    net(torch.randn(2, 3, 8, 8), no_proxy).sum().backward()
    for ct in ("normal", "reduce"):
        assert torch.count_nonzero(no_proxy[ct].weights.grad) <= 14


def test_darts_supernet_handles_nodes_without_any_active_edge() -> None:
    space = DartsSpace()
    net = space.build_supernet(C=4, layers=3, pool_bn=False)
    codes = {ct: torch.zeros(14, 8) for ct in ("normal", "reduce")}
    codes["normal"][0, 4] = 1.0  # only edge 0->2 in normal cells; reduce cells compute nothing
    y = net(torch.randn(2, 3, 8, 8), ArchSample.fixed(codes))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_drnas_variant_supernet_has_seven_columns() -> None:
    space = DartsSpace(ops=DRNAS_OPS)
    net = space.build_supernet(C=4, layers=2)
    assert net(torch.randn(2, 3, 8, 8), _soft_arch(space)).shape == (2, 10)


def test_supernet_arch_errors_name_the_problem() -> None:
    space = DartsSpace()
    net = space.build_supernet(C=4, layers=3)
    arch = _soft_arch(space)
    with pytest.raises(SearchSpaceError, match="needs"):
        net(torch.randn(2, 3, 8, 8), ArchSample({"normal": arch["normal"]}))
    bad = torch.zeros(13, 8)
    with pytest.raises(SearchSpaceError, match=r"expected \[14, 8\]"):
        net(torch.randn(2, 3, 8, 8), ArchSample.fixed({"normal": bad, "reduce": bad}))
    nb = NB201Space().build_supernet(C=4, N=1)
    with pytest.raises(SearchSpaceError, match="cell"):
        nb(torch.randn(2, 3, 8, 8), arch)


def test_nb201_supernet_forward_and_gradients() -> None:
    torch.manual_seed(0)
    space = NB201Space()
    net = space.build_supernet(C=4, N=1, num_classes=3)
    arch = _soft_arch(space)
    y = net(torch.randn(2, 3, 8, 8), arch)
    assert y.shape == (2, 3)
    y.sum().backward()
    grad = arch["cell"].weights.grad
    assert torch.count_nonzero(grad[:, 1:]) == 6 * 4 and torch.all(grad[:, 0] == 0)
    gdas = _one_hot_arch(space)
    net(torch.randn(2, 3, 8, 8), gdas).sum().backward()
    assert torch.all(gdas["cell"].weights.grad != 0)


# ----------------------------------------------------------------------------------------------------------
# Supernet with a one-hot code == derived network
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DARTS_V2", "DATA_M7"])
def test_darts_supernet_with_genotype_code_equals_derived_network(name: str) -> None:
    torch.manual_seed(0)
    genotype = load_published(name)
    space = DartsExtSpace() if genotype.space == "darts_ext" else DartsSpace()
    sup = space.build_supernet(C=4, layers=3, pool_bn=False)
    der = space.build_derived(genotype, C=4, layers=3)
    _randomise_bn_stats(sup, 1)
    _copy(sup.stem, der.stem)
    _copy(sup.classifier, der.classifier)
    for sc, dc in zip(sup.cells, der.cells, strict=True):
        _copy(sc.preprocess0, dc.preprocess0)
        _copy(sc.preprocess1, dc.preprocess1)
        spec = space.cells()["reduce" if sc.reduction else "normal"]
        for j, (src, dst, op) in enumerate(dc.edge_keys):
            _copy(sc.edges[spec.edge_index[(src, dst)]].op(op), dc.ops[j])
    sup.eval()
    der.eval()
    x = torch.randn(2, 3, 8, 8)
    arch = ArchSample.fixed(_genotype_code(space, genotype))
    assert torch.allclose(sup(x, arch), der(x), atol=1e-5)


def test_nb201_supernet_with_genotype_code_equals_derived_network() -> None:
    torch.manual_seed(0)
    space = NB201Space()
    genotype = space.from_string(
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    sup = space.build_supernet(C=4, N=2)
    der = space.build_derived(genotype, C=4, N=2)
    _randomise_bn_stats(sup, 2)
    for name in ("stem", "lastact", "classifier"):
        _copy(getattr(sup, name), getattr(der, name))
    spec = space.cells()["cell"]
    for sc, dc in zip(sup.cells, der.cells, strict=True):
        if not hasattr(dc, "edge_keys"):
            _copy(sc, dc)  # ResNet block
            continue
        for j, (src, dst, op) in enumerate(dc.edge_keys):
            _copy(sc.edges[spec.edge_index[(src, dst)]].op(op), dc.ops[j])
    sup.eval()
    der.eval()
    x = torch.randn(2, 3, 8, 8)
    arch = ArchSample.fixed(_genotype_code(space, genotype))
    assert torch.allclose(sup(x, arch), der(x), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Derived networks
# ----------------------------------------------------------------------------------------------------------


def test_darts_derived_forward_auxiliary_and_modes() -> None:
    torch.manual_seed(0)
    space = DartsSpace()
    net = space.build_derived(load_published("DARTS_V2"), C=4, layers=3, num_classes=7, auxiliary=True)
    x = torch.randn(2, 3, 32, 32)
    net.train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (2, 7)
    net.eval()
    assert net(x).shape == (2, 7)
    plain = space.build_derived(load_published("DARTS_V2"), C=4, layers=3)
    assert plain.train()(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert all(bn.affine for bn in plain.modules() if isinstance(bn, nn.BatchNorm2d))


def test_darts_derived_imagenet_stem() -> None:
    net = DartsSpace().build_derived(load_published("DARTS_V2"), C=8, layers=3, stem="imagenet").eval()
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert [f["reduction"] for f in net.feature_info] == [4, 8, 8, 16, 32]
    with pytest.raises(ConfigError, match="cifar, imagenet"):
        DartsSpace().build_derived(load_published("DARTS_V2"), C=8, layers=3, stem="svhn")


def test_drop_path_is_reproducible_with_a_generator_and_off_in_eval() -> None:
    torch.manual_seed(0)
    net = DartsSpace().build_derived(load_published("DARTS_V2"), C=4, layers=3, drop_path_prob=0.5)
    x = torch.randn(4, 3, 8, 8)
    net.eval()
    ref = net(x)
    net.drop_path_prob = 0.0
    assert torch.equal(net(x), ref)  # eval mode ignores drop-path
    net.drop_path_prob = 0.5
    net.train()
    outs = []
    for _ in range(2):
        net.drop_path_generator = _gen(7)
        outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    net.drop_path_prob = 0.0
    undropped = net(x)
    assert not torch.allclose(outs[0], undropped)


def test_drop_path_function() -> None:
    x = torch.ones(1000, 2, 1, 1)
    y = drop_path(x, 0.25, generator=_gen(0))
    kept = (y[:, 0, 0, 0] != 0).float()
    assert abs(kept.mean().item() - 0.75) < 0.05
    assert torch.allclose(y[kept.bool()], torch.full_like(y[kept.bool()], 1 / 0.75))
    assert drop_path(x, 0.0) is x
    with pytest.raises(ConfigError):
        drop_path(x, 1.0)


def test_darts_v2_parameter_count_matches_the_paper() -> None:
    net = DartsSpace().build_derived(load_published("DARTS_V2"), C=36, layers=20, auxiliary=True)
    n = count_parameters(net)
    assert abs(n / 3.3e6 - 1) < 0.03
    assert n == 3_349_342  # what DARTS' utils.count_parameters_in_MB prints for this model
    assert count_parameters(net, exclude_auxiliary=False) > n


def test_nb201_derived_accepts_strings_and_zero_nodes() -> None:
    space = NB201Space()
    net = space.build_derived(BEST_NB201, C=4, N=1)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    empty = space.build_derived("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", C=4, N=1)
    assert empty(torch.randn(2, 3, 8, 8)).shape == (2, 10)


# ----------------------------------------------------------------------------------------------------------
# timm-style API
# ----------------------------------------------------------------------------------------------------------


def _network(case: int):
    torch.manual_seed(0)
    darts, nb = DartsSpace(), NB201Space()
    if case == 0:
        return "darts-derived", darts.build_derived(load_published("DARTS_V2"), C=4, layers=3), ()
    if case == 1:
        return (
            "darts-imagenet",
            darts.build_derived(load_published("DARTS_V2"), C=8, layers=3, stem="imagenet"),
            (),
        )
    if case == 2:
        return "nb201-derived", nb.build_derived(BEST_NB201, C=4, N=1), ()
    if case == 3:
        return "darts-supernet", darts.build_supernet(C=4, layers=3), (_soft_arch(darts),)
    return "nb201-supernet", nb.build_supernet(C=4, N=1), (_soft_arch(nb),)


@pytest.mark.parametrize("case", range(5))
def test_feature_info_matches_forward_intermediates(case: int) -> None:
    name, net, args = _network(case)
    net.eval()
    size = 32 if name == "darts-imagenet" else 16
    x = torch.randn(2, 3, size, size)
    final, feats = net.forward_intermediates(x, *args)
    assert len(feats) == len(net.feature_info), name
    for info, f in zip(net.feature_info, feats, strict=True):
        assert f.shape[1] == info["num_chs"], (name, info)
        assert f.shape[-1] == -(-size // info["reduction"]), (name, info)
        assert net.get_submodule(info["module"]) is not None
    assert torch.allclose(final, net.forward_features(x, *args))
    last2 = net.forward_intermediates(x, *args, indices=2, intermediates_only=True)
    assert [t.shape for t in last2] == [t.shape for t in feats[-2:]]
    picked = net.forward_intermediates(x, *args, indices=[0, -1], intermediates_only=True)
    assert torch.allclose(picked[1], feats[-1])
    early, few = net.forward_intermediates(x, *args, indices=[1], stop_early=True)
    assert torch.allclose(few[0], feats[1]) and torch.allclose(early, feats[1])  # stopped: no final norm
    with pytest.raises(ConfigError, match="out of range"):
        net.forward_intermediates(x, *args, indices=[len(feats)])
    with pytest.raises(ConfigError, match="NCHW"):
        net.forward_intermediates(x, *args, output_fmt="NHWC")


@pytest.mark.parametrize("case", range(5))
def test_head_api(case: int) -> None:
    name, net, args = _network(case)
    net.eval()
    x = torch.randn(2, 3, 32 if name == "darts-imagenet" else 8, 32 if name == "darts-imagenet" else 8)
    feats = net.forward_features(x, *args)
    assert net.forward_head(feats, pre_logits=True).shape == (2, net.num_features)
    assert net.forward_head(feats).shape == (2, net.num_classes)
    net.reset_classifier(5)
    assert net.num_classes == 5 and net.get_classifier().out_features == 5
    assert net(x, *args).shape == (2, 5)
    net.reset_classifier(0)
    assert net(x, *args).shape == (2, net.num_features)
    with pytest.raises(ConfigError, match="avg"):
        net.reset_classifier(3, global_pool="max")


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def _darts_genotype(normal_extra=(), space="darts") -> Genotype:
    normal = [(0, 2, "sep_conv_3x3"), (1, 2, "skip_connect"), (0, 3, "sep_conv_3x3"), (1, 3, "sep_conv_5x5")]
    normal += [(0, 4, "dil_conv_3x3"), (2, 4, "skip_connect"), (1, 5, "max_pool_3x3"), (3, 5, "avg_pool_3x3")]
    normal += list(normal_extra)
    reduce = [(0, 2, "max_pool_3x3"), (1, 2, "max_pool_3x3"), (0, 3, "skip_connect"), (2, 3, "skip_connect")]
    reduce += [(0, 4, "max_pool_3x3"), (3, 4, "skip_connect"), (1, 5, "dil_conv_5x5"), (4, 5, "skip_connect")]
    cells = {
        "normal": CellGenotype(tuple(normal), (2, 3, 4, 5)),
        "reduce": CellGenotype(tuple(reduce), (2, 3, 4, 5)),
    }
    return Genotype(space, cells)


def test_darts_validation_errors_name_the_edge_and_valid_ops() -> None:
    space = DartsSpace()
    space.validate(_darts_genotype())
    bad_op = _darts_genotype()
    cells = dict(bad_op.cells)
    cells["normal"] = CellGenotype(
        tuple(e if (e.src, e.dst) != (1, 5) else type(e)(1, 5, "conv_9x9") for e in cells["normal"].edges),
        (2, 3, 4, 5),
    )
    with pytest.raises(IncompatibleGenotypeError) as exc:
        space.validate(Genotype("darts", cells))
    msg = str(exc.value)
    assert "(1, 5, 'conv_9x9')" in msg and "'normal'" in msg and "sep_conv_3x3" in msg and "none," not in msg
    off_space = _darts_genotype(normal_extra=[(4, 7, "skip_connect")])
    with pytest.raises(IncompatibleGenotypeError, match=r"\(4, 7\) is not an edge"):
        DartsExtSpace().validate(off_space)
    with pytest.raises(IncompatibleGenotypeError, match="not 'nb201'"):
        NB201Space().validate(_darts_genotype())


def test_strict_darts_needs_two_inputs_per_node_extended_does_not() -> None:
    three = _darts_genotype(normal_extra=[(2, 3, "skip_connect")])
    with pytest.raises(IncompatibleGenotypeError, match=r"node 3: 3 inputs.*darts_ext"):
        DartsSpace().validate(three)
    DartsExtSpace().validate(Genotype("darts_ext", three.cells))
    DartsExtSpace().validate(_darts_genotype())  # darts genotypes fit the extended space
    same_edge = _darts_genotype()
    cells = dict(same_edge.cells)
    edges = [e for e in cells["normal"].edges if (e.src, e.dst) != (1, 2)] + [
        EdgeChoice(0, 2, "skip_connect")
    ]
    cells["normal"] = CellGenotype(tuple(edges), (2, 3, 4, 5))
    DartsSpace().validate(Genotype("darts", cells))  # two ops on one edge (GDAS / E2NAS pairs) are allowed
    with pytest.raises(IncompatibleGenotypeError, match="no input edge"):
        cells["normal"] = CellGenotype(tuple(e for e in edges if e.dst != 5), (2, 3, 4, 5))
        DartsExtSpace().validate(Genotype("darts_ext", cells))


def test_build_derived_validates_first() -> None:
    with pytest.raises(IncompatibleGenotypeError):
        DartsSpace().build_derived(_darts_genotype(normal_extra=[(2, 3, "skip_connect")]), C=4, layers=2)


def test_nb201_validation() -> None:
    space = NB201Space()
    g = space.from_string(BEST_NB201)
    space.validate(g)
    two_ops = Genotype(
        "nb201", {"cell": CellGenotype(tuple(g.cells["cell"].edges) + ((0, 1, "skip_connect"),), (3,))}
    )
    with pytest.raises(IncompatibleGenotypeError, match=r"edge \(0, 1\) carries two ops"):
        space.validate(two_ops)
    with pytest.raises(IncompatibleGenotypeError, match="none"):
        space.validate(Genotype("nb201", {"cell": CellGenotype(((0, 1, "none"),), (3,))}))
    with pytest.raises(IncompatibleGenotypeError, match="concat"):
        space.validate(Genotype("nb201", {"cell": CellGenotype(((0, 1, "skip_connect"),), (2,))}))


# ----------------------------------------------------------------------------------------------------------
# NB201 string form
# ----------------------------------------------------------------------------------------------------------


def test_nb201_all_15625_cells_round_trip() -> None:
    space = NB201Space()
    seen = set()
    for ops in itertools.product(NB201_OPS, repeat=6):
        s = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
        g = space.from_string(s)
        assert space.to_string(g) == s
        seen.add(g)
    assert len(seen) == 15625


def test_nb201_string_maps_to_edges() -> None:
    g = NB201Space().from_string(BEST_NB201)
    assert [e.to_list() for e in g.cells["cell"].edges] == [
        [0, 1, "nor_conv_3x3"],
        [0, 2, "nor_conv_3x3"],
        [0, 3, "skip_connect"],
        [1, 2, "nor_conv_3x3"],
        [1, 3, "nor_conv_3x3"],
        [2, 3, "nor_conv_3x3"],
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "2 node group"),
        (
            "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            r"'conv_9x9~0'.*valid ops: none, skip_connect",
        ),
        ("|skip_connect-0|+|none~0|none~1|+|none~0|none~1|none~2|", "'skip_connect-0'"),
        ("|skip_connect~1|+|none~0|none~1|+|none~0|none~1|none~2|", r"'skip_connect~1'.*must be < 1"),
        ("|skip_connect~0|+|none~0|none~0|+|none~0|none~1|none~2|", r"'none~0'.*twice"),
        ("|skip_connect~0|+|none~0|+|none~0|none~1|none~2|", "has 1 token"),
        ("skip_connect~0+|none~0|none~1|+|none~0|none~1|none~2|", "must look like"),
    ],
)
def test_nb201_bad_strings_name_the_bad_token(text: str, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        NB201Space().from_string(text)


# ----------------------------------------------------------------------------------------------------------
# Cost tables
# ----------------------------------------------------------------------------------------------------------


def test_darts_edge_costs() -> None:
    space = DartsSpace()
    params = space.edge_costs("params")
    flops = space.edge_costs("flops")
    for table in (params, flops):
        assert set(table) == {"normal", "reduce"}
        assert all(t.shape == (14, 8) for t in table.values())
        assert all(torch.all(t[:, 0] == 0) for t in table.values())  # none
    col = {op: k for k, op in enumerate(DARTS_OPS)}
    n, r = params["normal"], params["reduce"]
    assert torch.all(n[:, col["skip_connect"]] == 0) and torch.all(n[:, col["max_pool_3x3"]] == 0)
    from_input = torch.tensor([src < 2 for src, _ in space.cells()["reduce"].edges])
    assert torch.all(r[from_input, col["skip_connect"]] > 0)  # FactorizedReduce
    assert torch.all(r[~from_input, col["skip_connect"]] == 0)
    for table in (params, flops):
        for t in table.values():
            assert torch.all(t[:, col["sep_conv_5x5"]] > t[:, col["sep_conv_3x3"]])
            assert torch.all(t[:, col["dil_conv_5x5"]] > t[:, col["dil_conv_3x3"]])
    # normal cells of the 8-cell, C=16 supernet: two at 16, two at 32, two at 64 channels
    sep3 = sum(2 * (2 * (9 * c + c * c + 2 * c)) for c in (16, 32, 64))
    assert torch.all(n[:, col["sep_conv_3x3"]] == sep3)
    # FLOPs of a 1x1-free pooling op are zero; a sep_conv_3x3 at 32x32, C=16 costs 2*(9+16)*16*32*32 MACs
    assert torch.all(flops["normal"][:, col["avg_pool_3x3"]] == 0)
    assert flops["normal"][0, col["sep_conv_3x3"]] > 2 * (9 + 16) * 16 * 32 * 32
    params["normal"][0, 4] = -1.0
    assert space.edge_costs("params")["normal"][0, 4] > 0  # results are copies of the cache
    with pytest.raises(ConfigError, match="flops, params"):
        space.edge_costs("latency")


def test_nb201_edge_costs() -> None:
    t = NB201Space().edge_costs("params", C=16, N=5)["cell"]
    assert t.shape == (6, 5)
    col = {op: k for k, op in enumerate(NB201_OPS)}
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert torch.all(t[:, col[op]] == 0)
    expected = sum(5 * (9 * c * c + 2 * c) for c in (16, 32, 64))
    assert torch.all(t[:, col["nor_conv_3x3"]] == expected)
    assert torch.all(t[:, col["nor_conv_3x3"]] > t[:, col["nor_conv_1x1"]])
