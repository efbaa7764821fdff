"""The derived segmentation backbone exports to TorchScript and ONNX (datanas_core.export)."""

from __future__ import annotations

import pytest
import torch

from datanas_core.export import export_onnx, export_torchscript
from datanas_core.genotype import CellGenotype, Genotype
from datanas_seg.space import SegDartsSpace

# every DARTS op
GENOTYPE = Genotype(
    "seg.darts",
    {
        ct: CellGenotype(
            (
                (0, 2, "sep_conv_3x3"),
                (1, 2, "dil_conv_3x3"),
                (0, 3, "sep_conv_5x5"),
                (2, 3, "skip_connect"),
                (1, 4, "dil_conv_5x5"),
                (3, 4, "max_pool_3x3"),
                (0, 5, "avg_pool_3x3"),
                (4, 5, "sep_conv_3x3"),
            ),
            (2, 3, 4, 5),
        )
        for ct in ("normal", "reduce")
    },
)
X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return SegDartsSpace().build_derived(GENOTYPE, C=4)


def test_torchscript_seg_backbone(tmp_path) -> None:
    net = _backbone()
    path = export_torchscript(net, X, tmp_path / "bb.pt")
    got = torch.jit.load(str(path))(X)
    ref = net.eval()(X)
    assert len(got) == len(ref) and all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(got, ref, strict=True)
    )


@pytest.mark.slow
def test_onnx_seg_backbone(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert export_onnx(_backbone(), X, tmp_path / "bb.onnx").is_file()


@pytest.mark.slow
def test_onnx_mmseg_segmentor(tmp_path) -> None:
    """The whole mmseg EncoderDecoder (derived backbone + ASPP head) in tensor mode."""
    pytest.importorskip("mmseg")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from datanas_seg.mmseg.segmentor import build_derived_segmentor

    torch.manual_seed(0)
    segmentor = build_derived_segmentor(GENOTYPE, num_classes=2, C=4, head_channels=8)

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x, mode="tensor")

    assert export_onnx(Logits(segmentor), torch.randn(1, 3, 32, 32), tmp_path / "seg.onnx").is_file()
