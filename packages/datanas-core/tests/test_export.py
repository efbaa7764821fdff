"""TorchScript and ONNX export of derived networks of every core space and of fixed own models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import datanas_core as dc
from datanas_core.errors import MissingDependencyError
from datanas_core.export import ExportError, export_onnx, export_torchscript
from datanas_core.genotype import CellGenotype, Genotype
from datanas_core.nn import InputChoice, LayerChoice
from datanas_core.space.model import genotype_from_choices


class Own(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = LayerChoice(
            {
                "conv3": nn.Conv2d(4, 4, 3, padding=1),
                "conv5": nn.Conv2d(4, 4, 5, padding=2),
                "id": nn.Identity(),
            },
            label="block",
        )
        self.pick = InputChoice(2, 2, label="pick", reduction="mean")
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.stem(x))
        return self.head(self.pick([self.block(s), s]).mean((2, 3)))


def _fixed_own() -> nn.Module:
    torch.manual_seed(0)
    model = Own()
    return dc.fix(model, genotype_from_choices({"block": "conv5", "pick": ["0", "1"]}, model))


# every NB201 op, so each op's export is covered
NB201_ALL = Genotype(
    "nb201",
    {
        "cell": CellGenotype(
            (
                (0, 1, "nor_conv_3x3"),
                (0, 2, "avg_pool_3x3"),
                (1, 2, "nor_conv_1x1"),
                (0, 3, "skip_connect"),
                (2, 3, "nor_conv_3x3"),
            ),
            (3,),
        )
    },
)


def _derived(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "nb201":
        return dc.get_space("nb201").build_derived(NB201_ALL, C=4, N=1, num_classes=3)
    if name == "darts":
        return dc.get_space("darts").build_derived(
            dc.load_published("DARTS_V2"), C=4, layers=2, num_classes=3, auxiliary=True
        )
    return dc.get_space("darts_ext").build_derived(dc.load_published("DATA_M7"), C=4, layers=2, num_classes=3)


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_torchscript_fixed_own_model(tmp_path) -> None:
    model = _fixed_own()
    path = export_torchscript(model, X, tmp_path / "own.pt")
    loaded = torch.jit.load(str(path))
    assert torch.allclose(loaded(X), model.eval()(X), atol=1e-6)
    export_torchscript(model, X, tmp_path / "own_script.pt", method="script")


@pytest.mark.parametrize("name", ["nb201", "darts", "darts_ext"])
def test_torchscript_derived_networks(name: str, tmp_path) -> None:
    net = _derived(name)
    path = export_torchscript(net, X, tmp_path / f"{name}.pt")
    ref = net.eval()(X)
    ref = ref[0] if isinstance(ref, tuple) else ref
    got = torch.jit.load(str(path))(X)
    got = got[0] if isinstance(got, tuple) else got
    assert torch.allclose(got, ref, atol=1e-5)


def test_onnx_fixed_own_model(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(_fixed_own(), X, tmp_path / "own.onnx")
    assert path.stat().st_size > 0


@pytest.mark.parametrize(
    "name",
    [
        "nb201",
        pytest.param("darts", marks=pytest.mark.slow),
        pytest.param("darts_ext", marks=pytest.mark.slow),
    ],
)
def test_onnx_derived_networks(name: str, tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert export_onnx(_derived(name), X, tmp_path / f"{name}.onnx").is_file()


def test_onnx_check_catches_a_difference(tmp_path, monkeypatch) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    real = ort.InferenceSession

    class Shifted(real):  # type: ignore[misc, valid-type]
        def run(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            return [o + 1.0 for o in super().run(*a, **k)]

    monkeypatch.setattr(ort, "InferenceSession", Shifted)
    with pytest.raises(ExportError, match=r"differ from torch by 1 \(> 0.0001\)"):
        export_onnx(_fixed_own(), X, tmp_path / "own.onnx")


def test_unfixed_choices_and_supernets_are_refused(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"unfixed choices \['block', 'pick'\].*datanas_core.fix"):
        export_torchscript(Own(), X, tmp_path / "a.pt")
    with pytest.raises(ExportError, match=r"unfixed choices"):
        export_onnx(Own(), X, tmp_path / "a.onnx")
    supernet = dc.get_space("nb201").build_supernet(C=4, N=1, num_classes=3)
    with pytest.raises(ExportError, match=r"is a supernet .*build_derived"):
        export_torchscript(supernet, X, tmp_path / "s.pt")


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    with pytest.raises(MissingDependencyError, match=r"datanas-core\[export\]"):
        export_onnx(_fixed_own(), X, tmp_path / "own.onnx")
