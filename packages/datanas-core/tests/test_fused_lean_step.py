"""The step-cost changes of the lean DARTS edge equal what they replace (issue 17, DARTS b16 target).

* stride-1 3x3 max pooling as separable pairwise maxima (:func:`~datanas_core.space.fused._max3x3_s1`):
  the pool's values exactly (maxima are exact), NaN included, both layouts, odd and tiny sizes;
* :class:`~datanas_core.space.fused.ReluDwPwBnFn` with ``keep`` (a weight step keeps ``relu(a)`` and the
  depthwise output instead of recomputing them): same values, gradients and running statistics;
* the BatchNorm-output inner product through PyTorch's BatchNorm backward kernel (``mixed._bn_inner``);
* exact-zero gradients of the carried tensors only where the backward pass reaches them: an architecture
  step gives the same architecture gradients, a weight step still gives the ops' parameters zeros.

float64 throughout, relative tolerance 1e-10 against the module chains / the plain exact path.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from datanas_core.ops import DilConv, SepConv
from datanas_core.space.fused import _max_pool_cl, dw_blocks, dw_chain, max_pool3x3, relu_layout
from datanas_core.space.mixed import MixedOp, _bn_inner, _chain
from datanas_core.testing import assert_rel_close

CL = torch.channels_last


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 5), (1, 2, 2, 2), (1, 2, 2, 9), (2, 4, 1, 6)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_values_equal_torch(shape: Any, stride: int, layout: Any, dtype: Any) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g, dtype=dtype)
    x[0, 0, 0, 0] = float("nan")
    x[-1, -1, -1, -1] = float("-inf")
    x = x.contiguous(memory_format=layout)
    ref = F.max_pool2d(x, 3, stride, 1)
    for y in (_max_pool_cl(x, stride), max_pool3x3(x, stride)):
        assert y.shape == ref.shape
        assert torch.equal(y.isnan(), ref.isnan())
        assert torch.equal(y.nan_to_num(7.0), ref.nan_to_num(7.0))
        if shape[1] > 1 and min(y.shape[-2:]) > 1:
            assert y.is_contiguous(memory_format=layout)


def test_max_pool_gradient_equals_torch() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    g = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    (ga,) = torch.autograd.grad(F.max_pool2d(x, 3, 1, 1), x, g)
    (gb,) = torch.autograd.grad(max_pool3x3(x, 1), x, g)
    assert torch.equal(ga, gb)


OPS = {
    "sep_conv_3x3": lambda C, s: SepConv(C, C, 3, s, 1, affine=False),
    "sep_conv_5x5": lambda C, s: SepConv(C, C, 5, s, 2, affine=False),
    "dil_conv_3x3": lambda C, s: DilConv(C, C, 3, s, 2, 2, affine=False),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("shared_relu", [True, False])
def test_keep_equals_module_chain(name: str, stride: int, layout: Any, shared_relu: bool) -> None:
    torch.manual_seed(3)
    op = OPS[name](4, stride).double()
    twin = copy.deepcopy(op)
    g0 = torch.Generator().manual_seed(11)
    x = torch.randn(3, 4, 8, 8, generator=g0, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_()
    blocks = dw_blocks(_chain(twin))
    assert blocks is not None
    ref = op(x)
    new = dw_chain(x, relu_layout(x.detach()) if shared_relu else None, blocks, keep=True)
    assert_rel_close(ref, new)
    g = torch.randn(ref.shape, generator=g0, dtype=torch.float64)
    ga = torch.autograd.grad(ref, [x, *op.parameters()], g)
    gb = torch.autograd.grad(new, [x, *twin.parameters()], g)
    for a, b in zip(ga, gb, strict=True):
        assert_rel_close(a, b)
    for a, b in zip(op.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the input gradient alone (what an architecture step asks for) is the same with the kept tensors
    new2 = dw_chain(x, None, blocks, keep=True)
    (gx,) = torch.autograd.grad(new2, x, g)
    (gx_ref,) = torch.autograd.grad(op(x), x, g)
    assert_rel_close(gx_ref, gx)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_bn_inner_equals_formula(layout: Any) -> None:
    gen = torch.Generator().manual_seed(5)
    c = (torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64) * 2 + 1).contiguous(memory_format=layout)
    g = torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64)
    mean = c.mean((0, 2, 3))
    invstd = torch.rsqrt(c.var((0, 2, 3), unbiased=False) + 1e-5)
    ref = (g * ((c - mean[:, None, None]) * invstd[:, None, None])).sum()
    assert_rel_close(ref, _bn_inner(g, c, mean, invstd))
    # mixed dtypes take the generic formula
    m32, i32 = mean.float(), invstd.float()
    ref32 = (g * ((c - m32.double()[:, None, None]) * i32.double()[:, None, None])).sum()
    assert_rel_close(ref32, _bn_inner(g, c, m32, i32))


def _edge_and_weights() -> tuple[MixedOp, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    names = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]
    edge = MixedOp.build(names, 4, 4, 1, pool_bn=True).double()
    w = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    return edge, w, x


def test_carried_zeros_only_where_reached() -> None:
    edge, w, x = _edge_and_weights()
    active = list(range(6))
    zero = frozenset(k for k in active if w[k].item() == 0)
    twin = copy.deepcopy(edge)
    params, tparams = list(edge.parameters()), list(twin.parameters())
    # architecture step: gradients w.r.t. the weights (and the input) only
    y_ref = edge(x, w, active)  # plain products and sums
    y_new = twin(x, w, active, zero=zero, fused=True)
    g = torch.randn(y_ref.shape, dtype=torch.float64)
    ra = torch.autograd.grad(y_ref, [w, x], g)
    na = torch.autograd.grad(y_new, [w, x], g)
    for a, b in zip(ra, na, strict=True):
        assert_rel_close(a, b)
    # weight step: every parameter gets a gradient, zeros for the zero-weight ops (as the plain product gives)
    y_ref = edge(x, w.detach(), active)
    y_new = twin(x, w.detach(), active, zero=zero, fused=True, arch_grad=False)
    rw = torch.autograd.grad(y_ref, params, g, allow_unused=True)
    nw = torch.autograd.grad(y_new, tparams, g, allow_unused=True)
    for a, b in zip(rw, nw, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            if a.abs().max() == 0:
                assert b.abs().max() == 0
            else:
                assert_rel_close(a, b)
    assert any(b is not None and b.abs().max() == 0 for b in nw)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_pool_bn_stats_update_every_batch_norm_alike(momentum: Any, dtype: Any) -> None:
    from datanas_core.space.fused import pool_bn_stats

    gen = torch.Generator().manual_seed(9)
    c = (torch.randn(4, 3, 5, 5, generator=gen, dtype=dtype) * 3 + 2).contiguous(memory_format=CL)
    bns = [torch.nn.BatchNorm2d(3, affine=False, momentum=momentum).to(dtype) for _ in range(3)]
    twins = copy.deepcopy(bns)
    shared: dict[Any, Any] = {}
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for _ in range(2):  # two batches: the running statistics and the cumulative count move twice
        for bn, twin in zip(bns, twins, strict=True):
            ref = bn(c)
            mean, invstd = pool_bn_stats(twin, c, shared)
            y = (c - mean[:, None, None]) * invstd[:, None, None]
            torch.testing.assert_close(y, ref, rtol=tol, atol=tol)
            for a, b in zip(bn.buffers(), twin.buffers(), strict=True):
                torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        shared.clear()
        c = c * 0.5 + 1
