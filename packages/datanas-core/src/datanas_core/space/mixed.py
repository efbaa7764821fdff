"""The mixed edge of a supernet: candidate ops combined with externally supplied weights.

:class:`MixedOp` owns the candidate op modules of one edge and no architecture parameters. Its forward sums
``w_k * op_k(x)`` over the *active* columns it is given (the estimator decides which: every column for
DARTS, SNAS and exact EGS, the sampled ones for GDAS or a sparse executor). Two rules make that sum exact:

* ``none`` is never instantiated. Its output is identically zero, so its contribution and its weight's
  gradient ``<dL/dy, 0>`` are exactly zero whether or not it is active; skipping it changes nothing.
* Active columns whose weight is exactly zero (exact executor, straight-through samples such as EGS) add
  nothing to the output and nothing to the gradient of the input or of their own parameters; their weight
  still receives ``<dL/dy, op_k(x)>``, the straight-through gradient that EGS relies on. So they run
  *forward only* (under ``torch.no_grad()``, no autograd graph, nothing of their internals kept) and one
  custom autograd function per edge keeps their outputs and computes the inner products in backward. When
  the weights need no gradient (e.g. a weight step on a detached sample) they do not run at all. Their
  parameters still receive exact-zero gradients (as they do when the product ``0 * op_k(x)`` is
  back-propagated), so optimisers with momentum or weight decay step exactly as before. Gradients equal
  the plain path's (:attr:`~datanas_core.sample.CellSample.plain_exact` selects it, for reference).
  Side effect: in a step without architecture gradient, a skipped op's BatchNorm running statistics are
  not updated.

With ``grad_proxy`` the weights of the non-active columns are added to the output as a zero-valued scalar
(GDAS): the forward value is unchanged and each such weight receives ``sum(dL/dy)``.

The supernets call the *lean* edge (``MixedOp.forward(..., fused=True)``): the weighted sum is one custom
autograd function (:class:`_MixedSum`) that computes ``dL/dw_k = <g, o_k>`` as inner products and keeps only
what those need: nothing for outputs whose weight needs no gradient; for ops ending in a non-affine
BatchNorm, the BatchNorm input (kept by BatchNorm's own backward anyway) and its batch statistics instead of
its output; for average pools, their input (the inner product goes through the pool's adjoint). The ops of
an edge that start with a ReLU share one ``relu(x)``. DARTS' separable and dilated convolutions run as fused
blocks and its pooling ops with their BatchNorm as one function each (:mod:`datanas_core.space.fused`:
depthwise convolutions in channels-last layout, only block inputs and outputs kept, the pool output
recomputed in backward and shared with the weight's inner product); with a per-cell ``shared`` dict the
edges that leave one node share ``relu(x)``. Edges whose graph columns are all skips, ReLU-Conv-BN blocks
and plain 3x3 average pools (NB201's), with at least one ReLU-Conv-BN, run as one
:class:`~datanas_core.space.fused.DenseEdgeFn` (zero-weight columns beside it as above). Same values and gradients as the plain products and sums (up to
rounding), which ``CellSample.plain_exact`` keeps reachable for reference.

:class:`PreparedCellSample` is the per-forward view of a :class:`~datanas_core.sample.CellSample` that the
cells of one type share: weights split into scalars once, the columns to run per edge and the gradient
carriers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.ops import OPS, AvgPool3x3, MaxPool3x3, Pool, avg_pool3x3_adjoint, out_size, with_pool_bn
from datanas_core.sample import CellSample
from datanas_core.space.fused import (
    AVG,
    RCB,
    SKIP,
    PoolBnFn,
    _dense_like,
    _will_run,
    avg_pool_values,
    batch_norm_with_stats,
    bn_trick_ok,
    dense_edge,
    dw_blocks,
    dw_chain,
    max_pool3x3,
    pool_bn_parts,
    pool_bn_stats,
    pool_recompute,
    rcb_parts,
    relu_layout,
)

__all__ = ["MixedOp", "PreparedCellSample", "forward_only_blocker", "zero_weight_terms"]

logger = logging.getLogger(__name__)


def forward_only_blocker(module: nn.Module) -> str | None:
    """Why ``module`` cannot run forward-only when its weight is 0, or ``None`` if it can.

    A module (or one of its submodules) opts out with ``supports_forward_only = False``; modules with
    dropout are excluded too (skipping them when no gradient is needed would change the random stream).
    """
    for name, m in module.named_modules():
        if getattr(m, "supports_forward_only", True) is False:
            return f"{type(m).__name__} {name or '(the op)'} sets supports_forward_only=False"
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return f"{type(m).__name__} {name or '(the op)'} draws random numbers (dropout)"
    return None


def _dense(t: Tensor) -> Tensor:
    """``t`` if it is dense in the default or the channels-last layout, else a dense copy (channels-last
    when ``t`` is a channels-last view, e.g. a channel slice of a channels-last tensor)."""
    if t.is_contiguous():
        return t
    if t.dim() == 4:
        if t.is_contiguous(memory_format=torch.channels_last):
            return t
        if t.stride(1) == 1:
            return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def _memory_flat(t: Tensor) -> Tensor | None:
    """The elements of ``t`` in memory order as a 1-d view (default or channels-last layout), else ``None``."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)
    return None


def _inner(a: Tensor, b: Tensor) -> Tensor:
    """``<a, b>`` (same shape) in ``b``'s dtype: a dot product over memory order when both have the same
    dense layout (no copies), else over the logical order."""
    if a.stride() == b.stride():
        fa, fb = _memory_flat(a), _memory_flat(b)
        if fa is not None and fb is not None:
            return torch.dot(fa.to(fb.dtype), fb)
    return torch.dot(a.reshape(-1).to(b.dtype), b.reshape(-1))


def _bn_inner(g: Tensor, c: Tensor, mean: Tensor, invstd: Tensor) -> Tensor:
    """``<g, (c - mean) * invstd>`` (per-channel statistics, channel dim 1) in ``g``'s dtype. 4-d tensors of
    one dtype go through PyTorch's BatchNorm backward kernel (the gradient of a unit BatchNorm weight: one
    fused pass over ``g`` and ``c``, nothing allocated at their size), anything else through
    ``sum_ch invstd (<g, c>_ch - mean sum(g)_ch)``."""
    if g.dim() == 4 and c.dim() == 4 and g.dtype == c.dtype == mean.dtype == invstd.dtype:
        ones = invstd.new_ones(c.shape[1])
        gw = torch.ops.aten.native_batch_norm_backward(
            _dense_like(g, c), c, ones, None, None, mean, invstd, True, 0.0, [False, True, False]
        )[1]
        return gw.sum()
    dims = [d for d in range(g.dim()) if d != 1]
    gc = (g * c).sum(dims)
    return (invstd.to(g.dtype) * (gc - mean.to(g.dtype) * g.sum(dims))).sum()


def _carried_zeros(ctx: Any, first: int) -> list[Tensor | None]:
    """Exact-zero gradients (stride-0 expanded scalars, no memory) for the carried tensors, inputs ``first``,
    ``first + 1``, ... of a custom function whose ``ctx.carried`` holds their ``(shape, dtype, device)``;
    ``None`` (nothing to add) for those this backward pass does not reach (e.g. the op parameters in an
    ``autograd.grad`` w.r.t. the architecture parameters), see :func:`~datanas_core.space.fused._will_run`."""
    return [
        torch.zeros((), dtype=dt, device=dev).expand(shape) if _will_run(ctx, first + i) else None
        for i, (shape, dt, dev) in enumerate(ctx.carried)
    ]


class _ZeroWeightTerms(torch.autograd.Function):
    """``base + sum_k w_k * o_k`` for weights ``w_k`` that are exactly 0: the value is ``base``.

    Inputs: ``base``, the count ``n``, ``n`` weights, ``n`` op outputs computed without autograd and the
    tensors that must receive exact-zero gradients (the ops' inputs and parameters: the plain product
    ``0 * op(x)`` gives them zero gradients, so they stay reachable and optimisers step them alike).
    Backward: ``dL/dbase = g``, ``dL/dw_k = <g, o_k>``, zeros (stride-0, no memory) for the carried tensors;
    the outputs ``o_k`` are all that is kept.
    """

    @staticmethod
    def forward(ctx: Any, base: Tensor, n: int, *rest: Tensor) -> Tensor:  # type: ignore[override]
        ctx.n = n
        ctx.wshapes = [w.shape for w in rest[:n]]
        ctx.carried = [(t.shape, t.dtype, t.device) for t in rest[2 * n :]]
        ctx.tensor_pos = [0, 0, *range(1, 1 + len(rest))]
        ctx.save_for_backward(*rest[n : 2 * n])
        return base.view_as(base)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        n = ctx.n
        outs = ctx.saved_tensors
        need = ctx.needs_input_grad
        gw: list[Tensor | None] = [None] * n
        if any(need[2 : 2 + n]):
            for i, o in enumerate(outs):
                if need[2 + i]:
                    shape = ctx.wshapes[i]
                    if o.shape == g.shape and not (o.is_contiguous() and g.is_contiguous()):
                        gw[i] = _inner(o, g).reshape(shape)
                    else:
                        flat = g.reshape(-1)
                        gw[i] = torch.mv(o.reshape(-1, flat.numel()).to(flat.dtype), flat).reshape(shape)
        gc = _carried_zeros(ctx, 2 + 2 * n)
        return (g, None, *gw, *([None] * n), *gc)


class _MixedSum(torch.autograd.Function):
    """``sum_k w_k * o_k`` over the graph columns, plus zero-weight columns (value 0) for their gradients.

    Inputs: counts ``ng`` and ``nz``, ``kinds`` (per graph column: 0 plain output; 1 a non-affine BatchNorm
    of a kept tensor ``c``; 2 the same with ``c`` recomputed by ``holders[k]``, a
    :class:`~datanas_core.space.fused.Recompute`; ``-s`` an average pool of stride ``s`` of a kept input),
    ``holders``, the ``ng`` weights and outputs of the graph columns, ``(c, mean, invstd)`` for each kind-1
    column, ``(mean, invstd)`` for each kind-2 column, ``(x, reciprocal counts)`` for each pool column, the ``nz`` weights (exactly 0) and outputs (computed without autograd)
    of the zero-weight columns, then the carried tensors (exact-zero gradients). Backward:
    ``dL/do_k = w_k g`` for graph outputs, ``dL/dw_k = <g, o_k>`` for every weight, zeros for the carried
    tensors. What is kept: the outputs whose weight needs a gradient, except BatchNorm outputs, whose inner
    product is computed per channel from the BatchNorm input (which BatchNorm's own backward keeps anyway)
    and its statistics: ``<g, (c - mean) * invstd> = sum_ch invstd (<g, c>_ch - mean sum(g)_ch)``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        ng: int,
        nz: int,
        kinds: tuple[int, ...],
        holders: tuple[Any, ...],
        zstats: tuple[Any, ...],
        *rest: Tensor,
    ) -> Tensor:
        ws, outs = rest[:ng], rest[ng : 2 * ng]
        nb = sum(3 if kd == 1 else (2 if (kd < 0 or kd == 2) else 0) for kd in kinds)
        bnsrc = rest[2 * ng : 2 * ng + nb]
        off = 2 * ng + nb
        zshapes = [t.shape for t in rest[off : off + nz]]
        zouts = rest[off + nz : off + 2 * nz]
        carried = rest[off + 2 * nz :]
        out = outs[0] * ws[0]
        for o, wk in zip(outs[1:], ws[1:], strict=True):
            out.addcmul_(o, wk)
        ctx.ng, ctx.nz, ctx.nb, ctx.zshapes, ctx.kinds, ctx.holders = ng, nz, nb, zshapes, kinds, holders
        ctx.zstats = zstats
        ctx.carried = [(t.shape, t.dtype, t.device) for t in carried]
        ctx.tensor_pos = [0] * 5 + list(range(len(rest)))
        keep = [
            o if (wk.requires_grad and kd == 0) else None for o, wk, kd in zip(outs, ws, kinds, strict=True)
        ]
        ctx.keep_idx = [i for i, o in enumerate(keep) if o is not None]
        ctx.save_for_backward(*ws, *[keep[i] for i in ctx.keep_idx], *bnsrc, *zouts)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        ng, nz, nb = ctx.ng, ctx.nz, ctx.nb
        saved = ctx.saved_tensors
        ws = saved[:ng]
        nk = len(ctx.keep_idx)
        kept = dict(zip(ctx.keep_idx, saved[ng : ng + nk], strict=True))
        bnsrc = saved[ng + nk : ng + nk + nb]
        zouts = saved[ng + nk + nb :]
        need = ctx.needs_input_grad
        g = _dense(g)
        gws: list[Tensor | None] = [None] * ng
        gos: list[Tensor | None] = [None] * ng
        j = 0
        for i in range(ng):
            kd = ctx.kinds[i]
            if kd < 0:  # average pool (stride -kd) of a kept input: <g, pool(x)> = <pool^T(g), x>
                x, rc = bnsrc[j : j + 2]
                j += 2
                if need[5 + i]:
                    gx = avg_pool3x3_adjoint(g, rc, -kd, tuple(x.shape[-2:]))
                    gws[i] = _inner(x, gx).reshape(ws[i].shape)
            elif kd in (1, 2):
                if kd == 1:
                    c, mean, invstd = bnsrc[j : j + 3]
                    j += 3
                else:  # the BatchNorm input is recomputed (shared with the op's own backward)
                    mean, invstd = bnsrc[j : j + 2]
                    j += 2
                    c = ctx.holders[i].get()[0] if need[5 + i] else None
                if need[5 + i]:
                    gws[i] = _bn_inner(g, c, mean, invstd).reshape(ws[i].shape)
            elif need[5 + i] and i in kept:
                gws[i] = _inner(kept[i], g).reshape(ws[i].shape)
            if need[5 + ng + i]:
                gos[i] = g * ws[i]
        base = 5 + 2 * ng + nb
        gzw: list[Tensor | None] = [None] * nz
        for i in range(nz):
            if need[base + i]:
                st = ctx.zstats[i] if ctx.zstats else None
                if st is None:
                    gzw[i] = _inner(zouts[i], g).reshape(ctx.zshapes[i])
                else:  # a BatchNorm output given by its input (zouts[i]) and batch statistics
                    gzw[i] = _bn_inner(g, zouts[i], st[0], st[1]).reshape(ctx.zshapes[i])
        gc_ = _carried_zeros(ctx, base + 2 * nz)
        return (None, None, None, None, None, *gws, *gos, *([None] * nb), *gzw, *([None] * nz), *gc_)


def _plain_avg_pool(op: nn.Module) -> AvgPool3x3 | None:
    """The :class:`AvgPool3x3` that ``op`` is (directly, or as a :class:`Pool` without channel change),
    without hooks; else ``None``."""
    if isinstance(op, Pool) and op.preprocess is None and not (op._forward_hooks or op._forward_pre_hooks):
        op = op.pool
    if isinstance(op, AvgPool3x3) and not (op._forward_hooks or op._forward_pre_hooks):
        return op
    return None


def _chain(op: nn.Module) -> list[nn.Module] | None:
    """The leaf modules of ``op`` when it is a chain of nested ``nn.Sequential`` without hooks, else
    ``None`` (the op is then called as a whole)."""
    if not isinstance(op, nn.Sequential) or op._forward_hooks or op._forward_pre_hooks:
        return None
    out: list[nn.Module] = []
    for m in op:
        if isinstance(m, nn.Sequential):
            inner = _chain(m)
            if inner is None:
                return None
            out.extend(inner)
        else:
            out.append(m)
    return out or None


_bn_trick_ok = bn_trick_ok
_batch_norm_with_stats = batch_norm_with_stats


def _run_leaf(m: nn.Module, z: Tensor) -> Tensor:
    """``m(z)``; a hook-free 3x3 max pool (:class:`MaxPool3x3`, or a :class:`Pool` of it without channel
    change) runs as :func:`~datanas_core.space.fused.max_pool3x3`, which keeps only its input."""
    if isinstance(m, Pool) and m.preprocess is None and not (m._forward_hooks or m._forward_pre_hooks):
        inner = m.pool
        if isinstance(inner, MaxPool3x3) and not (inner._forward_hooks or inner._forward_pre_hooks):
            return max_pool3x3(z, inner.stride)
    elif isinstance(m, MaxPool3x3) and not (m._forward_hooks or m._forward_pre_hooks):
        return max_pool3x3(z, m.stride)
    return m(z)


def _shared_pool(x: Tensor, parts: tuple[Any, ...], shared: dict[Any, Any] | None) -> Tensor:
    """``pool(x)`` without autograd for a :func:`~datanas_core.space.fused.pool_bn_parts` op, computed once per
    node, mode and stride when ``shared`` (the per-cell dict) is given."""
    mode, stride, pool = parts[0], parts[1], parts[2]
    key = (id(x), mode, stride)
    hit = None if shared is None else shared.get(key)
    if hit is not None and hit[0] is x:
        return hit[1]
    c = max_pool3x3(x, stride) if mode == "max" else avg_pool_values(x, stride, pool)
    if shared is not None:
        shared[key] = (x, c)
    return c


def relu_tail(op: nn.Module) -> Any:
    """A function ``tail`` with ``op(x) == tail(relu(x))`` when ``op`` is a Sequential that starts with a
    ReLU (possibly nested: DARTS' SepConv), else ``None``. Lets the ops of one edge share ``relu(x)``."""
    if not isinstance(op, nn.Sequential) or len(op) == 0:
        return None
    first = op[0]
    if isinstance(first, nn.ReLU):
        inner = None
    else:
        inner = relu_tail(first)
        if inner is None:
            return None

    def tail(z: Tensor) -> Tensor:
        if inner is not None:
            z = inner(z)
        for i, m in enumerate(op):
            if i:
                z = m(z)
        return z

    return tail


def zero_weight_terms(
    base: Tensor, weights: Sequence[Tensor], outputs: Sequence[Tensor], carried: Sequence[Tensor] = ()
) -> Tensor:
    """``base`` in value; gradient ``<dL/dy, outputs[i]>`` to ``weights[i]`` (weights that are exactly 0) and
    exact-zero gradients to ``carried`` (the ops' inputs and parameters). ``outputs`` should be computed
    without autograd (``torch.no_grad``).

    A weight may be a tensor of any shape ``P``; its output then has shape ``P + base.shape`` and each entry
    of the weight gets the inner product with its slice (a batch of zero-weight terms in one call).
    """
    if len(weights) != len(outputs):
        raise ConfigError(f"zero_weight_terms: {len(weights)} weights but {len(outputs)} outputs")
    for w, o in zip(weights, outputs, strict=True):
        if tuple(o.shape) != (*w.shape, *base.shape):
            raise ConfigError(
                f"zero_weight_terms: output of shape {tuple(o.shape)} does not match weight "
                f"{tuple(w.shape)} + base {tuple(base.shape)}"
            )
    carried = [t for t in carried if t.requires_grad]
    if not weights and not carried:
        return base
    return _ZeroWeightTerms.apply(base, len(weights), *weights, *outputs, *carried)


class MixedOp(nn.Module):
    """Candidate ops of one edge in column order; ``none`` columns hold no module.

    Args:
        candidates: ``(op_name, module)`` pairs in column order, or a mapping in column order. Use ``None``
            as the module of a ``none`` column (its output is zero and never computed).
        C_out: output channels (for the zero output when nothing runs).
        stride: spatial stride of the edge (same purpose).

    Example:
        >>> import torch
        >>> m = MixedOp.build(["none", "skip_connect"], 4, 4, 1)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> bool(torch.equal(m(x, torch.tensor([0.0, 1.0]), [0, 1]), x))
        True
    """

    def __init__(
        self,
        candidates: Sequence[tuple[str, nn.Module | None]] | Mapping[str, nn.Module | None],
        *,
        C_out: int,
        stride: int = 1,
    ) -> None:
        super().__init__()
        items = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
        if not items:
            raise ConfigError("MixedOp needs at least one candidate op")
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ConfigError(f"MixedOp candidates must have distinct names, got {names}")
        self.op_names: tuple[str, ...] = tuple(names)
        self.C_out = C_out
        self.stride = stride
        self.ops = nn.ModuleList()
        slots: list[int] = []
        for _, mod in items:
            if mod is None:
                slots.append(-1)
            else:
                slots.append(len(self.ops))
                self.ops.append(mod)
        self._slots: tuple[int, ...] = tuple(slots)

    @classmethod
    def build(
        cls,
        op_names: Sequence[str],
        C_in: int,
        C_out: int,
        stride: int = 1,
        *,
        affine: bool = False,
        pool_bn: bool = False,
    ) -> MixedOp:
        """Instantiate the candidates from :data:`~datanas_core.ops.OPS` (``none`` becomes an empty slot).

        Args:
            affine: BatchNorm affine flag of the ops (``False`` in DARTS-style search supernets).
            pool_bn: follow each pooling op with a non-affine BatchNorm (DARTS' search supernet).
        """
        cands: list[tuple[str, nn.Module | None]] = []
        for name in op_names:
            factory = OPS.get(name)
            if name == "none":
                cands.append((name, None))
                continue
            op = factory(C_in, C_out, stride, affine=affine)
            cands.append((name, with_pool_bn(name, op, C_out) if pool_bn else op))
        return cls(cands, C_out=C_out, stride=stride)

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    def op(self, key: int | str) -> nn.Module | None:
        """The module of column ``key`` (index or op name); ``None`` for ``none`` columns."""
        k = self.op_names.index(key) if isinstance(key, str) else int(key)
        slot = self._slots[k]
        return None if slot < 0 else self.ops[slot]

    def runnable(self, k: int) -> bool:
        """Whether column ``k`` has a module (is not ``none``)."""
        return self._slots[k] >= 0

    def zeros(self, x: Tensor) -> Tensor:
        """The zero output for input ``x`` (what the edge returns when nothing runs)."""
        h, w = x.shape[-2:]
        return x.new_zeros(x.shape[0], self.C_out, out_size(h, self.stride), out_size(w, self.stride))

    def forward(
        self,
        x: Tensor,
        weights_row: Tensor | Sequence[Tensor],
        active: Sequence[int],
        grad_proxy: bool = False,
        *,
        proxy: Tensor | None = None,
        zero: Collection[int] = (),
        arch_grad: bool = True,
        fused: bool = False,
        shared: dict[Any, Any] | None = None,
    ) -> Tensor:
        """Sum ``weights_row[k] * op_k(x)`` over the active columns.

        Args:
            x: the edge input.
            weights_row: ``[K]`` weights of this edge, or a sequence of ``K`` 0-dim tensors (supernets split
                each cell type's weight matrix once per forward and pass the pieces).
            active: columns to execute (``none`` columns are skipped).
            grad_proxy: add the non-active weights as a zero-valued gradient carrier.
            proxy: a precomputed zero-valued carrier (used instead of computing one here when given).
            zero: active columns whose weight is exactly 0: run forward-only for their weight's gradient
                (``arch_grad``) or not at all; their gradients equal the plain product's (module docstring).
                Empty: every active column runs with autograd (the plain exact path).
            arch_grad: whether the weights need a gradient in this pass.
            fused: the lean implementation: one custom autograd function for the weighted sum (the weights'
                gradients as inner products, nothing kept but the op outputs those need) and one ReLU of
                ``x`` shared by the ops that start with it. ``False``: plain products and sums (reference).
            shared: with ``fused``, a per-cell-forward dict in which edges that leave the same node share
                ``relu(x)`` (computed once, kept once).

        Returns:
            The edge output; zeros of the right shape when no non-``none`` column is active.
        """
        slots = self._slots
        out: Tensor | None = None
        w = weights_row.unbind(0) if isinstance(weights_row, Tensor) and len(active) > 1 else weights_row
        if fused:
            out = self._fused(x, w, active, zero, arch_grad, shared)
            if grad_proxy:
                if proxy is None:
                    proxy = _zero_carrier(weights_row, active, len(slots))
                if proxy is not None:
                    out = out + proxy
            return out
        graph, lean = self._split_active(active, zero)
        for k, op in graph:
            y = w[k] * op(x)
            out = y if out is None else out + y
        if lean:
            out = self._zero_columns(x, w, lean, out, arch_grad)
        if grad_proxy:
            if proxy is None:
                proxy = _zero_carrier(weights_row, active, len(slots))
            if proxy is not None:
                out = (self.zeros(x) if out is None else out) + proxy
        if out is None:
            out = self.zeros(x)
        return out

    def _relu_tail(self, k: int) -> Any:
        """``tail`` with ``op_k(x) == tail(relu(x))`` (ops that start with a ReLU), else ``None``.

        Built per call (a few ``isinstance`` checks), so ops whose submodules are replaced (widening)
        stay correct."""
        return relu_tail(self.ops[self._slots[k]])

    def _fused(
        self,
        x: Tensor,
        w: Sequence[Tensor],
        active: Sequence[int],
        zero: Collection[int],
        arch_grad: bool,
        shared: dict[Any, Any] | None = None,
    ) -> Tensor:
        """The lean edge: graph columns and zero-weight columns in one :class:`_MixedSum`."""

        def relu_x() -> Tensor:
            # relu(x) in the depthwise layout, without autograd (the fused blocks differentiate through x)
            hit = None if shared is None else shared.get(id(x))
            if hit is not None and hit[0] is x:
                return hit[1]
            with torch.no_grad():
                r = relu_layout(x)
            if shared is not None:
                shared[id(x)] = (x, r)
            return r

        slots = self._slots
        dense = self._dense_columns(x, active, zero)
        if dense is not None:
            cols, meta, zcols_d = dense
            r = relu_x() if any(m[0] == RCB for m in meta) else None
            base = dense_edge(x, r, meta, [w[k] for k in cols], shared)
            if not zcols_d:
                return base
            zw_d, zo_d, carried_d = self._zero_outputs(x, w, zcols_d, arch_grad, r)
            return zero_weight_terms(base, zw_d, zo_d, carried_d) if (zw_d or carried_d) else base
        gw: list[Tensor] = []
        go: list[Tensor] = []
        bnsrc: list[tuple[Any, ...] | None] = []  # (kind, tensors for the weight's inner product)
        rx: Tensor | None = None
        rxl: Tensor | None = None  # relu(x) in the depthwise convolutions' layout, shared
        holders: dict[int, Any] = {}  # graph column -> Recompute of its BatchNorm input
        zstats: dict[int, tuple[Tensor, Tensor]] = {}  # zero column -> BatchNorm statistics of its output
        graph, zcols = self._split_active(active, zero)
        for k, op in graph:
            chain = _chain(op)
            pool = _plain_avg_pool(op)
            if pool is not None and w[k].requires_grad:
                go.append(pool(x))
                bnsrc.append((-pool.stride, x, pool.reciprocal_counts(x)))
            elif chain is None:
                go.append(op(x))
                bnsrc.append(None)
            elif (parts := pool_bn_parts(chain)) is not None:
                mode, stride, pool_mod, bn = parts
                holder = pool_recompute(x, mode, stride, pool_mod)
                y, mean, invstd = PoolBnFn.apply(x, mode, stride, pool_mod, bn, holder)
                go.append(y)
                bnsrc.append((2, mean, invstd) if w[k].requires_grad else None)
                holders[len(go) - 1] = holder
            elif (blocks := dw_blocks(chain)) is not None:
                if rxl is None:
                    rxl = relu_x()
                # a weight step (no architecture gradient) of a sparse sample keeps the blocks' depthwise
                # outputs for the conv weights' gradients instead of recomputing them: its zero-weight
                # columns do not run, so the few kept tensors stay below the peak of the architecture step
                # (whose forward-only outputs dominate it); dense samples (softmax) recompute as before
                go.append(dw_chain(x, rxl, blocks, keep=not arch_grad and bool(zcols)))
                bnsrc.append(None)
            else:
                z = x
                if isinstance(chain[0], nn.ReLU):
                    if rx is None:
                        rx = torch.relu(x)
                    z, chain = rx, chain[1:]
                last = chain[-1] if chain else None
                if isinstance(last, nn.BatchNorm2d) and _bn_trick_ok(last) and w[k].requires_grad:
                    for m in chain[:-1]:
                        z = _run_leaf(m, z)
                    y, mean, invstd = _batch_norm_with_stats(last, z)
                    go.append(y)
                    bnsrc.append((1, z, mean, invstd))
                else:
                    for m in chain:
                        z = _run_leaf(m, z)
                    go.append(z)
                    bnsrc.append(None)
            gw.append(w[k])
        zw: list[Tensor] = []
        zo: list[Tensor] = []
        carried: list[Tensor] = []
        if zcols and torch.is_grad_enabled():
            mods = [self.ops[slots[k]] for k in zcols]
            carried = [x, *(p for m in mods for p in m.parameters())]
            ws = [w[k] for k in zcols]
            if arch_grad and any(t.requires_grad for t in ws):
                with torch.no_grad():
                    for k, m in zip(zcols, mods, strict=True):
                        chain = _chain(m)
                        parts = pool_bn_parts(chain)
                        if parts is not None:
                            # BatchNorm(pool(x)) as the pool output (shared by the edges leaving this node)
                            # and this BatchNorm's batch statistics (running statistics updated alike)
                            c = _shared_pool(x, parts, shared)
                            zstats[len(zo)] = pool_bn_stats(parts[3], c, shared)
                            zo.append(c)
                            continue
                        blocks = None if chain is None else dw_blocks(chain)
                        if blocks is not None:
                            if rxl is None:
                                rxl = relu_x()
                            zo.append(dw_chain(x, rxl, blocks))
                            continue
                        tail = self._relu_tail(k)
                        if chain is not None and not isinstance(chain[0], nn.ReLU):
                            z = x
                            for leaf in chain:
                                z = _run_leaf(leaf, z)
                            zo.append(z)
                        elif tail is not None and not (m._forward_hooks or m._forward_pre_hooks):
                            if rx is None:
                                rx = torch.relu(x)
                            zo.append(tail(rx))
                        else:
                            zo.append(m(x))
                zw = ws
            carried = [t for t in carried if t.requires_grad]
        if not go:
            base = self.zeros(x)
            for i, (mean, invstd) in zstats.items():  # materialise the BatchNorm outputs
                zo[i] = (zo[i] - mean[:, None, None]) * invstd[:, None, None]
            return zero_weight_terms(base, zw, zo, carried) if (zw or carried) else base
        kinds = tuple(0 if b is None else b[0] for b in bnsrc)
        bn_flat = [t for b in bnsrc if b is not None for t in b[1:]]
        hold = tuple(holders.get(i) for i in range(len(go)))
        zst = tuple(zstats.get(i) for i in range(len(zo)))
        return _MixedSum.apply(len(go), len(zw), kinds, hold, zst, *gw, *go, *bn_flat, *zw, *zo, *carried)

    def _dense_columns(
        self, x: Tensor, active: Sequence[int], zero: Collection[int]
    ) -> tuple[list[int], tuple[Any, ...], list[int]] | None:
        """``(graph columns, DenseEdgeFn meta, zero-weight columns)`` when every graph column of this call is
        a skip, a ReLU-Conv-BN or a plain 3x3 average pool and at least one is a ReLU-Conv-BN (NB201's
        edges), else ``None`` (the general lean path runs)."""
        if x.dim() != 4 or torch.is_autocast_enabled(x.device.type):
            return None
        cols: list[int] = []
        meta: list[tuple[Any, ...]] = []
        has_rcb = False
        graph, zcols = self._split_active(active, zero)
        for k, op in graph:
            parts = rcb_parts(op)
            if parts is not None:
                meta.append((RCB, parts[0], parts[1]))
                has_rcb = True
            elif type(op) is nn.Identity and not (op._forward_hooks or op._forward_pre_hooks):
                meta.append((SKIP,))
            elif (pool := _plain_avg_pool(op)) is not None and min(x.shape[-2:]) >= 2:
                meta.append((AVG, pool))
            else:
                return None
            cols.append(k)
        if not has_rcb:
            return None
        return cols, tuple(meta), zcols

    def _zero_outputs(
        self, x: Tensor, w: Sequence[Tensor], zcols: Sequence[int], arch_grad: bool, rx: Tensor | None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Weights, forward-only outputs and carried tensors of the zero-weight columns ``zcols`` for
        :func:`zero_weight_terms` (``rx``: ``relu(x)`` if already computed)."""
        if not torch.is_grad_enabled():
            return [], [], []
        slots = self._slots
        mods = [self.ops[slots[k]] for k in zcols]
        carried = [t for t in [x, *(p for m in mods for p in m.parameters())] if t.requires_grad]
        ws = [w[k] for k in zcols]
        if not (arch_grad and any(t.requires_grad for t in ws)):
            return [], [], carried
        zo: list[Tensor] = []
        with torch.no_grad():
            for k, m in zip(zcols, mods, strict=True):
                tail = self._relu_tail(k)
                if tail is not None and not (m._forward_hooks or m._forward_pre_hooks):
                    if rx is None:
                        rx = torch.relu(x)
                    zo.append(tail(rx))
                else:
                    zo.append(m(x))
        return ws, zo, carried

    def _split_active(
        self, active: Sequence[int], zero: Collection[int]
    ) -> tuple[list[tuple[int, nn.Module]], list[int]]:
        """The active columns that have a module, in order, split into those that run in the autograd graph
        (``(column, op)``) and the zero-weight ones that may run forward-only."""
        graph: list[tuple[int, nn.Module]] = []
        forward_only: list[int] = []
        for k in active:
            slot = self._slots[k]
            if slot < 0:
                continue
            if k in zero and self._forward_only_ok(k):
                forward_only.append(k)
            else:
                graph.append((k, self.ops[slot]))
        return graph, forward_only

    def _forward_only_ok(self, k: int) -> bool:
        """Whether column ``k`` may run forward-only at weight 0 (checked once, a fallback is logged)."""
        cache: dict[int, bool] = self.__dict__.setdefault("_fwd_only", {})
        ok = cache.get(k)
        if ok is None:
            op = self.op(k)
            reason = None if op is None else forward_only_blocker(op)
            if reason is not None:
                logger.warning(
                    "op %r of %s runs with autograd also at weight 0 (plain exact path): %s",
                    self.op_names[k],
                    type(self).__name__,
                    reason,
                )
            ok = cache[k] = reason is None
        return ok

    def _zero_columns(
        self, x: Tensor, w: Sequence[Tensor], cols: Sequence[int], out: Tensor | None, arch_grad: bool
    ) -> Tensor | None:
        """Add the zero-weight columns ``cols``: forward-only for their weights' gradients, else skipped."""
        if not torch.is_grad_enabled():
            return out
        mods = [self.ops[self._slots[k]] for k in cols]
        carried = [x, *(p for m in mods for p in m.parameters())]
        ws = [w[k] for k in cols]
        need_w = arch_grad and any(t.requires_grad for t in ws)
        if not need_w and not any(t.requires_grad for t in carried):
            return out
        base = self.zeros(x) if out is None else out
        if not need_w:
            return zero_weight_terms(base, (), (), carried)
        with torch.no_grad():
            outs = [m(x) for m in mods]
        return zero_weight_terms(base, ws, outs, carried)

    def extra_repr(self) -> str:
        return f"ops={list(self.op_names)}, C_out={self.C_out}, stride={self.stride}"


def _zero_carrier(weights_row: Tensor | Sequence[Tensor], active: Sequence[int], K: int) -> Tensor | None:
    """``t - t.detach()``, ``t`` the sum of the non-active weights: value exactly 0, gradient 1 to each."""
    act = set(active)
    rest = [k for k in range(K) if k not in act]
    if not rest:
        return None
    t = weights_row[rest[0]]
    for k in rest[1:]:
        t = t + weights_row[k]
    return t - t.detach()


@dataclass
class PreparedCellSample:
    """Per-forward view of one cell type's sample, shared by every cell of that type.

    Attributes:
        rows: per edge, the ``K`` weights as 0-dim tensors (one ``unbind`` for the whole matrix).
        run: per edge, the active columns that have a module (``none`` removed).
        proxy: per edge, the zero-valued gradient carrier of the non-active columns, or ``None``.
        zero: per edge, the columns whose weight is exactly 0 (empty sets on the plain exact path, see
            :attr:`~datanas_core.sample.CellSample.plain_exact`); ``None``: no information (all empty).
        arch_grad: whether the weights need a gradient in this forward pass.
        lean: use the lean mixed-edge implementation (``MixedOp.forward(fused=True)``); ``False`` on the
            plain path.
    """

    rows: list[tuple[Tensor, ...]]
    run: list[list[int]]
    proxy: list[Tensor | None]
    zero: list[frozenset[int]] | None = None
    arch_grad: bool = True
    lean: bool = False
    _no_zero: frozenset[int] = field(default=frozenset(), repr=False)

    def zero_of(self, e: int) -> frozenset[int]:
        """The exactly-zero columns of edge ``e``."""
        return self._no_zero if self.zero is None else self.zero[e]

    @classmethod
    def from_sample(
        cls, sample: CellSample, ops: Sequence[str], num_edges: int, *, where: str = ""
    ) -> PreparedCellSample:
        """Check shapes and split ``sample`` for a cell with ``num_edges`` edges and candidate ``ops``.

        Raises:
            SearchSpaceError: the weight matrix is not ``[num_edges, len(ops)]``.
        """
        K = len(ops)
        w = sample.weights
        if w.dim() != 2 or tuple(w.shape) != (num_edges, K):
            raise SearchSpaceError(
                f"{where or 'cell'}: sample weights have shape {tuple(w.shape)}, expected [{num_edges}, {K}] "
                f"(edges x ops {list(ops)})"
            )
        if tuple(sample.mask.shape) != (num_edges, K):
            raise SearchSpaceError(
                f"{where or 'cell'}: sample mask has shape {tuple(sample.mask.shape)}, "
                f"expected [{num_edges}, {K}]"
            )
        flat = w.reshape(-1).unbind(0)
        rows = [flat[e * K : (e + 1) * K] for e in range(num_edges)]
        none_cols = {k for k, name in enumerate(ops) if name == "none"}
        active = sample.active
        run = [[k for k in a if k not in none_cols] for a in active]
        proxy: list[Tensor | None] = [None] * num_edges
        if sample.grad_proxy:
            partial = [len(a) < K for a in active]
            if any(partial):
                t = w.masked_fill(sample.mask.to(device=w.device, dtype=bool), 0.0).sum(-1)
                carriers = (t - t.detach()).unbind(0)
                proxy = [c if p else None for c, p in zip(carriers, partial, strict=True)]
        zero: list[frozenset[int]] | None = None
        if not sample.plain_exact and not sample.grad_proxy:
            nz = (w.detach() == 0).tolist()
            zero = [frozenset(k for k in a if nz[e][k]) for e, a in enumerate(run)]
            if not any(zero):
                zero = None
        arch_grad = bool(w.requires_grad and torch.is_grad_enabled())
        return cls(rows, run, proxy, zero, arch_grad, not sample.plain_exact)

    def skip(self, e: int) -> bool:
        """Edge ``e`` contributes nothing (no module to run and no gradient carrier)."""
        return not self.run[e] and self.proxy[e] is None
