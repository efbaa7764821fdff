"""Candidate operations shared by the cell search spaces, and the op registry.

Every op is built by a factory with the signature ``(C_in, C_out, stride, *, affine) -> nn.Module``
registered in :data:`OPS`. The core registers the DARTS CNN primitives (``none``, ``max_pool_3x3``,
``avg_pool_3x3``, ``skip_connect``, ``sep_conv_{3,5,7}x{3,5,7}``, ``dil_conv_{3,5}x{3,5}``,
``conv_7x1_1x7``) and the NAS-Bench-201 ones (``nor_conv_{1,3,7}x{1,3,7}``; NB201's ``none``,
``skip_connect`` and ``avg_pool_3x3`` are the same entries).

One table serves both spaces because the two code bases agree wherever both define an op: the only NB201
extension is the channel-changing case (``C_in != C_out``), which the DARTS space never uses. There the
pooling ops are preceded by a 1x1 ReLU-Conv-BN and ``skip_connect`` becomes a (strided or not)
FactorizedReduce, as in NB201's reference operations. Domain packages add their own ops under namespaced
names with :func:`register_op`.

Conventions (DARTS): every convolution has no bias and is followed by BatchNorm whose ``affine`` flag comes
from the factory argument (search supernets use ``affine=False``); ReLUs are not in-place because one input
feeds many ops; spatial output size of a stride-``s`` op is ``ceil(H / s)`` for every op, including
``none``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.registry import Registry

__all__ = [
    "OPS",
    "AvgPool3x3",
    "DilConv",
    "FactorizedReduce",
    "MaxPool3x3",
    "OpFactory",
    "Pool",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "SepConv",
    "StackedConv",
    "avg_pool3x3_adjoint",
    "Zero",
    "build_op",
    "is_pool",
    "out_size",
    "register_op",
    "with_pool_bn",
]


class OpFactory(Protocol):
    """Builds one candidate op module."""

    def __call__(self, C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module: ...


#: Registry of op factories, keyed by op name.
OPS: Registry[OpFactory] = Registry("op")


def register_op(name: str, *, override: bool = False) -> Callable[[OpFactory], OpFactory]:
    """Decorator registering an op factory in :data:`OPS`.

    Domain packages should namespace their names (``"lm.tanh"``, ``"seg.aspp_3x3"``).

    Example:
        >>> @register_op("example.identity3")
        ... def _identity(C_in, C_out, stride, *, affine):
        ...     return nn.Identity()
    """
    return OPS.register(name, override=override)


def build_op(name: str, C_in: int, C_out: int, stride: int = 1, *, affine: bool = True) -> nn.Module:
    """Instantiate the op registered as ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the registered ops).
        ConfigError: invalid channel counts or stride.
    """
    _check_dims(name, C_in, C_out, stride)
    return OPS.get(name)(C_in, C_out, stride, affine=affine)


def _check_dims(name: str, C_in: int, C_out: int, stride: int) -> None:
    if C_in < 1 or C_out < 1:
        raise ConfigError(f"op {name!r}: channel counts must be >= 1, got C_in={C_in}, C_out={C_out}")
    if stride not in (1, 2):
        raise ConfigError(f"op {name!r}: stride must be 1 or 2, got {stride}")


def _bn(C: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine)


# ----------------------------------------------------------------------------------------------------------
# Op modules
# ----------------------------------------------------------------------------------------------------------


class Zero(nn.Module):
    """The ``none`` op: zeros of shape ``[B, C_out, ceil(H/s), ceil(W/s)]`` (no gradient to ``x``)."""

    def __init__(self, C_out: int, stride: int = 1) -> None:
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        s = self.stride
        return x.new_zeros(x.shape[0], self.C_out, (h + s - 1) // s, (w + s - 1) // s)

    def extra_repr(self) -> str:
        return f"C_out={self.C_out}, stride={self.stride}"


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (no bias) -> BatchNorm. NB201's ``nor_conv_kxk`` and the cells' 1x1 preprocessing."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
        *,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_out, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
            ),
            _bn(C_out, affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated kxk conv -> pointwise 1x1 conv -> BN (DARTS ``dil_conv_kxk``)."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        *,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            _bn(C_out, affine),
        )


class SepConv(nn.Sequential):
    """DARTS ``sep_conv_kxk``: two (ReLU, depthwise kxk, pointwise 1x1, BN) blocks, stride in the first."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, *, affine: bool = True
    ):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine=affine),
        )


class StackedConv(nn.Sequential):
    """DARTS ``conv_7x1_1x7``: ReLU -> 1x7 conv -> 7x1 conv -> BN."""

    def __init__(self, C_in: int, C_out: int, stride: int, *, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C_out, C_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            _bn(C_out, affine),
        )


class FactorizedReduce(nn.Module):
    """ReLU, then two 1x1 stride-2 convs on ``x`` and on ``x`` shifted by one pixel, concatenated, then BN.

    With ``stride=1`` it is a plain ReLU-Conv1x1-BN (NB201 uses it to change channels). The shifted branch is
    zero-padded on the bottom/right so odd spatial sizes work; for even sizes this equals DARTS'
    ``x[:, :, 1:, 1:]``.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2, *, affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"FactorizedReduce: stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        if stride == 2:
            half = C_out // 2
            if half < 1:
                raise ConfigError(f"FactorizedReduce with stride 2 needs C_out >= 2, got {C_out}")
            self.conv_1 = nn.Conv2d(C_in, half, 1, stride=2, bias=False)
            self.conv_2 = nn.Conv2d(C_in, C_out - half, 1, stride=2, bias=False)
        else:
            self.conv_1 = nn.Conv2d(C_in, C_out, 1, bias=False)
            self.conv_2 = None
        self.bn = _bn(C_out, affine)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        if self.conv_2 is None:
            return self.bn(self.conv_1(x))
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _box3(x: Tensor) -> Tensor:
    """Sum over every 3x3 window of ``x`` (zero padding of 1, stride 1): two separable passes of shifted adds.

    The 3x3 box filter with zero padding is symmetric, so it is also its own transpose (used in backward).
    """
    if x.requires_grad and torch.is_grad_enabled():  # differentiable (``out=`` is not)
        r = x.clone()
        r[..., :, 1:] += x[..., :, :-1]
        r[..., :, :-1] += x[..., :, 1:]
        out = r.clone()
        out[..., 1:, :] += r[..., :-1, :]
        out[..., :-1, :] += r[..., 1:, :]
        return out
    # the same additions in the same order (x[i] + x[i-1], then + x[i+1]) without the two full copies
    r = torch.empty_like(x)
    r[..., :, :1] = x[..., :, :1]
    torch.add(x[..., :, 1:], x[..., :, :-1], out=r[..., :, 1:])
    r[..., :, :-1] += x[..., :, 1:]
    out = torch.empty_like(r)
    out[..., :1, :] = r[..., :1, :]
    torch.add(r[..., 1:, :], r[..., :-1, :], out=out[..., 1:, :])
    out[..., :-1, :] += r[..., 1:, :]
    return out


def _window_counts(size: int, stride: int) -> list[int]:
    """How many of the 3 taps of each output position (padding 1, ``stride``) fall inside ``[0, size)``."""
    return [min(i * stride + 1, size - 1) - max(i * stride - 1, 0) + 1 for i in range(out_size(size, stride))]


class _BoxAvgPool3x3Fn(torch.autograd.Function):
    """3x3 average pooling with padding 1 excluding the padding: box sum times a reciprocal-count map.

    Nothing is saved for backward but the (tiny) count map: the gradient is the box sum of the scaled
    output gradient (scattered back onto the full grid when strided).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, stride: int, rcount: Tensor) -> Tensor:  # type: ignore[override]
        s = _box3(x)
        if stride > 1:
            s = s[..., ::stride, ::stride]
        ctx.stride = stride
        ctx.in_hw = tuple(x.shape[-2:])
        ctx.save_for_backward(rcount)
        return s * rcount

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (rcount,) = ctx.saved_tensors
        return avg_pool3x3_adjoint(g, rcount, ctx.stride, ctx.in_hw), None, None


def avg_pool3x3_adjoint(g: Tensor, rcount: Tensor, stride: int, in_hw: tuple[int, ...]) -> Tensor:
    """The adjoint of :class:`AvgPool3x3` (its input gradient for output gradient ``g``), for inputs of
    spatial size ``in_hw``; ``rcount`` is the pool's reciprocal-count map."""
    gs = g * rcount
    if stride > 1:
        full = gs.new_zeros(*gs.shape[:-2], *in_hw)
        full[..., ::stride, ::stride] = gs
        gs = full
    return _box3(gs)


class AvgPool3x3(nn.Module):
    """``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)``, computed as a box filter.

    A 3x3 window sum by separable shifted adds, times a precomputed map of reciprocal window counts (cached
    per input size, dtype and device); the backward pass is the same box filter, so nothing but the count
    map is kept for it. Equal to ``nn.AvgPool2d`` up to rounding (the sum is divided by multiplication with
    the reciprocal count). Many times faster on CPU, where PyTorch's ``count_include_pad=False`` kernel costs
    about as much as a 3x3 convolution.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"AvgPool3x3: stride must be 1 or 2, got {stride}")
        self.stride = stride
        self._rcount: dict[tuple[Any, ...], Tensor] = {}

    def reciprocal_counts(self, x: Tensor) -> Tensor:
        """The map of reciprocal window counts for inputs shaped like ``x`` (cached)."""
        h, w = x.shape[-2:]
        key = (h, w, x.dtype, x.device)
        rc = self._rcount.get(key)
        if rc is None:
            ch = torch.tensor(_window_counts(h, self.stride), dtype=torch.float64)
            cw = torch.tensor(_window_counts(w, self.stride), dtype=torch.float64)
            rc = (1.0 / (ch[:, None] * cw[None, :])).to(dtype=x.dtype, device=x.device)
            self._rcount[key] = rc
        return rc

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[-1] < 2 or x.shape[-2] < 2:
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        return _BoxAvgPool3x3Fn.apply(x, self.stride, self.reciprocal_counts(x))

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class MaxPool3x3(nn.Module):
    """``nn.MaxPool2d(3, stride, padding=1)`` run in channels-last layout (several times faster on CPU).

    Same values and the same argmax (first maximum in the window, so ties route the gradient alike); the
    output is returned in the input's (contiguous) layout.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            return F.max_pool2d(x, 3, self.stride, 1)
        y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, self.stride, 1)
        return y.contiguous()

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class Pool(nn.Module):
    """3x3 max or average pooling (average excludes padding); a 1x1 ReLU-Conv-BN first if channels change.

    The post-pool BatchNorm of DARTS' search supernet is added by the cell builders (see
    :func:`with_pool_bn`), not here, so that evaluation networks get plain pooling. The pools are
    :class:`AvgPool3x3` and :class:`MaxPool3x3` (the same functions as ``nn.AvgPool2d`` /
    ``nn.MaxPool2d``, faster).
    """

    def __init__(self, C_in: int, C_out: int, stride: int, mode: str, *, affine: bool = True) -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ConfigError(f"Pool mode must be 'max' or 'avg', got {mode!r}")
        self.preprocess = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, affine=affine)
        self.pool: nn.Module = AvgPool3x3(stride) if mode == "avg" else MaxPool3x3(stride)

    def forward(self, x: Tensor) -> Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.pool(x)


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two 3x3 ReLU-Conv-BN plus a shortcut (2x2 avg pool + 1x1 conv if strided)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 2, *, affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"ResNetBasicBlock: stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=affine)
        self.downsample: nn.Module | None
        if stride == 2:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=2, padding=0), nn.Conv2d(C_in, C_out, 1, bias=False)
            )
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, affine=affine)
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


# ----------------------------------------------------------------------------------------------------------
# Registered factories
# ----------------------------------------------------------------------------------------------------------


@register_op("none")
def _none(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
    return Zero(C_out, stride)


@register_op("skip_connect")
def _skip(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    return FactorizedReduce(C_in, C_out, stride, affine=affine)


@register_op("max_pool_3x3")
def _max_pool(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
    return Pool(C_in, C_out, stride, "max", affine=affine)


@register_op("avg_pool_3x3")
def _avg_pool(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
    return Pool(C_in, C_out, stride, "avg", affine=affine)


def _register_sep(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
        return SepConv(C_in, C_out, k, stride, k // 2, affine=affine)

    OPS.register(f"sep_conv_{k}x{k}", factory)


def _register_dil(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
        return DilConv(C_in, C_out, k, stride, k - 1, 2, affine=affine)

    OPS.register(f"dil_conv_{k}x{k}", factory)


def _register_nor(k: int) -> None:
    def factory(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
        return ReLUConvBN(C_in, C_out, k, stride, k // 2, affine=affine)

    OPS.register(f"nor_conv_{k}x{k}", factory)


for _k in (3, 5, 7):
    _register_sep(_k)
for _k in (3, 5):
    _register_dil(_k)
for _k in (1, 3, 7):
    _register_nor(_k)
del _k


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(C_in: int, C_out: int, stride: int, *, affine: bool) -> nn.Module:
    return StackedConv(C_in, C_out, stride, affine=affine)


def is_pool(name: str) -> bool:
    """Whether op ``name`` is a pooling op (DARTS' rule: the name contains ``"pool"``)."""
    return "pool" in name


def with_pool_bn(name: str, op: nn.Module, C_out: int) -> nn.Module:
    """Append a non-affine BatchNorm to pooling ops (DARTS search supernet, DrNAS cells); others unchanged."""
    if is_pool(name):
        return nn.Sequential(op, nn.BatchNorm2d(C_out, affine=False))
    return op


def out_size(size: int, stride: int) -> int:
    """Spatial output size of every op here for input ``size`` and ``stride``: ``ceil(size / stride)``."""
    return math.ceil(size / stride)
