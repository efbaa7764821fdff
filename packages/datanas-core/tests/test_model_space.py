"""Searching your own model: choice modules, ModelSpace, the one-call search, fix and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import datanas_core as dc
from datanas_core.api import model_presets
from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError, IncompatibleGenotypeError, SearchSpaceError
from datanas_core.nn import ChosenInputs, InputChoice, LayerChoice
from datanas_core.sample import ArchSample
from datanas_core.space.model import (
    ChoiceRule,
    ModelSpace,
    apply_genotype,
    choices_of,
    fix,
    genotype_from_choices,
    unfixed_choices,
)
from datanas_core.testing import check_search_space


class Net(nn.Module):
    """The issue's acceptance model (smaller)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.block = LayerChoice(
            [nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 5, padding=2), nn.Identity()], label="block"
        )
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(F.relu(self.stem(x))).mean((2, 3)))


class InputNet(nn.Module):
    """The InputChoice twin: choose which earlier feature maps feed the head."""

    def __init__(self, c: int = 4, n_chosen: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)
        self.pick = InputChoice(3, n_chosen, label="pick")
        self.head = nn.Linear(c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.stem(x))
        return self.head(self.pick([s, F.relu(self.a(s)), F.relu(self.b(s))]).mean((2, 3)))


class Deep(nn.Module):
    """Choices at depth, a shared label, a nested choice and an unlabelled one."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(4, 4), LayerChoice([nn.Tanh(), nn.ReLU()], label="act")) for _ in range(2)
        )
        inner = LayerChoice({"lin": nn.Linear(4, 4), "id": nn.Identity()}, label="inner")
        self.outer = LayerChoice({"nested": nn.Sequential(inner, nn.Tanh()), "plain": nn.Linear(4, 4)})
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(self.outer(x))


def batches(
    n: int = 3, shape: tuple[int, ...] = (3, 8, 8), seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, *shape, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n)]


# ------------------------------------------------------------------------------------------ modules
def test_layer_choice_runs_fixed_candidate_outside_a_search() -> None:
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(2, 3, 8, 8)
    s = F.relu(net.stem(x))
    assert torch.equal(net.block(s), net.block.ops[0](s))
    net.block.set_fixed("2")
    assert torch.equal(net.block(s), s)
    with pytest.raises(ConfigError, match="unknown candidate 'x'"):
        net.block.set_fixed("x")


def test_one_hot_sample_equals_the_chosen_candidate_and_sum_for_two() -> None:
    torch.manual_seed(0)
    space = ModelSpace(Net())
    sup = space.build_supernet()
    x = torch.randn(2, 3, 8, 8)
    sup.eval()
    for k in range(3):
        code = torch.zeros(1, 3)
        code[0, k] = 1.0
        y = sup(x, ArchSample.fixed({"block": code}))
        sup.model.block.set_fixed(k)
        assert torch.allclose(y, sup(x), atol=1e-6)
    # several candidates on (EGS M>1): the weighted sum, as a mixed edge
    w = torch.tensor([[0.5, 0.0, 0.5]])
    y = sup(x, ArchSample.fixed({"block": w}))
    s = F.relu(sup.model.stem(x))
    mixed = 0.5 * sup.model.block.ops[0](s) + 0.5 * s
    assert torch.allclose(y, sup.model.head(mixed.mean((2, 3))), atol=1e-6)


def test_input_choice_fixed_and_search_modes() -> None:
    xs = [torch.full((2,), float(v)) for v in (1, 2, 4)]
    ic = InputChoice(3, 2, label="p", reduction="mean", fixed=[0, 2])
    assert ic(xs).tolist() == [2.5, 2.5]
    ic._search = (
        (torch.tensor(0.25), torch.tensor(0.0), torch.tensor(0.75)),
        [0, 2],
        None,
        frozenset(),
        True,
    )
    assert torch.allclose(ic(xs), torch.full((2,), 0.25 + 3.0))
    ic._search = None
    with pytest.raises(SearchSpaceError, match="expects a list of 3 tensors, got 2"):
        ic(xs[:2])
    with pytest.raises(ConfigError, match="n_chosen=4 exceeds n_candidates=3"):
        InputChoice(3, 4)


def test_value_choice() -> None:
    lc = LayerChoice.from_values([3, 5], lambda k: nn.Conv2d(2, 2, k, padding=k // 2), label="k")
    assert lc.op_names == ("3", "5")
    assert lc.ops[1].kernel_size == (5, 5)


# ------------------------------------------------------------------------------------------ space
def test_discovery_depth_shared_labels_and_nested() -> None:
    space = ModelSpace(Deep())
    assert list(space.choices) == ["act", "outer", "inner"]
    assert space.choices["act"].paths == ("layers.0.1", "layers.1.1")
    assert space.cells()["outer"].ops == ("nested", "plain")
    g = genotype_from_choices({"act": "1", "outer": "nested", "inner": "id"}, space)
    plain = fix(Deep(), g)
    assert unfixed_choices(plain) == []
    assert isinstance(plain.layers[0][1], nn.ReLU) and isinstance(plain.layers[1][1], nn.ReLU)
    assert isinstance(plain.outer[0], nn.Identity)
    assert plain(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("factory", [Net, InputNet, lambda: InputNet(n_chosen=2), Deep])
def test_conformance_kit_passes(factory) -> None:
    torch.manual_seed(0)
    model = factory()
    shape = (4,) if isinstance(model, Deep) else (3, 8, 8)
    report = check_search_space(
        ModelSpace(model),
        {},
        lambda g: torch.randn(2, *shape, generator=g),
        estimators=("softmax", "egs", "gdas", "snas", "dirichlet"),
    )
    assert "fixed_code" in report.checks
    assert report.derived_params < report.supernet_params or isinstance(model, InputNet)


def test_shared_label_is_one_decision_and_gradients_reach_it() -> None:
    space = ModelSpace(Deep())
    dist = ArchitectureDistribution(space, "egs", generator=torch.Generator().manual_seed(0))
    assert dict(dist.logits)["act"].shape == (1, 2)
    sup = space.build_supernet()
    y = sup(torch.randn(3, 4), dist.sample(torch.Generator().manual_seed(1)))
    y.square().mean().backward()
    assert dist.logits["act"].grad is not None and bool(torch.any(dist.logits["act"].grad != 0))


def test_cost_tables_params_and_flops() -> None:
    torch.manual_seed(0)
    space = ModelSpace(Net(), example_input=torch.randn(1, 3, 8, 8))
    params = space.edge_costs("params")["block"][0].tolist()
    assert params == [4 * 4 * 9 + 4, 4 * 4 * 25 + 4, 0]
    flops = space.edge_costs("flops")["block"][0].tolist()
    assert flops[0] == 2 * 4 * 4 * 9 * 64 and flops[1] == 2 * 4 * 4 * 25 * 64 and flops[2] == 0
    with pytest.raises(ConfigError, match="example input"):
        ModelSpace(Net()).edge_costs("flops")


def test_choice_rule_topk_and_data() -> None:
    space = ModelSpace(InputNet(n_chosen=2))
    probs = {"pick": torch.tensor([[0.9, 0.06, 0.04]])}
    g_top = dc.derive(probs, space, rule="choice")
    assert choices_of(g_top) == {"pick": ["0", "1"]}
    # DATA's most probable exact set under 2 draws: {top} (0.81) beats {top, second} (0.108)
    g_data = dc.derive(probs, space, rule={"type": "choice", "multi": "data"})
    assert choices_of(g_data) == {"pick": "0"}
    probs = {"pick": torch.tensor([[0.45, 0.45, 0.1]])}
    assert choices_of(dc.derive(probs, space, rule={"type": "choice", "multi": "data"})) == {
        "pick": ["0", "1"]
    }
    assert ChoiceRule().config()["multi"] == "topk"


# ------------------------------------------------------------------------------------------ one call
def test_acceptance_snippet_search_fix_trace() -> None:
    torch.manual_seed(0)
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = dc.search(model, batches(), batches(seed=1), loss=F.cross_entropy, preset="data", epochs=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # argument untouched
    assert unfixed_choices(result.model) == []
    assert result.choices["block"] in ("0", "1", "2")
    doc = json.loads(result.genotype.to_json())
    assert doc["schema_version"] >= 1 and doc["space"] == "model"
    assert doc["meta"]["choices"] == result.choices
    x = torch.randn(2, 3, 8, 8)
    result.model.eval()
    traced = torch.jit.trace(result.model, x)
    assert torch.allclose(traced(x), result.model(x))
    # the plain model computes what the supernet computes with the derived code (inherited weights)
    sup = result.supernet.eval()
    code = dc.arch_from_genotype(result.genotype, result.space)
    assert torch.allclose(sup(x, code), result.model(x), atol=1e-6)
    fresh = dc.fix(Net(), result.genotype)
    assert type(fresh.block) is type(result.model.block)


def test_input_choice_twin_search() -> None:
    torch.manual_seed(0)
    result = dc.search(InputNet(n_chosen=2), batches(), batches(seed=1), loss=F.cross_entropy, epochs=1)
    assert isinstance(result.model.pick, ChosenInputs)
    assert 1 <= len(result.model.pick.indices) <= 2
    scripted = torch.jit.script(result.model)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(scripted.eval()(x), result.model.eval()(x))


@pytest.mark.parametrize("preset", model_presets())
def test_every_preset_runs_on_a_model_space(preset: str) -> None:
    torch.manual_seed(0)
    result = dc.search(
        Deep(), batches(2, (4,)), batches(2, (4,), seed=1), loss=F.cross_entropy, preset=preset, epochs=1
    )
    assert unfixed_choices(result.model) == []
    assert set(result.choices) == {"act", "outer", "inner"}


def test_expected_flops_cost_pushes_to_cheap_candidates() -> None:
    torch.manual_seed(0)
    result = dc.search(
        Net(),
        batches(4),
        batches(4, seed=1),
        loss=F.cross_entropy,
        preset="darts",
        epochs=3,
        a_lr=0.3,
        regularizers=[{"type": "expected_cost", "metric": "flops", "weight": 1.0, "budget": 1e3}],
    )
    assert result.choices["block"] == "2"  # the free identity


def test_search_with_run_dir_report_and_resume(tmp_path) -> None:
    torch.manual_seed(0)
    run = tmp_path / "run"
    result = dc.search(
        Net(), batches(), batches(seed=1), loss=F.cross_entropy, epochs=2, run_dir=run, progress=False
    )
    assert (run / "genotype.json").is_file()
    md = (run / "report.md").read_text()
    assert "| block |" in md
    again = dc.search(
        Net(),
        batches(),
        batches(seed=1),
        loss=F.cross_entropy,
        epochs=2,
        run_dir=run,
        progress=False,
        resume=True,
    )
    assert again.genotype == result.genotype


# ------------------------------------------------------------------------------------------ bad input
def test_mismatched_candidate_shapes_named() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = LayerChoice({"wide": nn.Linear(4, 8), "narrow": nn.Linear(4, 4)}, label="proj")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x).sum(-1)

    with pytest.raises(SearchSpaceError, match=r"'proj'.*wide: \[2, 8\], narrow: \[2, 4\]"):
        dc.search(Bad(), [(torch.randn(2, 4), torch.zeros(2))], loss=F.mse_loss, epochs=1)


def test_input_choice_with_mismatched_inputs_named() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.pick = InputChoice(2, label="merge")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.lin(x)
            return self.pick([x, x[:, :2]]).sum(-1)

    with pytest.raises(SearchSpaceError, match=r"'merge'.*0: \[2, 4\], 1: \[2, 2\]"):
        dc.search(Bad(), [(torch.randn(2, 4), torch.zeros(2))], loss=F.mse_loss, epochs=1)


def test_duplicate_labels_with_different_counts() -> None:
    net = nn.Sequential(LayerChoice([nn.Tanh(), nn.ReLU()], label="a"), LayerChoice([nn.Tanh()], label="a"))
    with pytest.raises(SearchSpaceError, match="label 'a' is used at '0' and at '1' with 2 and 1 candidates"):
        ModelSpace(net)


def test_genotype_for_another_model() -> None:
    g = genotype_from_choices({"block": "1"}, Net())
    with pytest.raises(
        IncompatibleGenotypeError, match=r"missing labels \['pick'\], extra labels \['block'\]"
    ):
        fix(InputNet(), g)
    with pytest.raises(IncompatibleGenotypeError, match="unknown candidate '7'"):
        fix(Net(), genotype_from_choices({"block": "7"}))
    with pytest.raises(IncompatibleGenotypeError, match="not for a model"):
        ModelSpace(Net()).validate(dc.load_published("DARTS_V2"))


def test_bad_construction() -> None:
    with pytest.raises(ConfigError, match="contains '.'"):
        LayerChoice([nn.Tanh()], label="a.b")
    with pytest.raises(ConfigError, match="'none' is reserved"):
        LayerChoice({"none": nn.Tanh()})
    with pytest.raises(SearchSpaceError, match="no LayerChoice or InputChoice"):
        ModelSpace(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="unknown option"):
        dc.search(Net(), batches(1), loss=F.cross_entropy, epochs=1, w_lrr=0.1)
    with pytest.raises(ConfigError, match="preset 'e2nas' needs its own spaces"):
        dc.search(Net(), batches(1), loss=F.cross_entropy, epochs=1, preset="e2nas")
    with pytest.raises(ConfigError, match="need run_dir"):
        dc.search(Net(), batches(1), loss=F.cross_entropy, epochs=1, resume=True)


def test_apply_genotype_keeps_candidates() -> None:
    net = Net()
    apply_genotype(net, genotype_from_choices({"block": 2}, net))
    assert net.block.fixed == (2,)
    assert len(net.block.ops) == 3


def test_fast_exact_executor_gradients_equal_the_plain_path() -> None:
    torch.manual_seed(0)
    space = ModelSpace(Deep())
    sup = space.build_supernet().double()
    dist = ArchitectureDistribution(
        space, {"type": "egs", "samples": 2}, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    x = torch.randn(3, 4, dtype=torch.float64)
    grads = []
    for plain in (False, True):
        dist.zero_grad(set_to_none=True)
        arch = dist.sample(torch.Generator().manual_seed(3))
        sup(x, arch.plain_exact(plain) if plain else arch).square().mean().backward()
        grads.append([p.grad.clone() for p in dist.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dataloader_input() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g))
    torch.manual_seed(0)
    result = dc.search(
        Net(), DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8), loss=F.cross_entropy, epochs=1
    )
    assert unfixed_choices(result.model) == []
    # a one-shot generator of batches is kept for every epoch
    result = dc.search(Net(), (b for b in batches(2)), loss=F.cross_entropy, epochs=2)
    assert len(result.history) == 2
