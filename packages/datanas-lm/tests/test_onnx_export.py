"""The derived DARTS recurrent cell exports to TorchScript and ONNX (datanas_core.export)."""

from __future__ import annotations

import importlib.resources as ir

import pytest
import torch

from datanas_core.export import export_onnx, export_torchscript
from datanas_core.genotype import Genotype
from datanas_lm.space import RNNSpace


def _model_and_input() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    genotype = Genotype.load(ir.files("datanas_lm.genotypes") / "darts_v2.json")
    model = RNNSpace().build_derived(genotype, ntoken=20, ninp=8, nhid=8)
    tokens = torch.randint(0, 20, (5, 2), generator=torch.Generator().manual_seed(1))
    return model, (tokens, model.init_hidden(2))


def test_torchscript_lm(tmp_path) -> None:
    model, example = _model_and_input()
    path = export_torchscript(model, example, tmp_path / "lm.pt")
    logits, hidden = torch.jit.load(str(path))(*example)
    ref_logits, ref_hidden = model.eval()(*example)
    assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(hidden, ref_hidden, atol=1e-5)


@pytest.mark.slow
def test_onnx_lm(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, example = _model_and_input()
    assert export_onnx(model, example, tmp_path / "lm.onnx").is_file()
