"""The fused blocks of the lean mixed edge equal the module chains they replace (issue 17).

float64 throughout: values, input and parameter gradients and BatchNorm running statistics, for every
kernel size, stride, dilation and padding the DARTS-space ops use, on even and odd spatial sizes and in both
memory layouts.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datanas_core.ops import AvgPool3x3, DilConv, MaxPool3x3, Pool, SepConv, _box3
from datanas_core.space.fused import (
    PoolBnFn,
    depthwise_backward,
    dw_blocks,
    dw_chain,
    max_pool3x3,
    pool_bn_parts,
    pool_recompute,
    relu_layout,
)
from datanas_core.space.mixed import _chain, _inner
from datanas_core.testing import assert_rel_close

CL = torch.channels_last

OPS = {
    "sep_conv_3x3": lambda C, s: SepConv(C, C, 3, s, 1, affine=False),
    "sep_conv_5x5": lambda C, s: SepConv(C, C, 5, s, 2, affine=False),
    "dil_conv_3x3": lambda C, s: DilConv(C, C, 3, s, 2, 2, affine=False),
    "dil_conv_5x5": lambda C, s: DilConv(C, C, 5, s, 4, 2, affine=False),
}


def _input(hw: int, layout: torch.memory_format, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, hw, hw, generator=g, dtype=torch.float64)
    return x.contiguous(memory_format=layout).requires_grad_()


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [8, 7])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_fused_dw_chain_equals_module_chain(name: str, stride: int, hw: int, layout: Any) -> None:
    torch.manual_seed(1)
    op = OPS[name](4, stride).double()
    twin = copy.deepcopy(op)
    x = _input(hw, layout)
    ref = op(x)
    blocks = dw_blocks(_chain(twin))
    assert blocks is not None and len(blocks) == (2 if name.startswith("sep") else 1)
    new = dw_chain(x, relu_layout(x.detach()), blocks)
    assert_rel_close(ref, new)
    g = torch.randn_like(ref)
    ga = torch.autograd.grad(ref, [x, *op.parameters()], g)
    gb = torch.autograd.grad(new, [x, *twin.parameters()], g)
    for a, b in zip(ga, gb, strict=True):
        assert_rel_close(a, b)
    for a, b in zip(op.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # forward-only (no autograd) gives the same values and updates the statistics alike
    with torch.no_grad():
        ref2, new2 = op(x), dw_chain(x, None, blocks)
    assert_rel_close(ref2, new2)


def test_dw_blocks_rejects_other_chains() -> None:
    assert (
        dw_blocks(_chain(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))) is None
    )
    affine = DilConv(4, 4, 3, 1, 2, 2, affine=True)
    assert dw_blocks(_chain(affine)) is None
    hooked = DilConv(4, 4, 3, 1, 2, 2, affine=False)
    hooked[1].register_forward_hook(lambda *a: None)
    assert dw_blocks(_chain(hooked)) is None
    evaluating = DilConv(4, 4, 3, 1, 2, 2, affine=False).eval()
    assert dw_blocks(_chain(evaluating)) is None


@pytest.mark.parametrize(("k", "dilation"), [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [8, 7, 6])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_depthwise_backward_equals_torch(k: int, dilation: int, stride: int, hw: int, layout: Any) -> None:
    pad = dilation * (k - 1) // 2
    g = torch.Generator().manual_seed(k * 10 + dilation)
    r = torch.randn(2, 3, hw, hw, generator=g, dtype=torch.float64).contiguous(memory_format=layout)
    w = torch.randn(3, 1, k, k, generator=g, dtype=torch.float64)
    out = F.conv2d(r, w, None, stride, pad, dilation, 3)
    gd = torch.randn(out.shape, generator=g, dtype=torch.float64).contiguous(memory_format=layout)
    ref_in, ref_w, _ = torch.ops.aten.convolution_backward(
        gd, r, w, None, [stride] * 2, [pad] * 2, [dilation] * 2, False, [0, 0], 3, [True, True, False]
    )
    gi, gw = depthwise_backward(gd, r, w, (stride,) * 2, (pad,) * 2, (dilation,) * 2, True, True)
    assert gi is not None and gw is not None
    assert_rel_close(ref_in, gi)
    assert_rel_close(ref_w, gw)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_max_pool3x3_keeps_only_input_and_matches_torch_with_ties(stride: int, layout: Any) -> None:
    x = torch.randint(0, 3, (2, 3, 7, 7)).double().contiguous(memory_format=layout).requires_grad_()
    ref = F.max_pool2d(x, 3, stride, 1)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t):
        new = max_pool3x3(x, stride)
    assert torch.equal(ref, new)
    assert saved == [x.data_ptr()]
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(ref, x, g)[0], torch.autograd.grad(new, x, g)[0])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [8, 7])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_pool_bn_fn_equals_modules(mode: str, stride: int, hw: int, layout: Any) -> None:
    op = nn.Sequential(Pool(4, 4, stride, mode, affine=False), nn.BatchNorm2d(4, affine=False)).double()
    twin = copy.deepcopy(op)
    parts = pool_bn_parts(_chain(twin))
    assert parts is not None and parts[0] == mode and parts[1] == stride
    x = _input(hw, layout, seed=2)
    ref = op(x)
    holder = pool_recompute(x, *parts[:3])
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        new, mean, invstd = PoolBnFn.apply(x, *parts, holder)
    assert max(saved) == x.numel() and sorted(saved)[:-1] == [4, 4]  # x, batch mean and invstd only
    assert_rel_close(ref, new)
    assert mean.shape == invstd.shape == (4,) and not mean.requires_grad
    g = torch.randn_like(ref)
    assert_rel_close(torch.autograd.grad(ref, x, g)[0], torch.autograd.grad(new, x, g)[0])
    for a, b in zip(op.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pool_bn_parts_only_plain_pools() -> None:
    assert pool_bn_parts(None) is None
    changing = nn.Sequential(Pool(2, 4, 1, "max", affine=False), nn.BatchNorm2d(4, affine=False))
    assert pool_bn_parts(_chain(changing)) is None  # 1x1 preprocessing first
    affine = nn.Sequential(Pool(4, 4, 1, "avg", affine=False), nn.BatchNorm2d(4, affine=True))
    assert pool_bn_parts(_chain(affine)) is None
    assert isinstance(Pool(4, 4, 1, "max").pool, MaxPool3x3) and isinstance(
        Pool(4, 4, 1, "avg").pool, AvgPool3x3
    )


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (2, 5, 7, 9), (2, 3, 1, 5), (3, 2, 6, 1)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_box_filter_is_bitwise_the_clone_and_add_version(shape: tuple[int, ...], layout: Any) -> None:
    x = torch.randn(shape).contiguous(memory_format=layout)
    r = x.clone()
    r[..., :, 1:] += x[..., :, :-1]
    r[..., :, :-1] += x[..., :, 1:]
    ref = r.clone()
    ref[..., 1:, :] += r[..., :-1, :]
    ref[..., :-1, :] += r[..., 1:, :]
    assert torch.equal(_box3(x), ref)
    xg = x.clone().requires_grad_()
    assert torch.equal(_box3(xg), ref)  # the differentiable path too


def test_inner_product_in_any_layout() -> None:
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    b = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    ref = (a * b).sum()
    for x, y in [
        (a, b),
        (a.contiguous(memory_format=CL), b.contiguous(memory_format=CL)),
        (a, b.to(memory_format=CL)),
    ]:
        torch.testing.assert_close(_inner(x, y), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        _inner(a[:, 1:], b[:, 1:]), (a[:, 1:] * b[:, 1:]).sum(), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("space_name", ["darts", "drnas_darts"])
def test_darts_supernet_channels_last_gives_the_same_gradients(space_name: str) -> None:
    from datanas_core.distribution import ArchitectureDistribution
    from datanas_core.space.base import SPACES

    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"C": 4, "layers": 3}
    if space_name == "drnas_darts":
        kwargs.update(partial_channels=2, skip_zero=False)
    space = SPACES.build(space_name)
    net = space.build_supernet(**kwargs).double()
    twin = copy.deepcopy(net)
    assert net.channels_last
    twin.channels_last = False
    dist = ArchitectureDistribution(space, "softmax", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2,), generator=g)
    arch = dist.sample(torch.Generator().manual_seed(3))
    ga = torch.autograd.grad(
        F.cross_entropy(net(x, arch), y), [*net.parameters(), *dist.parameters()], retain_graph=True
    )
    gb = torch.autograd.grad(F.cross_entropy(twin(x, arch), y), [*twin.parameters(), *dist.parameters()])
    for a, b in zip(ga, gb, strict=True):
        assert_rel_close(a, b)


def test_lean_darts_supernet_keeps_under_half_of_the_plain_activations() -> None:
    """Softmax, DARTS space: the fused blocks, shared ReLU and recomputed pools keep < 50 % of what the
    plain path keeps for backward (about 42 % here; the plain path keeps every op's internals)."""
    from datanas_core.distribution import ArchitectureDistribution
    from datanas_core.space.base import SPACES

    torch.manual_seed(0)
    space = SPACES.build("darts")
    net = space.build_supernet(C=4, layers=3).double()
    twin = copy.deepcopy(net)
    dist = ArchitectureDistribution(space, "softmax", seed=0, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (2,))
    arch = dist.sample(torch.Generator().manual_seed(3))

    def kept(model: nn.Module, a: Any) -> int:
        seen: set[int] = set()
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            F.cross_entropy(model(x, a), y)
        return total

    assert kept(net, arch) < 0.5 * kept(twin, arch.plain_exact())
