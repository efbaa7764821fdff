"""Every (preset, space) pair: supported pairs build, step and derive a valid genotype with the rule that fits
the space; unsupported pairs fail with a ConfigError naming the supported spaces. Plus the preset semantics
(executor, approximations, per-step schedules, warm-up scaling)."""

from __future__ import annotations

import math

import pytest
import torch

from datanas_core import get_space
from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig, build_searcher
from datanas_core.search.config import (
    PRESET_SPECS,
    PRESETS,
    preset_config,
    preset_method_fields,
    preset_stages,
    space_kind,
)
from datanas_core.testing.toy import ToyTask

DARTS_KW = {"C": 4, "layers": 1, "num_classes": 3}
NB201_KW = {"C": 4, "N": 1, "num_classes": 3}
SPACES = {
    "darts": DARTS_KW,
    "darts_ext": DARTS_KW,
    "nb201": NB201_KW,
    "drnas_darts": DARTS_KW,
    "drnas_nb201": NB201_KW,
    "entrannas_darts": DARTS_KW,
    "entrannas_nb201": NB201_KW,
}

# the support matrix this test pins (see the table in datanas_core.search.config)
SUPPORTED = {
    "data": {"darts_ext", "nb201", "drnas_nb201"},
    "data_m4": {"darts_ext", "nb201", "drnas_nb201"},
    "data_m7": {"darts_ext", "nb201", "drnas_nb201"},
    "data_short": {"darts_ext", "nb201", "drnas_nb201"},
    "data_decide": {"darts_ext", "nb201", "drnas_nb201"},
    "darts": {"darts", "darts_ext", "nb201", "drnas_darts", "drnas_nb201"},
    "darts2": {"darts", "darts_ext", "nb201", "drnas_darts", "drnas_nb201"},
    "gdas": {"darts", "darts_ext", "nb201", "drnas_darts", "drnas_nb201"},
    "snas": {"darts_ext", "nb201", "drnas_nb201"},
    "drnas": {"darts", "darts_ext", "nb201", "drnas_darts", "drnas_nb201"},
    "drnas_progressive": {"drnas_darts", "drnas_nb201"},
    "entrannas": {"entrannas_darts", "entrannas_nb201"},
    "e2nas": {"nb201", "drnas_nb201"},
}


def _batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2,), generator=g)) for _ in range(n)]


def test_matrix_covers_every_preset() -> None:
    assert set(SUPPORTED) == set(PRESETS) == set(PRESET_SPECS)


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_space_pair(preset: str, space_name: str) -> None:
    space = get_space(space_name)
    if space_name not in SUPPORTED[preset]:
        with pytest.raises(ConfigError, match=rf"preset '{preset}'.*supports") as exc:
            SearchConfig.preset(preset, space)
        assert space_name in str(exc.value)
        return
    epochs = 2
    cfg = SearchConfig.preset(preset, space, epochs=epochs, seed=0)
    assert cfg.approximations == []  # every preset runs its estimator's native executor
    stages = preset_stages(preset, space, epochs)
    kwargs = dict(SPACES[space_name])
    if stages is not None and space_kind(space) == "darts":
        kwargs["C"] = 6  # DrNAS' partial channels K=6 must divide the edge width
    searcher = build_searcher(space, ToyTask(), cfg, supernet_kwargs=kwargs, stages=stages)
    searcher.steps_per_epoch = 1
    before = [p.detach().clone() for p in searcher.arch_params]
    searcher.epoch = cfg.arch_warmup_epochs  # past any warm-up: the architecture step runs
    if stages is not None:
        searcher.fit(_batches(1, 1), _batches(1, 2))
    else:
        logs = searcher.step(*_batches(1, 1), *_batches(1, 2))
        assert all(math.isfinite(v) for v in logs.values())
    after = list(searcher.arch_params)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, after, strict=False)) or stages
    genotype = searcher.derive()
    space.validate(genotype)
    if space_kind(space) == "nb201":  # one op per edge, every node keeps its inputs
        for cell in genotype.cells.values():
            keys = [(e.src, e.dst) for e in cell.edges]
            assert len(keys) == len(set(keys))


def test_nb201_presets_keep_all_three_inputs_of_node_3() -> None:
    # topk_edges (k=2) used to drop one of node 3's three in-edges in NB201
    space = get_space("nb201")
    for preset in ("darts", "drnas", "data", "gdas"):
        cfg = SearchConfig.preset(preset, space)
        assert cfg.rule == "argmax_edge", preset
        probs = {"cell": torch.tensor([[0.0, 0.1, 0.2, 0.6, 0.1]]).repeat(6, 1)}
        from datanas_core.derive import derive

        g = derive(probs, space, rule=cfg.rule)
        assert len(g.cells["cell"].inputs_of(3)) == 3


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid presets: .*data_short"):
        SearchConfig.preset("dats", "nb201")


def test_published_defaults_are_unchanged() -> None:
    cfg = SearchConfig.preset("data", "darts_ext")
    assert (cfg.estimator, dict(cfg.estimator_options), cfg.a_lr, cfg.epochs, cfg.rule) == (
        "egs",
        {"samples": 2},
        3e-4,
        100,
        "data",
    )
    assert cfg.schedule_unit == "epoch" and cfg.arch_travel is None and cfg.weight_sampling == "distribution"
    assert SearchConfig.preset("data_m7", "darts_ext").estimator_options == {"samples": 7}
    assert SearchConfig.preset("darts2", "darts").order == "second"


def test_gdas_carriers_follow_the_space() -> None:
    assert SearchConfig.preset("gdas", "darts").estimator_options == {"carriers": False}
    assert SearchConfig.preset("gdas", "nb201").estimator_options == {"carriers": True}
    from datanas_core import ArchitectureDistribution

    for carriers in (True, False):
        dist = ArchitectureDistribution(get_space("darts"), {"type": "gdas", "carriers": carriers}, seed=0)
        cell = dist.sample(generator=torch.Generator().manual_seed(0))["normal"]
        assert cell.grad_proxy is carriers
        assert int(cell.mask.sum()) == 14  # one op per edge either way


def test_drnas_nb201_recipe_and_scaled_warmup() -> None:
    nb = SearchConfig.preset("drnas", "nb201")
    assert (nb.epochs, nb.a_lr, nb.w_lr, nb.arch_warmup_epochs) == (100, 3e-4, 0.025, 0)
    darts = SearchConfig.preset("drnas", "darts", epochs=10)
    assert darts.arch_warmup_epochs == 2  # 10 of 50 epochs -> 2 of 10
    assert SearchConfig.preset("drnas", "darts", epochs=10, arch_warmup_epochs=0).arch_warmup_epochs == 0
    assert preset_stages("drnas_progressive", "drnas_nb201", 100) == "50:4:5,50:2:3"
    assert preset_stages("drnas_progressive", "drnas_darts", 4) == "2:6:7,2:4:4"
    assert preset_stages("data", "nb201", 4) is None


def test_executor_defaults_to_native_and_sparse_egs_is_flagged() -> None:
    assert SearchConfig().executor is None and SearchConfig().resolved_executor == "exact"
    assert SearchConfig(estimator="gdas", estimator_options={}).resolved_executor == "sparse"
    assert SearchConfig().approximations == []
    cfg = SearchConfig(executor="sparse")
    assert len(cfg.approximations) == 1 and "approximation" in cfg.approximations[0]
    d = cfg.to_dict()
    assert d["approximations"] == cfg.approximations
    assert SearchConfig.from_dict(d) == cfg  # the derived key round-trips
    # soft estimators get the same gradients under both executors: not an approximation
    assert SearchConfig(estimator="softmax", estimator_options={}, executor="sparse").approximations == []


def test_method_fields_keep_domain_optimisation() -> None:
    fields = preset_method_fields("gdas", "darts")
    assert fields["estimator"] == "gdas" and fields["rule"] == "topk_pairs"
    assert "a_lr" not in fields and "epochs" not in fields
    cfg = SearchConfig(epochs=3, a_lr=0.03, **fields)
    assert cfg.a_lr == 0.03 and cfg.step_order == "weight_first"


def test_space_kinds() -> None:
    kinds = {n: space_kind(n) for n in SPACES}
    assert kinds == {
        "darts": "darts",
        "darts_ext": "darts_ext",
        "nb201": "nb201",
        "drnas_darts": "darts",
        "drnas_nb201": "nb201",
        "entrannas_darts": "darts_ext",
        "entrannas_nb201": "nb201",
    }
    assert preset_config("data", None).rule == "data"  # no space: the base settings, unchecked
