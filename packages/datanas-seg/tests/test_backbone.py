"""The seg.darts space and the multi-scale backbones: shapes, channels, strides, validation."""

from __future__ import annotations

import pytest
import torch

from datanas_core.errors import ConfigError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.sample import ArchSample
from datanas_core.space.base import SPACES
from datanas_seg import (
    DataNASBackbone,
    SegDartsSpace,
    SegSupernetBackbone,
    feature_channels,
    supernet_feature_channels,
)
from datanas_seg.space import cell_layout, normalize_stages

#: a reduced candidate set: supernets build and run several times faster (shapes do not depend on the ops)
SMALL_OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")


def uniform_arch(space: SegDartsSpace) -> ArchSample:
    return ArchSample.fixed(
        {
            ct: torch.full((spec.num_edges, spec.num_ops), 1.0 / spec.num_ops)
            for ct, spec in space.cells().items()
        }
    )


LAYOUTS = [
    {"cells_per_stage": 1, "num_stages": 3},
    {"cells_per_stage": (2, 0, 1), "num_stages": 3},
    {"cells_per_stage": 1, "num_stages": 4},
]


@pytest.mark.parametrize("which", ["darts", "data"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=["3x1", "2-0-1", "4x1"])
def test_derived_shapes_match_declared_channels(
    which: str, layout: dict, darts_genotype, data_genotype
) -> None:
    g = darts_genotype if which == "darts" else data_genotype
    C, size = 4, 32
    net = DataNASBackbone(g, C=C, in_channels=1, **layout)
    feats = net(torch.randn(2, 1, size, size))
    assert isinstance(feats, tuple)
    n = layout["num_stages"]
    assert len(feats) == n == len(net.feature_info)
    assert tuple(f.shape[1] for f in feats) == net.out_channels
    assert net.out_channels == feature_channels(g, C, **layout)
    assert net.out_strides == tuple(4 * 2**s for s in range(n))
    for f, stride, info in zip(feats, net.out_strides, net.feature_info, strict=True):
        assert f.shape[0] == 2 and tuple(f.shape[-2:]) == (size // stride, size // stride)
        assert info["num_chs"] == f.shape[1] and info["reduction"] == stride
    # channel count = (#concat nodes of the stage's last cell) * C * 2**s
    last_types = ["normal" if c > 0 else "reduce" for c in normalize_stages(layout["cells_per_stage"], n)]
    expected = tuple(len(g.cells[ct].concat) * C * 2**s for s, ct in enumerate(last_types))
    assert net.out_channels == expected


def test_out_indices_select_levels(darts_genotype) -> None:
    net = DataNASBackbone(darts_genotype, C=4, out_indices=(0, 2))
    feats = net(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [16, 64]
    assert net.out_strides == (4, 16)
    assert feature_channels(darts_genotype, 4, out_indices=(0, 2)) == (16, 64)


@pytest.mark.parametrize("bad", [(), (3,), (0, 0), (-1,)])
def test_bad_out_indices(bad, darts_genotype) -> None:
    with pytest.raises(ConfigError, match="out_indices"):
        DataNASBackbone(darts_genotype, C=4, out_indices=bad)


def test_odd_input_sizes_work(darts_genotype) -> None:
    net = DataNASBackbone(darts_genotype, C=4)
    feats = net(torch.randn(1, 3, 37, 50))
    assert [tuple(f.shape[-2:]) for f in feats] == [(10, 13), (5, 7), (3, 4)]


def test_supernet_shapes_and_gradients() -> None:
    space = SegDartsSpace(ops=SMALL_OPS)
    net = space.build_supernet(C=4, in_channels=2)
    assert isinstance(net, SegSupernetBackbone)
    assert net.out_channels == supernet_feature_channels(space, 4) == (16, 32, 64)
    weights = {ct: torch.full((14, 4), 1 / 4, requires_grad=True) for ct in ("normal", "reduce")}
    arch = ArchSample.fixed(weights)
    # fixed() detaches: build a differentiable sample by hand to check the gradient path
    for ct, w in weights.items():
        arch[ct].weights = w
    feats = net(torch.randn(2, 2, 16, 16), arch)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 4, 4), (2, 32, 2, 2), (2, 64, 1, 1)]
    sum(f.square().mean() for f in feats).backward()
    for w in weights.values():
        assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert not any("alpha" in n or "arch" in n for n, _ in net.named_parameters())


def test_supernet_needs_an_arch_sample() -> None:
    net = SegDartsSpace(ops=SMALL_OPS).build_supernet(C=4)
    with pytest.raises(ConfigError, match="ArchSample"):
        net(torch.randn(1, 3, 16, 16), torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cell types"):
        net(torch.randn(1, 3, 16, 16), ArchSample.fixed({"normal": torch.ones(14, 8)}))


def test_space_registration_and_genotype_compat(darts_genotype) -> None:
    space = SPACES.build("seg.darts")
    assert isinstance(space, SegDartsSpace) and space.name == "seg.darts"
    assert not space.strict
    # a DARTS (CIFAR) genotype works as a backbone genotype: same cells
    as_darts = Genotype("darts", darts_genotype.cells)
    space.validate(as_darts)
    DataNASBackbone(as_darts, C=4)
    with pytest.raises(IncompatibleGenotypeError):
        space.validate(Genotype("nb201", darts_genotype.cells))


def test_strict_space_rejects_variable_in_degree(data_genotype, darts_genotype) -> None:
    SegDartsSpace().validate(data_genotype)
    strict = SegDartsSpace(strict=True)
    strict.validate(darts_genotype)
    with pytest.raises(IncompatibleGenotypeError, match="exactly 2"):
        strict.validate(data_genotype)


def test_bad_genotype_names_edge(darts_genotype) -> None:
    cells = dict(darts_genotype.cells)
    cells["normal"] = CellGenotype(cells["normal"].edges + (EdgeChoice(0, 3, "conv_9x9"),), (2, 3, 4, 5))
    with pytest.raises(IncompatibleGenotypeError, match="conv_9x9"):
        DataNASBackbone(Genotype("seg.darts", cells), C=4)


def test_layout_and_stage_validation() -> None:
    assert cell_layout((1, 2, 0)) == [
        ("normal", 0),
        ("reduce", 1),
        ("normal", 1),
        ("normal", 1),
        ("reduce", 2),
    ]
    for bad in [(0, 1, 1), (1, 1), (1, -1, 1)]:
        with pytest.raises(ConfigError):
            normalize_stages(bad, 3)
    with pytest.raises(ConfigError, match="num_stages"):
        normalize_stages(1, 5)


def test_edge_costs_follow_the_layout() -> None:
    space = SegDartsSpace()
    costs = space.edge_costs("params", C=4)
    assert set(costs) == {"normal", "reduce"}
    for t in costs.values():
        assert t.shape == (14, 8)
        assert torch.all(t[:, space.ops.index("none")] == 0)
        assert torch.all(t[:, space.ops.index("sep_conv_3x3")] > t[:, space.ops.index("dil_conv_3x3")])
    # three normal cells (one per stage) vs two reduction cells: stage widths 4, 8, 16 vs 8, 16
    k = space.ops.index("sep_conv_5x5")
    assert costs["normal"][2, k] > costs["reduce"][2, k]
    with pytest.raises(ConfigError, match="metric"):
        space.edge_costs("latency")


def test_drop_path_only_in_training(darts_genotype) -> None:
    torch.manual_seed(0)
    net = DataNASBackbone(darts_genotype, C=4, drop_path_prob=0.5)
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    a = net(x)
    b = net(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    with pytest.raises(ConfigError, match="drop_path_prob"):
        DataNASBackbone(darts_genotype, C=4, drop_path_prob=1.0)


def test_seg_space_passes_the_core_conformance_check(data_genotype) -> None:
    from datanas_core.testing import check_search_space

    report = check_search_space(
        SegDartsSpace(),
        {"C": 4},
        lambda g: torch.randn(2, 3, 32, 32, generator=g),
        genotypes=[data_genotype],
        same_output_shape=False,  # backbone channels depend on how many nodes a cell concatenates
    )
    assert report.checks[-1] == "fixed_code" and "derived_forward[1]" in report.checks
