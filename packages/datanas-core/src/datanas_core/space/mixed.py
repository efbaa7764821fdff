"""The mixed edge of a supernet: candidate ops combined with externally supplied weights.

:class:`MixedOp` owns the candidate op modules of one edge and no architecture parameters. Its forward sums
``w_k * op_k(x)`` over the *active* columns it is given (the estimator decides which: every column for
DARTS, SNAS and exact EGS, the sampled ones for GDAS or a sparse executor). Two rules make that sum exact:

* ``none`` is never instantiated. Its output is identically zero, so its contribution and its weight's
  gradient ``<dL/dy, 0>`` are exactly zero whether or not it is active; skipping it changes nothing.
* Active columns whose weight is exactly zero are still executed. Their output is multiplied by 0 in the
  forward pass, but the weight still receives ``<dL/dy, op_k(x)>``: the straight-through gradient that EGS
  relies on.

With ``grad_proxy`` the weights of the non-active columns are added to the output as a zero-valued scalar
(GDAS): the forward value is unchanged and each such weight receives ``sum(dL/dy)``.

:class:`PreparedCellSample` is the per-forward view of a :class:`~datanas_core.sample.CellSample` that the
cells of one type share: weights split into scalars once, the columns to run per edge and the gradient
carriers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.ops import OPS, out_size, with_pool_bn
from datanas_core.sample import CellSample

__all__ = ["MixedOp", "PreparedCellSample"]


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
    ) -> Tensor:
        """Sum ``weights_row[k] * op_k(x)`` over the active columns.

        Args:
            x: the edge input.
            weights_row: ``[K]`` weights of this edge, or a sequence of ``K`` 0-dim tensors (supernets split
                each cell type's weight matrix once per forward and pass the pieces).
            active: columns to execute (``none`` columns are skipped; exact zeros are executed).
            grad_proxy: add the non-active weights as a zero-valued gradient carrier.
            proxy: a precomputed zero-valued carrier (used instead of computing one here when given).

        Returns:
            The edge output; zeros of the right shape when no non-``none`` column is active.
        """
        slots = self._slots
        out: Tensor | None = None
        w = weights_row.unbind(0) if isinstance(weights_row, Tensor) and len(active) > 1 else weights_row
        for k in active:
            slot = slots[k]
            if slot < 0:
                continue
            y = w[k] * self.ops[slot](x)
            out = y if out is None else out + y
        if grad_proxy:
            if proxy is None:
                proxy = _zero_carrier(weights_row, active, len(slots))
            if proxy is not None:
                out = (self.zeros(x) if out is None else out) + proxy
        if out is None:
            out = self.zeros(x)
        return out

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
    """

    rows: list[tuple[Tensor, ...]]
    run: list[list[int]]
    proxy: list[Tensor | None]

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
        return cls(rows, run, proxy)

    def skip(self, e: int) -> bool:
        """Edge ``e`` contributes nothing (no module to run and no gradient carrier)."""
        return not self.run[e] and self.proxy[e] is None
