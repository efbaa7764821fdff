"""The search-space conformance check, run on every core space (and on broken spaces, to see it fail)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from datanas_core import get_space
from datanas_core.published import load_published
from datanas_core.testing import ContractError, ToySpace, check_search_space


def _img(g: torch.Generator) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=g)


SPACES = {
    "darts": ({"C": 4, "layers": 3, "num_classes": 3}, ("DARTS_V2",)),
    "darts_ext": ({"C": 4, "layers": 3, "num_classes": 3}, ("DATA_M7",)),
    "nb201": ({"C": 4, "N": 1, "num_classes": 3}, ()),
    "drnas_darts": ({"C": 4, "layers": 3, "num_classes": 3}, ()),
    "drnas_nb201": ({"C": 4, "N": 1, "num_classes": 3}, ()),
    "entrannas_darts": ({"C": 4, "layers": 3, "num_classes": 3}, ()),
    "entrannas_nb201": ({"C": 4, "N": 1, "num_classes": 3}, ()),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_core_spaces_conform(name: str) -> None:
    kwargs, published = SPACES[name]
    space = get_space(name)
    report = check_search_space(space, kwargs, _img, genotypes=[load_published(p) for p in published])
    assert report.checks[0] == "cell_specs" and report.checks[-1] == "fixed_code"
    assert {"supernet_forward[egs]", "seeded_build", "derive", "derived_forward[0]"} <= set(report.checks)
    assert 0 < report.derived_params <= report.supernet_params
    assert report.genotype is not None and report.genotype.space == space.name


def test_toy_space_conforms() -> None:
    report = check_search_space(ToySpace(), {}, lambda g: torch.randn(4, 4, generator=g))
    assert "fixed_code" in report.checks


class _NoArchGrad(ToySpace):
    """A broken space: the supernet ignores the architecture."""

    def build_supernet(self, **hparams):  # type: ignore[override]
        net = super().build_supernet(**hparams)

        class Detached(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = net

            def forward(self, x, arch):  # noqa: ANN001, ANN202
                return self.inner(x, {k: v.detach() for k, v in arch.items()})

        return Detached()


class _Unseeded(ToySpace):
    """A broken space: initialisation ignores torch's seed."""

    def build_supernet(self, **hparams):  # type: ignore[override]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch.seed())
            return super().build_supernet(**hparams)


def test_broken_spaces_are_named() -> None:
    x = lambda g: torch.randn(4, 4, generator=g)  # noqa: E731
    with pytest.raises(ContractError, match=r"\[supernet_forward\[softmax\]\] no gradient reached"):
        check_search_space(_NoArchGrad(), {}, x)
    with pytest.raises(ContractError, match=r"\[seeded_build\] .* differs between two builds"):
        check_search_space(_Unseeded(), {}, x)
