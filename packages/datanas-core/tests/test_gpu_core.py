"""GPU smoke tests: the engine follows the input's device. Skipped where CUDA is absent (CI has none)."""

from __future__ import annotations

import pytest
import torch

from datanas_core import build_searcher, get_space
from datanas_core.search import SearchConfig, Searcher
from datanas_core.testing import ToySpace, ToyTask, toy_batches

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _to(batches: list, device: torch.device) -> list:
    return [(x.to(device), y.to(device)) for x, y in batches]


@pytest.mark.parametrize("estimator", ["softmax", "egs", "gdas", "snas", "dirichlet"])
def test_searcher_step_on_cuda_keeps_everything_on_the_device(estimator: str) -> None:
    dev = torch.device("cuda")
    cfg = SearchConfig(epochs=1, estimator=estimator, estimator_options={}, regularizers=())
    s = Searcher(ToySpace(), ToyTask(), cfg, device=dev)
    a0 = [p.detach().clone() for p in s.distribution.parameters()]
    b = _to(toy_batches(2), dev)
    logs = s.step(b[0], b[1])
    assert all(p.device.type == "cuda" for p in s.supernet.parameters())
    assert all(p.device.type == "cuda" for p in s.distribution.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(a0, s.distribution.parameters(), strict=True))
    assert torch.isfinite(torch.tensor(logs["val_loss"]))


@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_real_supernet_exact_and_sparse_agree_on_cuda(space_name: str) -> None:
    dev = torch.device("cuda")
    kwargs = {"C": 4, "num_classes": 3, "in_channels": 3}
    kwargs.update({"N": 1} if space_name == "nb201" else {"layers": 3})
    outs = {}
    for executor in ("exact", "sparse"):
        cfg = SearchConfig.preset("data").replace(executor=executor, seed=3)
        s = build_searcher(get_space(space_name), ToyTask(), cfg, supernet_kwargs=kwargs, device=dev)
        s.supernet.eval()
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).to(dev)
        arch = s.distribution.sample(
            generator=torch.Generator().manual_seed(1)
        )  # CPU draws, moved to the logits
        outs[executor] = s.supernet(x, arch)
        assert outs[executor].device.type == "cuda"
    torch.testing.assert_close(outs["exact"], outs["sparse"], rtol=1e-4, atol=1e-5)
