"""GPU smoke tests of the vision package. Skipped where CUDA is absent (CI has none)."""

from __future__ import annotations

import pytest
import torch

from datanas_vision.data import load_dataset
from datanas_vision.retrain import RetrainConfig, retrain

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_retrain_on_cuda_runs_and_reports_the_device() -> None:
    data = load_dataset("digits")
    cfg = RetrainConfig(epochs=1, batch_size=64, C=4, layers=2, seed=0)
    res = retrain("darts_v2", data, cfg, device="cuda")
    assert 0.0 <= res["test"]["top1"] <= 1.0
    assert res["params"] > 0
