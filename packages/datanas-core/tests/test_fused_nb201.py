"""The fused dense edge of NB201-style supernets equals the module chains and the plain weighted sum (issue 17).

float64 throughout: :class:`~datanas_core.space.fused.DenseEdgeFn` (skip, ReLU-Conv-BN and 3x3 average-pool
columns in one autograd function) against ``MixedOp.forward(fused=False)`` on a deep copy of the same edge:
values, gradients of the input, the column weights and every parameter, BatchNorm running statistics, in both
memory layouts, for every subset of columns that contains a ReLU-Conv-BN, with and without zero-weight
columns, and in passes that want only some of the gradients (architecture steps).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datanas_core.ops import AvgPool3x3, ReLUConvBN, _box3
from datanas_core.space.fused import RCB, DenseEdgeFn, box_sum, rcb_parts
from datanas_core.space.mixed import MixedOp
from datanas_core.space.nb201 import NB201_OPS
from datanas_core.testing import assert_rel_close

CL = torch.channels_last
K = len(NB201_OPS)


pytestmark = pytest.mark.usefixtures("one_thread")


def _edge(seed: int = 0) -> MixedOp:
    torch.manual_seed(seed)
    return MixedOp.build(NB201_OPS, 4, 4, 1, affine=False).double()


def _input(layout: Any, hw: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, hw, hw, generator=g, dtype=torch.float64)
    return x.contiguous(memory_format=layout).requires_grad_()


def _weights(seed: int = 2, zero: tuple[int, ...] = ()) -> torch.Tensor:
    w = torch.rand(K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    for k in zero:
        w[k] = 0.0
    return w.requires_grad_()


def _compare(
    active: list[int], layout: Any, zero: tuple[int, ...] = (), wrt: str = "all", hw: int = 7
) -> None:
    edge = _edge()
    twin = copy.deepcopy(edge)
    x = _input(layout, hw)
    w = _weights(zero=zero)
    calls = {"n": 0}
    orig = DenseEdgeFn.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return orig(*args, **kwargs)

    DenseEdgeFn.forward = staticmethod(counting)  # type: ignore[method-assign]
    try:
        new = edge(x, w.unbind(0), active, zero=set(zero), fused=True, shared={})
    finally:
        DenseEdgeFn.forward = staticmethod(orig)  # type: ignore[method-assign]
    assert calls["n"] == 1, "the dense edge function did not run"
    ref = twin(x, w.unbind(0), active, fused=False)
    assert_rel_close(ref, new)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    if wrt == "all":
        a_in, b_in = [x, w, *twin.parameters()], [x, w, *edge.parameters()]
    elif wrt == "arch":  # an architecture step: only the weights (and the input, for earlier edges)
        a_in, b_in = [x, w], [x, w]
    else:  # only the weights
        a_in, b_in = [w], [w]
    ga = torch.autograd.grad(ref, a_in, g, allow_unused=True)
    gb = torch.autograd.grad(new, b_in, g, allow_unused=True)
    for a, b in zip(ga, gb, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_rel_close(a, b)
    for (n, a), (_, b) in zip(twin.named_buffers(), edge.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=n)


CONV1, CONV3 = NB201_OPS.index("nor_conv_1x1"), NB201_OPS.index("nor_conv_3x3")
SUBSETS = [
    s
    for n in range(1, K + 1)
    for s in itertools.combinations(range(K), n)
    if CONV1 in s or CONV3 in s  # the dense edge needs a ReLU-Conv-BN column
]


@pytest.mark.parametrize("active", SUBSETS, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_dense_edge_equals_plain_weighted_sum(active: tuple[int, ...], layout: Any) -> None:
    _compare(list(active), layout)


@pytest.mark.parametrize("wrt", ["arch", "weights"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_dense_edge_partial_gradients(wrt: str, layout: Any) -> None:
    """``autograd.grad`` with only some inputs (the conv weight gradients are skipped, values unchanged)."""
    _compare(list(range(K)), layout, wrt=wrt)


@pytest.mark.parametrize("zero", [(1,), (4,), (2,), (1, 4), (2, 4)], ids=str)
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_dense_edge_with_zero_weight_columns(zero: tuple[int, ...], layout: Any) -> None:
    """Exact EGS: columns with weight exactly 0 run forward-only beside the dense function."""
    _compare(list(range(K)), layout, zero=zero)


@pytest.mark.parametrize("hw", [8, 2])
def test_dense_edge_even_and_tiny_sizes(hw: int) -> None:
    _compare(list(range(K)), CL, hw=hw)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "cl"])
def test_dense_edge_stride_two_columns(layout: Any) -> None:
    """Strided ReLU-Conv-BN and average-pool columns (not used by NB201's cells, supported alike)."""
    torch.manual_seed(0)
    edge = MixedOp(
        [
            ("c3", ReLUConvBN(4, 4, 3, 2, 1, affine=False)),
            ("c1", ReLUConvBN(4, 4, 1, 2, 0, affine=False)),
            ("p", AvgPool3x3(2)),
        ],
        C_out=4,
        stride=2,
    ).double()
    twin = copy.deepcopy(edge)
    x = _input(layout, 8)
    w = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
    new = edge(x, w.unbind(0), [0, 1, 2], fused=True)
    ref = twin(x, w.unbind(0), [0, 1, 2], fused=False)
    assert_rel_close(ref, new)
    g = torch.randn_like(ref)
    for a, b in zip(
        torch.autograd.grad(ref, [x, w, *twin.parameters()], g),
        torch.autograd.grad(new, [x, w, *edge.parameters()], g),
        strict=True,
    ):
        assert_rel_close(a, b)


def test_dense_edge_keeps_less_than_the_plain_edge() -> None:
    edge, x, w = _edge(), _input(CL), _weights()
    twin = copy.deepcopy(edge)

    def kept(fn: Any) -> int:
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
            fn()
        return total

    lean = kept(lambda: edge(x, w.unbind(0), list(range(K)), fused=True, shared={}))
    plain = kept(lambda: twin(x, w.unbind(0), list(range(K)), fused=False))
    assert lean < 0.75 * plain


def test_rcb_parts_only_plain_relu_conv_bn() -> None:
    assert rcb_parts(ReLUConvBN(4, 4, 3, 1, 1, affine=False)) is not None
    assert rcb_parts(ReLUConvBN(4, 4, 3, 1, 1, affine=True)) is None  # affine BatchNorm
    evald = ReLUConvBN(4, 4, 3, 1, 1, affine=False).eval()
    assert rcb_parts(evald) is None  # running statistics
    inplace = ReLUConvBN(4, 4, 3, 1, 1, affine=False)
    inplace[0] = nn.ReLU(inplace=True)
    assert rcb_parts(inplace) is None
    hooked = ReLUConvBN(4, 4, 3, 1, 1, affine=False)
    hooked[1].register_forward_hook(lambda *a: None)
    assert rcb_parts(hooked) is None
    biased = ReLUConvBN(4, 4, 3, 1, 1, affine=False)
    biased[1] = nn.Conv2d(4, 4, 3, padding=1, bias=True)
    assert rcb_parts(biased) is None
    assert rcb_parts(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, bias=False))) is None


def test_edge_with_other_ops_takes_the_general_path() -> None:
    """An edge with an op the dense function does not know (here a max pool) runs the general lean path."""
    torch.manual_seed(0)
    edge = MixedOp.build(["nor_conv_3x3", "max_pool_3x3"], 4, 4, 1, affine=False).double()
    assert edge._dense_columns(_input(CL), [0, 1], ()) is None
    assert edge._dense_columns(_input(CL), [0], ()) is not None
    skip_only = MixedOp.build(["skip_connect", "avg_pool_3x3"], 4, 4, 1, affine=False).double()
    assert skip_only._dense_columns(_input(CL), [0, 1], ()) is None  # no ReLU-Conv-BN column
    meta = edge._dense_columns(_input(CL), [0], ())[1]  # type: ignore[index]
    assert meta[0][0] == RCB


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (2, 5, 8, 6), (1, 2, 2, 2)])
def test_box_sum_equals_shifted_adds(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, dtype=torch.float64)
    for t in (x, x.contiguous(memory_format=CL)):
        assert_rel_close(_box3(x), box_sum(t))
    ones = torch.ones(shape[1], 1, 3, 3, dtype=torch.float64)
    assert_rel_close(F.conv2d(x, ones, None, 1, 1, 1, shape[1]), box_sum(x.contiguous(memory_format=CL)))


@pytest.mark.parametrize("estimator", ["softmax", {"type": "egs", "samples": 2}, "gdas"], ids=str)
def test_nb201_supernet_channels_last_gives_the_same_gradients(estimator: Any) -> None:
    from datanas_core.distribution import ArchitectureDistribution
    from datanas_core.space.base import SPACES

    torch.manual_seed(0)
    space = SPACES.build("nb201")
    net = space.build_supernet(C=4, N=1).double()
    twin = copy.deepcopy(net)
    assert net.channels_last
    twin.channels_last = False
    dist = ArchitectureDistribution(space, estimator, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2,), generator=g)
    arch = dist.sample(torch.Generator().manual_seed(3))
    ga = torch.autograd.grad(
        F.cross_entropy(net(x, arch), y),
        [*net.parameters(), *dist.parameters()],
        retain_graph=True,
        allow_unused=True,
    )
    gb = torch.autograd.grad(
        F.cross_entropy(twin(x, arch.plain_exact()), y),
        [*twin.parameters(), *dist.parameters()],
        allow_unused=True,
    )
    for a, b in zip(ga, gb, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_rel_close(a, b)
