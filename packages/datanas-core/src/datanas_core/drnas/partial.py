"""Partial-channel mixed edges (PC-DARTS style, as DrNAS uses them; methods.md §6b).

A :class:`PartialChannelMixedOp` with ratio ``k`` sends the first ``C / k`` channels of its input through the
candidate ops (built ``C / k`` channels wide) and lets the other ``C - C / k`` channels bypass them (2x2
max-pooled on strided edges). The two parts are concatenated and mixed by a channel shuffle with ``k``
groups, so that the next edge sees a different share of channels. With ``k = 1`` the edge is exactly the
plain :class:`~datanas_core.space.mixed.MixedOp`.

The ops are those of :data:`~datanas_core.ops.OPS` except the strided ``skip_connect``, which is a
:class:`WidenableFactorizedReduce`: a FactorizedReduce whose output channels may be reordered, so that it can
be widened Net2Net-style with an arbitrary channel mapping (see :mod:`datanas_core.drnas.widen`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.errors import CheckpointError, ConfigError
from datanas_core.ops import FactorizedReduce, build_op, with_pool_bn
from datanas_core.space.mixed import MixedOp

if TYPE_CHECKING:
    from datanas_core.drnas.widen import ParamChange

__all__ = [
    "PartialChannelMixedOp",
    "WidenableFactorizedReduce",
    "build_drnas_op",
    "channel_shuffle",
    "check_partial_channels",
]


def check_partial_channels(C: int, k: int, *, where: str = "") -> int:
    """The op width ``C // k`` of a partial-channel edge of width ``C``.

    Raises:
        ConfigError: ``k`` is not a positive integer or does not divide ``C`` (the channel shuffle needs
            ``k`` equal groups); the message lists the ratios that divide ``C``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"partial-channel ratio K must be a positive integer, got {k!r}")
    if C % k:
        valid = [d for d in range(1, C + 1) if C % d == 0]
        raise ConfigError(
            f"{where + ': ' if where else ''}partial-channel ratio K={k} does not divide the edge width "
            f"{C} (the channel shuffle needs K equal groups); valid K for width {C}: {valid}"
        )
    return C // k


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` equal channel groups: ``[B, g*c, H, W] -> view [B, g, c] -> transpose -> flat``.

    Output channel ``i * groups + j`` is input channel ``j * c + i``; a permutation of the channels.

    Raises:
        ConfigError: the channel count is not divisible by ``groups``.
    """
    b, ch, h, w = x.shape
    if groups == 1:
        return x
    if ch % groups:
        raise ConfigError(f"channel_shuffle: {ch} channels cannot form {groups} equal groups")
    return x.view(b, groups, ch // groups, h, w).transpose(1, 2).reshape(b, ch, h, w)


class WidenableFactorizedReduce(FactorizedReduce):
    """FactorizedReduce (stride 2) whose output channels are ``cat(conv_1, conv_2)[:, out_order]``.

    Initially ``out_order`` is the identity and the module computes exactly what
    :class:`~datanas_core.ops.FactorizedReduce` computes. Net2Net widening appends rows to ``conv_1`` or
    ``conv_2`` (whichever produced the copied channel) and extends ``out_order``, so that any channel mapping
    is representable. The order is saved in the module's extra state.
    """

    out_order: Tensor

    def __init__(self, C_in: int, C_out: int, stride: int = 2, *, affine: bool = True) -> None:
        if stride != 2:
            raise ConfigError(f"WidenableFactorizedReduce needs stride 2, got {stride}")
        super().__init__(C_in, C_out, stride, affine=affine)
        self.register_buffer("out_order", torch.arange(C_out), persistent=False)
        self._identity_order = True

    def set_out_order(self, order: Sequence[int] | Tensor) -> None:
        """Set the output order (a permutation of the concatenated conv outputs).

        Raises:
            ConfigError: ``order`` is not a permutation of ``range(conv_1.out + conv_2.out)``.
        """
        assert self.conv_2 is not None  # stride 2 always has both convolutions
        n = self.conv_1.out_channels + self.conv_2.out_channels
        t = torch.as_tensor(order, dtype=torch.long).flatten().cpu()
        if t.numel() != n or not torch.equal(torch.sort(t).values, torch.arange(n)):
            raise ConfigError(f"out_order must be a permutation of range({n}), got {t.tolist()}")
        self.out_order = t.to(self.out_order.device)
        self._identity_order = bool(torch.equal(t, torch.arange(n)))

    def forward(self, x: Tensor) -> Tensor:
        assert self.conv_2 is not None
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)
        if not self._identity_order:
            y = y.index_select(1, self.out_order)
        return self.bn(y)

    def get_extra_state(self) -> dict[str, Any]:
        return {"out_order": self.out_order.tolist()}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, Mapping) or "out_order" not in state:
            raise CheckpointError(f"WidenableFactorizedReduce state must hold 'out_order', got {state!r}")
        try:
            self.set_out_order(state["out_order"])
        except ConfigError as exc:
            raise CheckpointError(f"checkpoint does not fit this FactorizedReduce: {exc}") from exc


def build_drnas_op(
    name: str, C: int, stride: int = 1, *, affine: bool = False, pool_bn: bool = False
) -> nn.Module | None:
    """One candidate op of width ``C`` for a DrNAS supernet (``None`` for ``none``).

    Args:
        name: op name in :data:`~datanas_core.ops.OPS`.
        C: input and output channels of the op.
        stride: 1 or 2.
        affine: BatchNorm affine flag (``False`` in search supernets).
        pool_bn: follow pooling ops with a non-affine BatchNorm (DrNAS' ``AvgPoolBN`` / ``MaxPoolBN``).

    Raises:
        UnknownNameError: unknown op. ConfigError: bad width or stride.
    """
    if name == "none":
        build_op(name, C, C, stride, affine=affine)  # validates the arguments
        return None
    if name == "skip_connect" and stride == 2:
        return WidenableFactorizedReduce(C, C, 2, affine=affine)
    op = build_op(name, C, C, stride, affine=affine)
    return with_pool_bn(name, op, C) if pool_bn else op


class PartialChannelMixedOp(MixedOp):
    """A mixed edge whose ops see ``1/k`` of the channels (the rest bypass), followed by a channel shuffle.

    Args:
        candidates: ``(op_name, module)`` pairs in column order (ops ``C // k`` channels wide; ``None`` for
            ``none``).
        C: edge width (input and output channels).
        k: partial-channel ratio; ``1`` makes this a plain :class:`MixedOp`.
        stride: stride of the edge (strided edges 2x2 max-pool the bypassed channels).

    Attributes:
        C: the edge width; ``C_out`` (inherited) is the op width ``C // k``.

    Example:
        >>> import torch
        >>> m = PartialChannelMixedOp.build(["skip_connect", "avg_pool_3x3"], 8, 8, 1, k=4)
        >>> m(torch.randn(2, 8, 6, 6), torch.tensor([0.5, 0.5]), [0, 1]).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(
        self,
        candidates: Sequence[tuple[str, nn.Module | None]] | Mapping[str, nn.Module | None],
        *,
        C: int,
        k: int = 1,
        stride: int = 1,
    ) -> None:
        c = check_partial_channels(C, k)
        super().__init__(candidates, C_out=c, stride=stride)
        self.C = C
        self.k = k

    @classmethod
    def build(  # type: ignore[override]
        cls,
        op_names: Sequence[str],
        C_in: int,
        C_out: int,
        stride: int = 1,
        *,
        affine: bool = False,
        pool_bn: bool = False,
        k: int = 1,
    ) -> PartialChannelMixedOp:
        """Build the candidates ``C_out // k`` channels wide (see :func:`build_drnas_op`).

        Raises:
            ConfigError: ``C_in != C_out`` (a partial-channel edge keeps its width) or ``k`` does not
                divide the width.
        """
        if C_in != C_out:
            raise ConfigError(f"a partial-channel edge keeps its width; got C_in={C_in}, C_out={C_out}")
        c = check_partial_channels(C_out, k)
        cands = [(n, build_drnas_op(n, c, stride, affine=affine, pool_bn=pool_bn)) for n in op_names]
        return cls(cands, C=C_out, k=k, stride=stride)

    @property
    def op_channels(self) -> int:
        """Channels that go through the ops (``C // k``)."""
        return self.C_out

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
    ) -> Tensor:
        """``shuffle(cat(sum_k w_k op_k(x[:, :C/k]), bypass(x[:, C/k:])), k)`` ; args as MixedOp.forward."""
        if self.k == 1:
            return super().forward(
                x, weights_row, active, grad_proxy, proxy=proxy, zero=zero, arch_grad=arch_grad, fused=fused
            )
        c = self.C_out
        y = super().forward(
            x[:, :c],
            weights_row,
            active,
            grad_proxy,
            proxy=proxy,
            zero=zero,
            arch_grad=arch_grad,
            fused=fused,
        )
        rest = x[:, c:]
        if self.stride > 1:
            rest = F.max_pool2d(rest, self.stride, self.stride, ceil_mode=True)
        return channel_shuffle(torch.cat([y, rest], dim=1), self.k)

    # ------------------------------------------------------------------ progressive learning
    def kept_columns(self) -> list[int]:
        """Columns that still have a module (not ``none`` and not pruned)."""
        return [k for k in range(self.num_ops) if self.runnable(k)]

    def prune(self, keep: Sequence[int]) -> list[int]:
        """Delete the modules of every column not in ``keep`` (they become like ``none``: never run).

        Returns:
            The columns whose module was removed.
        """
        keep_set = {int(k) for k in keep}
        ops = nn.ModuleList()
        slots: list[int] = []
        removed: list[int] = []
        for col, slot in enumerate(self._slots):
            if slot >= 0 and col in keep_set:
                slots.append(len(ops))
                ops.append(self.ops[slot])
            else:
                if slot >= 0:
                    removed.append(col)
                slots.append(-1)
        self.ops = ops
        self._slots = tuple(slots)
        return removed

    def set_partial_channels(self, k: int, generator: torch.Generator | None = None) -> list[ParamChange]:
        """Lower the ratio to ``k`` and widen every op from ``C / k_old`` to ``C / k`` channels (Net2Net).

        All ops of the edge share one channel mapping (the first ``C / k_old`` channels keep their place, the
        new ones copy randomly chosen old channels, drawn from ``generator``), so the op outputs stay
        aligned for the weighted sum. See :func:`datanas_core.drnas.widen.widen_module`.

        Returns:
            The replaced parameters and the transform to apply to their optimiser state.

        Raises:
            ConfigError: ``k`` is larger than the current ratio (ops cannot be narrowed) or does not divide
                the edge width.
        """
        from datanas_core.drnas.widen import channel_mapping, widen_module

        c_new = check_partial_channels(self.C, k)
        c_old = self.C_out
        if c_new < c_old:
            raise ConfigError(
                f"cannot narrow a partial-channel edge from K={self.k} to K={k} (K may only decrease)"
            )
        changes: list[ParamChange] = []
        if c_new > c_old:
            mapping = channel_mapping(c_old, c_new, generator)
            for op in self.ops:
                changes.extend(widen_module(op, mapping, c_old))
        self.k = k
        self.C_out = c_new
        return changes

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, C={self.C}, k={self.k}"
