"""The recurrent search cell's forward-only zero-weight terms give the plain exact path's gradients
(issue 17): float64, relative error <= 1e-10, same run, same supernet."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from datanas_core.distribution import ArchitectureDistribution
from datanas_lm import RNNSpace

TOL = 1e-10


def _grads(net: Any, dist: Any, arch: Any, tokens: torch.Tensor) -> list[Any]:
    params = list(net.parameters()) + list(dist.parameters())
    hidden = net.init_hidden(tokens.size(1))
    logits, _ = net(tokens[:-1], hidden, arch, generator=torch.Generator().manual_seed(11))
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[1:].reshape(-1))
    return list(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True))


@pytest.mark.parametrize(
    "estimator",
    [{"type": "egs", "samples": 2}, {"type": "egs", "samples": 1}, "softmax", "dirichlet", "snas"],
    ids=["egs2", "egs1", "softmax", "dirichlet", "snas"],
)
@pytest.mark.parametrize("detached", [False, True], ids=["arch_step", "weight_step"])
def test_lm_lean_exact_gradients_equal_plain(estimator: Any, detached: bool) -> None:
    torch.manual_seed(0)
    space = RNNSpace()
    net = space.build_supernet(ntoken=12, ninp=6, nhid=6, dropouth=0.25, dropoutx=0.25).double()
    dist = ArchitectureDistribution(space, estimator, seed=0, dtype=torch.float64)
    tokens = torch.randint(0, 12, (5, 3), generator=torch.Generator().manual_seed(2))
    arch = dist.sample(torch.Generator().manual_seed(3))
    if detached:
        arch = arch.detach()
    ref = _grads(net, dist, arch.plain_exact(), tokens)
    new = _grads(net, dist, arch, tokens)
    compared = 0
    for i, (a, b) in enumerate(zip(ref, new, strict=True)):
        assert (a is None) == (b is None), f"gradient {i}: reference None {a is None}, lean None {b is None}"
        if a is None:
            continue
        err = (a - b).abs().max().item()
        assert err <= TOL * a.abs().max().item() or err == 0.0, f"gradient {i}"
        compared += 1
    assert compared > 0
    if not detached:
        assert ref[-1] is not None and ref[-1].abs().sum() > 0  # a real architecture gradient
