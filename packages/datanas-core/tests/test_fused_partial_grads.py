"""Fused DARTS conv blocks in backward passes that want only some gradients (issue 17).

An architecture step differentiates w.r.t. the architecture parameters only; :class:`ReluDwPwBnFn` then
skips the conv weight gradients (and the depthwise recomputation they need). Every gradient that is asked
for must still equal the module chain's / the plain path's in float64.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import datanas_core.space.fused as fused
from datanas_core.distribution import ArchitectureDistribution
from datanas_core.ops import DilConv, SepConv
from datanas_core.space.base import SPACES
from datanas_core.space.fused import dw_blocks, dw_chain, relu_layout
from datanas_core.space.mixed import _chain
from datanas_core.testing import assert_rel_close

CL = torch.channels_last

OPS = {
    "sep_conv_3x3": lambda C, s: SepConv(C, C, 3, s, 1, affine=False),
    "sep_conv_5x5": lambda C, s: SepConv(C, C, 5, s, 2, affine=False),
    "dil_conv_3x3": lambda C, s: DilConv(C, C, 3, s, 2, 2, affine=False),
    "dil_conv_5x5": lambda C, s: DilConv(C, C, 5, s, 4, 2, affine=False),
}


class _Count:
    """Counts the depthwise weight-gradient and pointwise recomputation calls of the fused blocks."""

    def __init__(self, monkeypatch: Any) -> None:
        self.wgrad = 0
        orig = fused.depthwise_backward

        def backward(*args: Any) -> Any:
            if args[-1]:  # need_w
                self.wgrad += 1
            return orig(*args)

        monkeypatch.setattr(fused, "depthwise_backward", backward)


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("shared_relu", [True, False], ids=["shared", "own"])
def test_dw_chain_gradients_of_any_subset_equal_module_chain(
    name: str, stride: int, layout: Any, shared_relu: bool, monkeypatch: Any
) -> None:
    torch.manual_seed(1)
    op = OPS[name](4, stride).double()
    twin = copy.deepcopy(op)
    g0 = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g0, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_()
    blocks = dw_blocks(_chain(twin))
    assert blocks is not None
    count = _Count(monkeypatch)
    ref = op(x)
    new = dw_chain(x, relu_layout(x.detach()) if shared_relu else None, blocks)
    g = torch.randn(ref.shape, generator=g0, dtype=torch.float64)
    p_ref, p_new = list(op.parameters()), list(twin.parameters())
    groups = {
        "x": [0],
        "dw": [1 + i for i in range(len(p_ref)) if i % 2 == 0],
        "pw": [2 + i for i in range(0, len(p_ref), 2)],
    }
    for r in (1, 2):
        for combo in itertools.combinations(groups, r):
            idx = sorted(i for k in combo for i in groups[k])
            want_ref = [([x] + p_ref)[i] for i in idx]
            want_new = [([x] + p_new)[i] for i in idx]
            before = count.wgrad
            ga = torch.autograd.grad(ref, want_ref, g, retain_graph=True)
            gb = torch.autograd.grad(new, want_new, g, retain_graph=True)
            for a, b in zip(ga, gb, strict=True):
                assert_rel_close(a, b)
            if "dw" in combo:
                assert count.wgrad > before, combo
            else:  # no depthwise weight gradient computed when none is asked for
                assert count.wgrad == before, combo


@pytest.mark.parametrize("estimator", [{"type": "egs", "samples": 2}, "softmax"], ids=["egs2", "softmax"])
def test_darts_arch_only_and_weight_only_gradients_equal_plain(estimator: Any, monkeypatch: Any) -> None:
    """DARTS supernet, float64: ``autograd.grad`` w.r.t. the architecture parameters only (the arch step;
    zero-weight columns included for EGS) and ``backward(inputs=weights)`` on a detached sample (the weight
    step) give the plain path's gradients; the arch-only pass computes no depthwise weight gradient."""
    torch.manual_seed(0)
    space = SPACES.build("darts")
    net = space.build_supernet(C=4, layers=3).double()
    dist = ArchitectureDistribution(space, estimator, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2,), generator=g)
    arch = dist.sample(torch.Generator().manual_seed(3))
    a_params = list(dist.parameters())
    ref = torch.autograd.grad(F.cross_entropy(net(x, arch.plain_exact()), y), a_params, retain_graph=True)
    count = _Count(monkeypatch)
    new = torch.autograd.grad(F.cross_entropy(net(x, arch), y), a_params, retain_graph=True)
    assert count.wgrad == 0
    assert any(t.abs().sum() > 0 for t in ref)
    for a, b in zip(ref, new, strict=True):
        assert_rel_close(a, b)
    # weight step: detached sample, gradients of the supernet weights only
    w_params = [p for p in net.parameters() if p.requires_grad]
    det = arch.detach()
    ref_w = torch.autograd.grad(F.cross_entropy(net(x, det.plain_exact()), y), w_params, allow_unused=True)
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x, det), y).backward(inputs=w_params)
    assert count.wgrad > 0
    for p, a in zip(w_params, ref_w, strict=True):
        if a is None:
            assert p.grad is None or p.grad.abs().max() == 0
        else:
            assert_rel_close(a, p.grad)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [8, 7])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_avg_pool_values_and_adjoint_equal_the_pool_module(stride: int, hw: int, layout: Any) -> None:
    """The DARTS pool+BatchNorm ops' average pool (ones-kernel convolution on channels-last CPU tensors) and
    its adjoint equal :class:`AvgPool3x3` and its autograd input gradient in float64."""
    from datanas_core.ops import AvgPool3x3
    from datanas_core.space.fused import avg_pool_adjoint, avg_pool_values

    g0 = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, hw, hw, generator=g0, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_()
    pool = AvgPool3x3(stride)
    ref = pool(x)
    new = avg_pool_values(x, stride, pool)
    assert not new.requires_grad
    assert_rel_close(ref, new)
    g = torch.randn(ref.shape, generator=g0, dtype=torch.float64).contiguous(memory_format=layout)
    (gx,) = torch.autograd.grad(ref, [x], g)
    assert_rel_close(gx, avg_pool_adjoint(g, x.detach(), stride, pool))
