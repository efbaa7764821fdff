"""Fused, memory-lean building blocks of the lean mixed edge (issue 17).

* :func:`dw_blocks` recognises DARTS' separable and dilated convolutions (chains of ``ReLU -> depthwise conv
  -> pointwise 1x1 conv -> BatchNorm(affine=False)`` blocks) and :class:`ReluDwPwBnFn` runs one block as a
  single autograd function. Its depthwise convolution runs in channels-last layout (on CPU several times
  faster than PyTorch's default path, most of all for 5x5 and dilated kernels), its pointwise convolution is
  a batched matrix product that writes a contiguous output; for backward it keeps only its input and its
  BatchNorm output (plus per-channel statistics) and recomputes the ReLU and the depthwise convolution: the
  BatchNorm backward is computed from the normalised output, the ReLU mask from the input. The plain module
  chain keeps four or five activations per block. Conv weight gradients (and the recomputed depthwise output
  the pointwise one needs) are computed only when the backward pass uses them: an architecture step, an
  ``autograd.grad`` w.r.t. the architecture parameters, computes input gradients only.
* :class:`MaxPool3x3Fn`: 3x3 max pooling (channels-last on CPU) that keeps nothing but its input and
  recomputes the argmax in backward (the module path keeps a channels-last copy and int64 indices).
* :class:`DenseEdgeFn`: a whole NB201-style edge (skip, ReLU-Conv-BN and 3x3 average-pool columns, the
  weighted sum included) as one autograd function: BatchNorm folded into a per-channel scale and bias of the
  conv output, its backward with the column weight as BatchNorm weight (the weight's gradient from the same
  call), one ReLU shared by the edges leaving a node, pool window sums as a depthwise ones-kernel convolution
  (shared by a node's edges), conv weight gradients only when the backward pass uses them.

Same functions as the module chains (values and gradients up to rounding); the float64 tests in
``tests/test_lean_exact.py`` hold them to the plain path at relative error 1e-10.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DenseEdgeFn",
    "MaxPool3x3Fn",
    "ReluDwPwBnFn",
    "batch_norm_with_stats",
    "dense_edge",
    "dw_block_forward",
    "dw_blocks",
    "max_pool3x3",
    "rcb_parts",
    "relu_layout",
]

DwBlock = tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks)


def bn_trick_ok(bn: nn.Module) -> bool:
    """A plain non-affine BatchNorm2d without hooks in training mode (batch statistics)."""
    return type(bn) is nn.BatchNorm2d and bn.training and not bn.affine and _no_hooks(bn)


def _is_depthwise(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.bias is None
        and m.groups == m.in_channels == m.out_channels
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
        and _no_hooks(m)
    )


def _is_pointwise(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.bias is None
        and m.groups == 1
        and tuple(m.kernel_size) == (1, 1)
        and tuple(m.stride) == (1, 1)
        and tuple(m.dilation) == (1, 1)
        and not isinstance(m.padding, str)
        and tuple(m.padding) == (0, 0)
        and _no_hooks(m)
    )


def dw_blocks(chain: list[nn.Module]) -> list[DwBlock] | None:
    """The ``(depthwise, pointwise, bn)`` blocks of ``chain`` when it is exactly a sequence of ``ReLU ->
    depthwise conv -> 1x1 conv -> non-affine BatchNorm (training)`` blocks without hooks, else ``None``."""
    if not chain or len(chain) % 4:
        return None
    out: list[DwBlock] = []
    for i in range(0, len(chain), 4):
        relu, dw, pw, bn = chain[i : i + 4]
        if not (type(relu) is nn.ReLU and _no_hooks(relu)):
            return None
        if not (_is_depthwise(dw) and _is_pointwise(pw) and bn_trick_ok(bn)):
            return None
        if pw.in_channels != dw.out_channels:
            return None
        out.append((dw, pw, bn))  # type: ignore[arg-type]
    return out


def _layout(t: Tensor) -> torch.memory_format:
    return (
        torch.channels_last
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
        else (torch.contiguous_format)
    )


def _dense_like(t: Tensor, ref: Tensor) -> Tensor:
    """``t`` if it has the dense layout of ``ref`` (default or channels-last), else a copy in it."""
    fmt = _layout(ref)
    return t if t.is_contiguous(memory_format=fmt) else t.contiguous(memory_format=fmt)


def relu_layout(a: Tensor) -> Tensor:
    """``relu(a)`` in the layout the depthwise convolutions run fastest in: channels-last on CPU (4-d),
    the input's layout elsewhere."""
    if a.device.type == "cpu" and a.dim() == 4 and not a.is_contiguous(memory_format=torch.channels_last):
        r = a.contiguous(memory_format=torch.channels_last)
        return r.relu_()
    return torch.relu(a)


def _bn_step(bn: nn.BatchNorm2d) -> tuple[bool, float]:
    """Count one training-mode batch as ``nn.BatchNorm2d.forward`` does; returns whether running statistics
    are tracked and the momentum to update them with (cumulative average when ``bn.momentum`` is None)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    track = bn.track_running_stats and bn.running_mean is not None
    if track and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return track, momentum


def batch_norm_with_stats(bn: nn.BatchNorm2d, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``bn(c)`` in training mode (running statistics updated as ``nn.BatchNorm2d`` does) and the batch
    mean and inverse standard deviation it normalised with (detached)."""
    track, momentum = _bn_step(bn)
    y, mean, invstd = torch.native_batch_norm(
        c,
        None,
        None,
        bn.running_mean if track else None,
        bn.running_var if track else None,
        True,
        momentum,
        bn.eps,
    )
    return y, mean.detach(), invstd.detach()


def _rows(t: Tensor) -> Tensor:
    """``t`` ``[B, C, H, W]`` as the ``[B*H*W, C]`` matrix of its pixels (a view when channels-last)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _from_rows(m: Tensor, B: int, H: int, W: int) -> Tensor:
    """Inverse of :func:`_rows`: a channels-last ``[B, C, H, W]`` view of the ``[B*H*W, C]`` matrix ``m``."""
    return m.view(B, H, W, m.shape[1]).permute(0, 3, 1, 2)


def _pointwise(d: Tensor, w: Tensor) -> Tensor:
    """1x1 convolution of ``d`` with weight ``w`` ``[O, C, 1, 1]`` as one matrix product over the pixels
    (channels-last output)."""
    B, C, H, W = d.shape
    return _from_rows(torch.mm(_rows(d), w.view(w.shape[0], C).t()), B, H, W)


def dw_block_forward(a: Tensor, r: Tensor | None, dw: nn.Conv2d, pw: nn.Conv2d) -> Tensor:
    """Pointwise(depthwise(relu(a))) (no BatchNorm); ``r``: ``relu_layout(a)`` if already computed."""
    if r is None:
        r = relu_layout(a)
    d = F.conv2d(r, dw.weight, None, dw.stride, dw.padding, dw.dilation, dw.groups)
    return _pointwise(d, pw.weight)


class ReluDwPwBnFn(torch.autograd.Function):
    """``bn(pw(dw(relu(a))))`` for one DARTS separable-conv block, keeping one input and the output.

    Inputs: ``a``; ``r``: ``relu_layout(a)`` when the caller shares it between the ops of an edge (then ``r``
    is kept for backward, not ``a``), else ``None`` (``a`` is kept and ``relu(a)`` recomputed); the depthwise
    and pointwise weights, the two conv modules (geometry) and the BatchNorm module (its running statistics
    are updated as ``nn.BatchNorm2d`` does). Backward recomputes the depthwise output; the BatchNorm input
    gradient comes from the normalised output ``y`` (``(g - mean(g) - y mean(g y)) invstd``, PyTorch's own
    kernel with ``y`` as input, mean 0, scale ``invstd``). Weight gradients are computed only when the
    backward pass uses them (not in an ``autograd.grad`` w.r.t. the architecture parameters only).

    ``keep``: a backward pass for the conv weights is expected (a weight step): ``relu(a)`` and the depthwise
    output are kept as well, so that backward recomputes neither (one more activation kept per block).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        a: Tensor,
        r: Tensor | None,
        w_dw: Tensor,
        w_pw: Tensor,
        dw: nn.Conv2d,
        pw: nn.Conv2d,
        bn: nn.BatchNorm2d,
        keep: bool = False,
    ) -> Tensor:
        rr = relu_layout(a) if r is None else r
        d = F.conv2d(rr, dw.weight, None, dw.stride, dw.padding, dw.dilation, dw.groups)
        y, _mean, invstd = batch_norm_with_stats(bn, _pointwise(d, pw.weight))
        ctx.geom = (tuple(dw.stride), tuple(dw.padding), tuple(dw.dilation), dw.groups)
        ctx.shared = r is not None or keep
        ctx.keep = keep
        ctx.tensor_pos = _tensor_positions((a, r, w_dw, w_pw))
        ctx.save_for_backward(rr if ctx.shared else a, w_dw, w_pw, y, invstd, *([d] if keep else []))
        return y

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        src, w_dw, w_pw, y, invstd = ctx.saved_tensors[:5]
        stride, padding, dilation, groups = ctx.geom
        # gradients this backward pass uses: an architecture step (autograd.grad w.r.t. the architecture
        # parameters) needs no conv weight gradients
        need_a, need_dw, need_pw = _will_run(ctx, 0), _will_run(ctx, 2), _will_run(ctx, 3)
        if not (need_a or need_dw or need_pw):
            return (None,) * 7
        C_out = y.shape[1]
        gp = torch.ops.aten.native_batch_norm_backward(
            _dense_like(gy, y),
            y,
            invstd,
            None,
            None,
            invstd.new_zeros(C_out),
            invstd.new_ones(C_out),
            True,
            0.0,
            [True, False, False],
        )[0]
        if ctx.shared:
            r = src
        elif need_pw or need_dw or not src.is_contiguous(memory_format=torch.channels_last):
            r = relu_layout(src)
        else:  # only the input gradient: src gives the layout and the ReLU mask (src > 0 iff relu(src) > 0)
            r = src
        B, C, H, W = gp.shape[0], w_pw.shape[1], gp.shape[2], gp.shape[3]
        gp2 = _rows(gp)
        g_pw = None
        if need_pw:  # the depthwise output (recomputed unless kept) only for the pointwise weight's gradient
            if ctx.keep:
                d = ctx.saved_tensors[5]
            else:
                d = F.conv2d(r, w_dw, None, stride, padding, dilation, groups)
            g_pw = torch.mm(gp2.t(), _rows(d)).view_as(w_pw)
        g_a = g_dw = None
        if need_a or need_dw:
            gd = _from_rows(torch.mm(gp2, w_pw.view(C_out, C)), B, H, W)  # dL/dd, channels-last
            if not r.is_contiguous(memory_format=torch.channels_last):
                gd = gd.contiguous(memory_format=_layout(r))
            gr, g_dw = depthwise_backward(gd, r, w_dw, stride, padding, dilation, need_a, need_dw)
            if need_a:
                g_a = torch.ops.aten.threshold_backward(gr, r, 0)
        return g_a, None, g_dw, g_pw, None, None, None, None


def _aten_dw_backward(
    gd: Tensor, r: Tensor, w: Tensor, stride: Any, padding: Any, dilation: Any, mask: list[bool]
) -> tuple[Tensor | None, ...]:
    """ATen's own backward of the depthwise ``conv2d(r, w, ..., groups=C)``; ``mask`` picks (input, weight,
    bias) gradients."""
    return torch.ops.aten.convolution_backward(
        gd, r, w, None, list(stride), list(padding), list(dilation), False, [0, 0], r.shape[1], mask
    )


def _conv_wgrad(gd: Tensor, r: Tensor, w: Tensor, stride: Any, padding: Any, dilation: Any) -> Tensor:
    return _aten_dw_backward(gd, r, w, stride, padding, dilation, [False, True, False])[1]  # type: ignore[return-value]


def _phases(t: Tensor) -> Tensor:
    """``[B, C, H, W]`` (``H``, ``W`` even) -> ``[4B, C, H/2, W/2]``: the four (row, column) parity
    sub-images stacked along the batch (channels-last)."""
    B, C, H, W = t.shape
    rows = t.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C).permute(2, 4, 0, 1, 3, 5)
    return rows.reshape(4 * B, H // 2, W // 2, C).permute(0, 3, 1, 2)


def depthwise_wgrad(gd: Tensor, r: Tensor, w: Tensor, stride: Any, padding: Any, dilation: Any) -> Tensor:
    """Weight gradient of the depthwise ``conv2d(r, w, stride, padding, dilation, groups=C)`` for output
    gradient ``gd``. A dilation-2 kernel with "same" padding on even sizes is an undilated kernel on the
    four parity sub-images (PyTorch's undilated 3x3 kernel is many times faster)."""
    k = tuple(w.shape[-2:])
    H, W = r.shape[-2:]
    if (
        tuple(stride) == (1, 1)
        and tuple(dilation) == (2, 2)
        and tuple(padding) == (k[0] - 1, k[1] - 1)
        and H % 2 == 0
        and W % 2 == 0
    ):
        half = ((k[0] - 1) // 2, (k[1] - 1) // 2)
        return _conv_wgrad(_phases(gd), _phases(r), w, (1, 1), half, (1, 1))
    if tuple(stride) == (2, 2) and tuple(dilation) == (2, 2) and tuple(padding) == (k[0] - 1, k[1] - 1):
        # stride 2, dilation 2: only the even pixels are ever read; an undilated stride-1 kernel on them
        half = ((k[0] - 1) // 2, (k[1] - 1) // 2)
        even = r[:, :, ::2, ::2].contiguous(memory_format=_layout(r))
        return _conv_wgrad(gd, even, w, (1, 1), half, (1, 1))
    return _conv_wgrad(gd, r, w, stride, padding, dilation)


def depthwise_backward(
    gd: Tensor,
    r: Tensor,
    w: Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    need_in: bool,
    need_w: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Input and weight gradients of the depthwise convolution ``conv2d(r, w, stride, padding, dilation,
    groups=C)`` for output gradient ``gd``, through the fastest exact formulation: the input gradient of a
    stride-1 "same" convolution is the convolution with the flipped kernel; a stride-2 dilation-2 one reads
    only the even pixels (an undilated stride-1 convolution of them, scattered back); weight gradients as in
    :func:`depthwise_wgrad`."""
    C = r.shape[1]
    k = tuple(w.shape[-2:])
    same = all(2 * p == dl * (kk - 1) for p, dl, kk in zip(padding, dilation, k, strict=True))
    gr = None
    if need_in:
        if same and tuple(stride) == (1, 1):
            gr = F.conv2d(gd, w.flip(-1, -2), None, 1, padding, dilation, C)
        elif tuple(stride) == (2, 2) and tuple(dilation) == (2, 2) and tuple(padding) == (k[0] - 1, k[1] - 1):
            half = ((k[0] - 1) // 2, (k[1] - 1) // 2)
            ge = F.conv2d(gd, w.flip(-1, -2), None, 1, half, 1, C)
            gr = torch.zeros_like(r)
            gr[:, :, ::2, ::2] = ge
        else:
            gr = _aten_dw_backward(gd, r, w, stride, padding, dilation, [True, False, False])[0]
    gw = depthwise_wgrad(gd, r, w, stride, padding, dilation) if need_w else None
    return gr, gw


def dw_chain(x: Tensor, r: Tensor | None, blocks: list[DwBlock], keep: bool = False) -> Tensor:
    """Run the blocks of a separable/dilated conv on ``x`` (``r``: shared ``relu_layout(x)`` or ``None``):
    with autograd through :class:`ReluDwPwBnFn` when gradients are enabled (``keep``: its option for a
    weight step), else plain forward."""
    z = x
    grad = torch.is_grad_enabled()
    for i, (dw, pw, bn) in enumerate(blocks):
        if grad:
            z = ReluDwPwBnFn.apply(z, r, dw.weight, pw.weight, dw, pw, bn, keep)
        else:
            if i and (z.device.type != "cpu" or z.is_contiguous(memory_format=torch.channels_last)):
                r = z.relu_()  # forward only: the previous block's output is ours and read by nothing else
            z = batch_norm_with_stats(bn, dw_block_forward(z, r, dw, pw))[0]
        r = None
    return z


class MaxPool3x3Fn(torch.autograd.Function):
    """3x3 max pooling (padding 1) that keeps only its input and recomputes the argmax in backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, stride: int) -> Tensor:  # type: ignore[override]
        ctx.stride = stride
        ctx.save_for_backward(x)
        return _max_pool_cl(x, stride)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        (x,) = ctx.saved_tensors
        s = ctx.stride
        xc = _to_cl(x)
        _, idx = torch.ops.aten.max_pool2d_with_indices(xc, [3, 3], [s, s], [1, 1], [1, 1], False)
        gx = torch.ops.aten.max_pool2d_with_indices_backward(
            _to_cl(g), xc, [3, 3], [s, s], [1, 1], [1, 1], False, idx
        )
        return gx.contiguous(memory_format=_layout(x)), None


def _to_cl(x: Tensor) -> Tensor:
    if x.device.type == "cpu" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _max3x3_s1(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 3, 1, 1)`` of a 4-d tensor (``H``, ``W`` >= 2) as two separable passes of pairwise
    maxima (rows, then columns), without padding: each output is the maximum of the in-range neighbours,
    which the -inf padding of the pool leaves out anyway. Maxima are exact, so the values are the pool's
    (NaN propagates as in the pool). On CPU in channels-last layout 1.5-3x faster than PyTorch's kernel."""
    out = torch.empty_like(x)
    for dim in (3, 2):
        n = x.shape[dim]
        m = torch.maximum(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1))  # max of neighbours i, i+1
        y = out if dim == 2 else torch.empty_like(x)
        if n > 2:
            torch.maximum(m.narrow(dim, 0, n - 2), m.narrow(dim, 1, n - 2), out=y.narrow(dim, 1, n - 2))
        y.narrow(dim, 0, 1).copy_(m.narrow(dim, 0, 1))
        y.narrow(dim, n - 1, 1).copy_(m.narrow(dim, n - 2, 1))
        x = y
    return out


def _max_pool_cl(x: Tensor, stride: int) -> Tensor:
    """Max pooling (3x3, padding 1) in channels-last layout, returned in ``x``'s layout (default or
    channels-last); stride 1 on CPU through :func:`_max3x3_s1` (same values)."""
    xc = _to_cl(x)
    if stride == 1 and xc.device.type == "cpu" and xc.dim() == 4 and min(xc.shape[-2:]) >= 2:
        y = _max3x3_s1(xc)
    else:
        y = F.max_pool2d(xc, 3, stride, 1)
    return y.contiguous(memory_format=_layout(x))


def max_pool3x3(x: Tensor, stride: int) -> Tensor:
    """``F.max_pool2d(x, 3, stride, 1)`` (same values and gradients) keeping only ``x`` for backward."""
    if torch.is_grad_enabled() and x.requires_grad:
        return MaxPool3x3Fn.apply(x, stride)
    return _max_pool_cl(x, stride)


class Recompute:
    """A value recomputed in backward, shared by the autograd functions that need it (computed at most
    once: the first ``get`` computes it, ``clear`` drops it)."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self._value: Any = None

    def get(self) -> Any:
        if self._value is None:
            self._value = self._fn()
        return self._value

    def clear(self) -> None:
        self._value = None


def pool_bn_parts(chain: list[nn.Module] | None) -> tuple[str, int, nn.Module, nn.BatchNorm2d] | None:
    """``(mode, stride, pool, bn)`` when ``chain`` is a hook-free 3x3 pool without channel change followed
    by a non-affine training-mode BatchNorm (DARTS' search-supernet pooling ops), else ``None``."""
    from datanas_core.ops import AvgPool3x3, MaxPool3x3, Pool

    if chain is None or len(chain) != 2:
        return None
    p, bn = chain
    if not (isinstance(p, Pool) and p.preprocess is None and _no_hooks(p) and bn_trick_ok(bn)):
        return None
    inner = p.pool
    if type(inner) is MaxPool3x3 and _no_hooks(inner):
        return "max", inner.stride, inner, bn  # type: ignore[return-value]
    if type(inner) is AvgPool3x3 and _no_hooks(inner):
        return "avg", inner.stride, inner, bn  # type: ignore[return-value]
    return None


def _box_kernel(x: Tensor) -> Tensor | None:
    """The ones kernel of a depthwise 3x3 box sum over ``x``'s channels when ``x`` is a channels-last 4-d CPU
    tensor (the layout the depthwise convolutions run fast in), else ``None``. Built per call: C x 9 ones cost
    microseconds against the convolution's milliseconds, and no module-level cache is kept."""
    if not (x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return None
    return torch.ones(x.shape[1], 1, 3, 3, dtype=x.dtype).contiguous(memory_format=torch.channels_last)


def avg_pool_values(x: Tensor, stride: int, pool: nn.Module) -> Tensor:
    """``pool(x)`` (an :class:`~datanas_core.ops.AvgPool3x3`) without autograd: for a channels-last CPU input
    the window sums of the strided outputs only, as one depthwise convolution with a ones kernel (the
    shifted adds of ``_box3`` are several times slower on channels-last tensors), times the reciprocal-count
    map; same values up to rounding. Used by the DARTS pool+BatchNorm ops only."""
    k = _box_kernel(x)
    with torch.no_grad():
        if k is None:
            return pool(x)
        return F.conv2d(x, k, None, stride, 1, 1, x.shape[1]) * pool.reciprocal_counts(x)


def avg_pool_adjoint(g: Tensor, x: Tensor, stride: int, pool: nn.Module, rc: Tensor | None = None) -> Tensor:
    """The input gradient of :func:`avg_pool_values` (the pool's adjoint) for output gradient ``g``: the
    transposed ones-kernel convolution of ``g`` times the reciprocal counts ``rc`` (default: the pool's map for
    ``x``; ``_box3`` path when ``x`` is not a channels-last CPU tensor)."""
    from datanas_core.ops import avg_pool3x3_adjoint

    k = _box_kernel(x)
    if rc is None:
        rc = pool.reciprocal_counts(x)
    if k is None:
        return avg_pool3x3_adjoint(g, rc, stride, tuple(x.shape[-2:]))
    gs = (g * rc).contiguous(memory_format=torch.channels_last)
    C = x.shape[1]
    if stride == 1:
        return F.conv2d(gs, k, None, 1, 1, 1, C)  # the ones kernel is symmetric: its own adjoint
    return torch.ops.aten.convolution_backward(
        gs, x, k, None, [stride, stride], [1, 1], [1, 1], False, [0, 0], C, [True, False, False]
    )[0]


def pool_recompute(x: Tensor, mode: str, stride: int, pool: nn.Module) -> Recompute:
    """A :class:`Recompute` of the pool's output for ``x`` (max: ``(output, argmax indices)``)."""

    def fn() -> tuple[Tensor, Tensor | None]:
        with torch.no_grad():
            if mode == "max":
                c, idx = torch.ops.aten.max_pool2d_with_indices(
                    _to_cl(x), [3, 3], [stride, stride], [1, 1], [1, 1], False
                )
                return c, idx
            return avg_pool_values(x, stride, pool), None

    return Recompute(fn)


class PoolBnFn(torch.autograd.Function):
    """``bn(pool(x))`` (3x3 max or average pool, non-affine BatchNorm with batch statistics) keeping only
    ``x`` for backward: the pool output is recomputed through ``holder`` (a :class:`Recompute` that the
    lean weighted sum shares for its inner product). Returns ``(y, batch mean, batch invstd)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, mode: str, stride: int, pool: nn.Module, bn: nn.BatchNorm2d, holder: Recompute
    ) -> tuple[Tensor, Tensor, Tensor]:
        c = _max_pool_cl(x, stride) if mode == "max" else avg_pool_values(x, stride, pool)
        y, mean, invstd = batch_norm_with_stats(bn, c)
        ctx.mode, ctx.stride, ctx.pool, ctx.holder = mode, stride, pool, holder
        ctx.save_for_backward(x, mean, invstd)
        ctx.mark_non_differentiable(mean, invstd)
        return y, mean, invstd

    @staticmethod
    def backward(ctx: Any, gy: Tensor, _gm: Any, _gi: Any) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        holder = ctx.holder
        if not ctx.needs_input_grad[0]:
            holder.clear()
            return (None,) * 6
        x, mean, invstd = ctx.saved_tensors
        c, idx = holder.get()
        holder.clear()
        gc = torch.ops.aten.native_batch_norm_backward(
            _dense_like(gy, c), c, None, None, None, mean, invstd, True, 0.0, [True, False, False]
        )[0]
        s = ctx.stride
        if ctx.mode == "max":
            xc = _to_cl(x)
            gx = torch.ops.aten.max_pool2d_with_indices_backward(
                _dense_like(gc, xc), xc, [3, 3], [s, s], [1, 1], [1, 1], False, idx
            ).contiguous(memory_format=_layout(x))
        else:
            gx = avg_pool_adjoint(gc, x, s, ctx.pool)
        return gx, None, None, None, None, None


def pool_bn_stats(
    bn: nn.BatchNorm2d, c: Tensor, shared: dict[Any, Any] | None = None
) -> tuple[Tensor, Tensor]:
    """Batch mean and inverse standard deviation with which ``bn`` (training mode) would normalise ``c``,
    updating its running statistics exactly as its forward would, without computing the normalised output.

    ``shared``: the per-cell dict in which the BatchNorms of one tensor (the pool output of a node, shared by
    the edges that leave it) share its batch mean and variance: computed once, each further BatchNorm's
    running statistics updated from them with the same formula as PyTorch's kernel (``(1 - m) running + m
    stat``, the variance unbiased), equal up to rounding."""
    key = ("bnstats", id(c))
    hit = None if shared is None else shared.get(key)
    n = c.numel() // max(c.shape[1], 1) if c.dim() > 1 else 0
    if hit is not None and hit[0] is c and n > 1:
        mean, var = hit[1], hit[2]
        track, momentum = _bn_step(bn)
        if track:
            with torch.no_grad():
                rm, rv = bn.running_mean, bn.running_var
                rm.mul_(1.0 - momentum).add_(mean.to(rm.dtype), alpha=momentum)
                rv.mul_(1.0 - momentum).add_(var.to(rv.dtype), alpha=momentum * n / (n - 1))
        return mean, torch.rsqrt(var + bn.eps)
    track, momentum = _bn_step(bn)
    mean, var = torch.batch_norm_update_stats(
        c, bn.running_mean if track else None, bn.running_var if track else None, momentum
    )
    if shared is not None:
        shared[key] = (c, mean, var)
    return mean, torch.rsqrt(var + bn.eps)


# ----------------------------------------------------------------------------------------------------------
# The dense NB201-style edge: skip, ReLU-Conv-BN and average-pool columns in one autograd function
# ----------------------------------------------------------------------------------------------------------

#: column kinds of :class:`DenseEdgeFn`
SKIP, RCB, AVG = 0, 1, 2


def rcb_parts(op: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """``(conv, bn)`` when ``op`` is a hook-free ``Sequential(ReLU, Conv2d, BatchNorm2d)`` (NB201's
    ``nor_conv_kxk``, :class:`~datanas_core.ops.ReLUConvBN`) with an out-of-place ReLU, a bias-free conv with
    zero padding and a non-affine training-mode BatchNorm, else ``None``."""
    if not isinstance(op, nn.Sequential) or len(op) != 3 or not _no_hooks(op):
        return None
    relu, conv, bn = op[0], op[1], op[2]
    if not (type(relu) is nn.ReLU and not relu.inplace and _no_hooks(relu)):
        return None
    if not (
        type(conv) is nn.Conv2d
        and conv.bias is None
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and _no_hooks(conv)
    ):
        return None
    if not bn_trick_ok(bn) or bn.num_features != conv.out_channels:
        return None
    return conv, bn  # type: ignore[return-value]


def _tensor_positions(args: tuple[Any, ...]) -> list[int]:
    """Per argument of a custom function, its index among the tensor arguments (``ctx.next_functions``)."""
    out, j = [], 0
    for a in args:
        out.append(j)
        j += isinstance(a, Tensor)
    return out


def _will_run(ctx: Any, i: int) -> bool:
    """Whether the current backward pass needs the gradient of input ``i`` of a custom function: its
    ``needs_input_grad`` and, where PyTorch can tell, whether the engine will run the node it feeds (false for
    parameters left out of ``autograd.grad(..., inputs)`` / ``backward(inputs=...)``). Leaves cannot be asked
    under ``autograd.grad``: then ``True``."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[ctx.tensor_pos[i]][0]  # next_functions lists the tensor inputs only
    if node is None:
        return False
    will = getattr(torch._C, "_will_engine_execute_node", None)
    if will is None:
        return True
    try:
        return bool(will(node))
    except RuntimeError:
        return True


class DenseEdgeFn(torch.autograd.Function):
    """``sum_k w_k * op_k(x)`` for an edge whose columns are all skip (identity), ReLU-Conv-BN (non-affine
    BatchNorm with batch statistics) or 3x3 average pools (padding excluded), as one autograd function.

    Inputs: ``meta`` (per column ``(SKIP,)``, ``(RCB, conv, bn)`` or ``(AVG, pool)``), ``x``, ``r`` =
    ``relu(x)`` computed without autograd (shared by the edges that leave one node), the column weights, then
    the weights of the ReLU-Conv-BN convolutions (pass views, ``W.view_as(W)``, so that backward can tell
    whether their gradient is wanted in this pass). Forward: each convolution output ``c_j``, its batch
    statistics (running statistics updated as ``nn.BatchNorm2d`` does), and ``w_j * bn(c_j)`` folded into
    one per-channel scale and one bias (``c_j * (w_j invstd_j) - w_j invstd_j mean_j``), pools as a box sum
    times ``w_k`` times the reciprocal-count map. Kept for backward: ``x``, ``r``, the ``c_j`` and their
    statistics, nothing else. Backward: the BatchNorm input gradients with ``w_j`` as BatchNorm weight (PyTorch's
    kernel) and ``dL/dw_j = sum_ch <g, bn(c_j)>_ch`` from the same call, one convolution backward per column
    (weight gradient only when the engine will use it: none in an architecture step), one ReLU mask for the
    summed gradient, the pool adjoint computed once for both ``dL/dx`` and ``dL/dw_k = <pool^T(g), x>``.
    Same values and gradients as the module chains and the weighted sum, up to rounding.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, meta: tuple[Any, ...], x: Tensor, r: Tensor | None, boxed: Tensor | None, *rest: Tensor
    ) -> Tensor:
        n = len(meta)
        ws, Ws = rest[:n], rest[n:]
        cs: list[Tensor] = []
        stats: list[Tensor] = []
        scales: list[Tensor] = []
        bias: Tensor | None = None
        j = 0
        for i, m in enumerate(meta):
            if m[0] != RCB:
                continue
            conv, bn = m[1], m[2]
            c = F.conv2d(r, Ws[j], None, conv.stride, conv.padding, conv.dilation, conv.groups)
            j += 1
            mean, invstd = pool_bn_stats(bn, c)
            a = ws[i].to(invstd.dtype) * invstd
            b = a * mean
            bias = b if bias is None else bias + b
            cs.append(c)
            stats += [mean, invstd]
            scales.append(a)
        out: Tensor | None = None
        for c, a in zip(cs, scales, strict=True):
            view = a.to(c.dtype).view(1, -1, 1, 1)
            if out is None:
                out = torch.addcmul((-bias).to(c.dtype).view(1, -1, 1, 1), c, view)  # type: ignore[union-attr]
            else:
                out.addcmul_(c, view)
        rc: Tensor | None = None
        for i, m in enumerate(meta):
            if m[0] == SKIP:
                out = x * ws[i] if out is None else out.addcmul_(x, ws[i])
            elif m[0] == AVG:
                pool = m[1]
                rc = pool.reciprocal_counts(x)
                s = box_sum(x) if boxed is None else boxed
                if pool.stride > 1:
                    s = s[..., :: pool.stride, :: pool.stride]
                scale = rc * ws[i]
                if out is None:
                    out = s * scale
                else:
                    out.addcmul_(s, scale)
        ctx.meta = meta
        ctx.n = n
        ctx.tensor_pos = _tensor_positions((meta, x, r, boxed, *rest))
        ctx.has_rc = rc is not None
        ctx.save_for_backward(x, r, *ws, *Ws, *cs, *stats, *([rc] if rc is not None else []))
        return out  # type: ignore[return-value]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        meta, n = ctx.meta, ctx.n
        saved = ctx.saved_tensors
        x, r = saved[0], saved[1]
        ws = saved[2 : 2 + n]
        nW = sum(1 for m in meta if m[0] == RCB)
        Ws = saved[2 + n : 2 + n + nW]
        cs = saved[2 + n + nW : 2 + n + 2 * nW]
        stats = saved[2 + n + 2 * nW : 2 + n + 4 * nW]
        rc = saved[-1] if ctx.has_rc else None
        need_x = _will_run(ctx, 1)
        need_w = [_will_run(ctx, 4 + i) for i in range(n)]
        need_W = [_will_run(ctx, 4 + n + j) for j in range(nW)]
        gws: list[Tensor | None] = [None] * n
        gWs: list[Tensor | None] = [None] * nW
        gr: Tensor | None = None
        j = 0
        for i, m in enumerate(meta):
            if m[0] != RCB:
                continue
            conv = m[1]
            c, W = cs[j], Ws[j]
            mean, invstd = stats[2 * j], stats[2 * j + 1]
            nWj = need_W[j]
            j += 1
            if not (need_x or need_w[i] or nWj):
                continue
            scale = ws[i].to(c.dtype).reshape(1).expand(c.shape[1]).contiguous()
            gc, gbn, _ = torch.ops.aten.native_batch_norm_backward(
                _dense_like(g, c),
                c,
                scale,
                None,
                None,
                mean,
                invstd,
                True,
                0.0,
                [need_x or nWj, need_w[i], False],
            )
            if need_w[i]:
                gws[i] = gbn.sum().to(ws[i].dtype).reshape(ws[i].shape)
            if need_x or nWj:
                grj, gWj, _ = torch.ops.aten.convolution_backward(
                    gc,
                    r,
                    W,
                    None,
                    list(conv.stride),
                    list(conv.padding),
                    list(conv.dilation),
                    False,
                    [0, 0],
                    conv.groups,
                    [need_x, nWj, False],
                )
                gWs[j - 1] = gWj
                if need_x:
                    gr = grj if gr is None else gr.add_(grj)
        gx: Tensor | None = None
        if need_x and gr is not None:
            gx = torch.ops.aten.threshold_backward(gr, r, 0)
        for i, m in enumerate(meta):
            if m[0] == SKIP:
                if need_w[i]:
                    gws[i] = _inner_same(x, g).reshape(ws[i].shape)
                if need_x:
                    gx = g * ws[i] if gx is None else gx.addcmul_(g, ws[i])
            elif m[0] == AVG and (need_x or need_w[i]):
                adj = avg_pool_adjoint(g, x, m[1].stride, m[1], rc)
                if need_w[i]:
                    gws[i] = _inner_same(x, adj).reshape(ws[i].shape)
                if need_x:
                    gx = adj.mul_(ws[i]) if gx is None else gx.addcmul_(adj, ws[i])
        return (None, gx, None, None, *gws, *gWs)


def _inner_same(a: Tensor, b: Tensor) -> Tensor:
    """``<a, b>`` (same shape) in ``b``'s dtype, over memory order when both share one dense layout."""
    if a.stride() == b.stride():
        if a.is_contiguous():
            return torch.dot(a.reshape(-1).to(b.dtype), b.reshape(-1))
        if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last):
            return torch.dot(a.permute(0, 2, 3, 1).reshape(-1).to(b.dtype), b.permute(0, 2, 3, 1).reshape(-1))
    return torch.dot(a.reshape(-1).to(b.dtype), b.reshape(-1))


def box_sum(x: Tensor) -> Tensor:
    """Sum over every 3x3 window of ``x`` (zero padding 1, stride 1), without autograd. A channels-last
    4-d CPU tensor goes through a depthwise convolution with a ones kernel (on CPU about 2.5x faster than the
    shifted adds of :func:`~datanas_core.ops._box3`, same sums in another order), anything else through
    ``_box3``."""
    from datanas_core.ops import _box3

    with torch.no_grad():
        k = _box_kernel(x)
        if k is not None:
            return F.conv2d(x, k, None, 1, 1, 1, x.shape[1])
        return _box3(x)


def dense_edge(
    x: Tensor,
    r: Tensor | None,
    meta: tuple[Any, ...],
    ws: list[Tensor],
    shared: dict[Any, Any] | None = None,
) -> Tensor:
    """``sum_k ws[k] * op_k(x)`` through :class:`DenseEdgeFn` (``r``: ``relu(x)`` without autograd, or ``None``
    to compute it here); ``meta`` as :class:`DenseEdgeFn` takes it. ``shared``: the per-cell dict in which the
    edges leaving one node share the 3x3 window sums of their average pools (computed once per node)."""
    Ws = [m[1].weight for m in meta if m[0] == RCB]
    if r is None and Ws:
        with torch.no_grad():
            r = torch.relu(x)
    boxed = None
    if shared is not None and any(m[0] == AVG for m in meta):
        hit = shared.get(("box", id(x)))
        if hit is not None and hit[0] is x:
            boxed = hit[1]
        else:
            boxed = box_sum(x)
            shared[("box", id(x))] = (x, boxed)
    if torch.is_grad_enabled():
        Ws = [W.view_as(W) if W.requires_grad else W for W in Ws]
    return DenseEdgeFn.apply(meta, x, r, boxed, *ws, *Ws)
