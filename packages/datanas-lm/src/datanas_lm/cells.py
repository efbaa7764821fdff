"""DARTS recurrent cells (Liu et al., ICLR 2019, §2.3 / quark0/darts ``rnn/``): searchable and derived.

Both cells share the recurrence. With input ``x_t`` and previous hidden state ``h_{t-1}``:

- initial state ``s0 = h_{t-1} + c0 ⊙ (tanh(h0) − h_{t-1})`` with ``[c0, h0] = [x_t, h_{t-1}] W0``,
  ``c0 = sigmoid(·)``;
- node ``j`` (1..8) with a per-node matrix ``W_j``: every used predecessor state ``s_i`` gives
  ``[c, h] = s_i W_j``, ``c = sigmoid(c)`` and, for an activation ``f``, the highway update
  ``s_i + c ⊙ (f(h) − s_i)``;
- the new hidden state ``h_t`` is the mean of the cell's output nodes (all 8 nodes in DARTS).

The **search** cell mixes, for every node, all in-edges and activations with the architecture weights
``Σ_i Σ_{f ≠ none} w_{(i,j), f} · [s_i + c ⊙ (f(h) − s_i)]`` followed by a non-affine BatchNorm (one shared
BatchNorm for ``s0`` and every node, as the reference search code does). The **derived** cell combines its kept
``(predecessor, activation)`` pairs: one per node for DARTS genotypes, several for DATA's multi-input rule. With
several, ``merge="mean"`` (the default) averages their highway updates, so the node stays a convex combination of
highway updates as a one-pair node is; ``merge="sum"`` adds them. DATA's recurrent search code is not public
(methods.md §4f), so this is our choice: a sum of ``n`` updates of one state is about ``n`` times that state, the
state's scale grows from node to node and through time, and derived cells with two activations on an edge
diverged in training at the CPU budget (loss inf at step 6, or perplexity 521 against 366-405 for one-pair
cells; the search supernet hides the scale behind its BatchNorm).

Variational dropout masks (``dropoutx`` on the input, ``dropouth`` on the states fed to the matrices) are
drawn once per sequence; ``wdrop`` applies DropConnect to the recurrent matrices once per sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype
from datanas_core.sample import CellSample
from datanas_core.space.base import CellSpec
from datanas_core.space.mixed import zero_weight_terms
from datanas_lm.regularization import bernoulli_mask, check_dropout, check_positive_ints, weight_drop

__all__ = [
    "ACTIVATIONS",
    "INIT_RANGE",
    "MERGE_MODES",
    "RNN_OPS",
    "DerivedRecurrentCell",
    "SearchRecurrentCell",
]


def _identity(x: Tensor) -> Tensor:
    return x


#: Candidate activations of the DARTS recurrent space (``none`` has no entry: it contributes nothing).
ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": _identity}
)
#: Op (column) order of the architecture matrices.
RNN_OPS: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
#: Uniform init range of the recurrent matrices (reference code).
INIT_RANGE = 0.04
#: How a derived node combines several kept pairs (:class:`DerivedRecurrentCell`, ``merge``).
MERGE_MODES: tuple[str, ...] = ("mean", "sum")

#: One time step of a cell after the initial state: ``s0`` -> the states of nodes ``0..num_nodes``.
_NodeStep = Callable[[Tensor], list[Tensor]]


def _highway(s: Tensor, c: Tensor, fh: Tensor) -> Tensor:
    """The DARTS highway update ``s + c ⊙ (f(h) − s)`` (``c`` already squashed, ``fh`` activated)."""
    return s + c * (fh - s)


class _RecurrentCellBase(nn.Module):
    """Parameters and the shared parts of the recurrence (masks, weight drop, initial state, unrolling)."""

    def __init__(
        self,
        ninp: int,
        nhid: int,
        num_nodes: int,
        *,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        wdrop: float = 0.0,
        init_range: float = INIT_RANGE,
    ) -> None:
        super().__init__()
        check_positive_ints(ninp=ninp, nhid=nhid, num_nodes=num_nodes)
        self.ninp = ninp
        self.nhid = nhid
        self.num_nodes = num_nodes
        self.dropouth = check_dropout("dropouth", dropouth)
        self.dropoutx = check_dropout("dropoutx", dropoutx)
        self.wdrop = check_dropout("wdrop", wdrop)
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-init_range, init_range))
        self.Ws = nn.ParameterList(
            [
                nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-init_range, init_range))
                for _ in range(num_nodes)
            ]
        )

    def _prepare(
        self, inputs: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, list[Tensor], Tensor | None]:
        """Input projections of all time steps, the recurrent matrices (weight-dropped) and the state mask."""
        if inputs.dim() != 3 or inputs.size(2) != self.ninp:
            raise ConfigError(f"cell inputs must be [T, B, {self.ninp}], got {tuple(inputs.shape)}")
        bsz = inputs.size(1)
        train = self.training
        x = inputs
        if train and self.dropoutx > 0:
            x = x * bernoulli_mask((1, bsz, self.ninp), self.dropoutx, inputs, generator)
        h_mask = None
        if train and self.dropouth > 0:
            h_mask = bernoulli_mask((bsz, self.nhid), self.dropouth, inputs, generator)
        w0x = self.W0[: self.ninp]
        w0h = weight_drop(self.W0[self.ninp :], self.wdrop, train, generator)
        ws = [weight_drop(w, self.wdrop, train, generator) for w in self.Ws]
        xw = x @ w0x  # [T, B, 2H]: the input half of [x, h] W0 for every step at once
        return xw, w0h, ws, h_mask

    @staticmethod
    def _init_state(xw_t: Tensor, h: Tensor, w0h: Tensor, h_mask: Tensor | None) -> Tensor:
        """``s0 = h + c0 ⊙ (tanh(h0) − h)`` with ``[c0, h0] = [x_t, h] W0`` (``xw_t`` is the input half)."""
        hh = h if h_mask is None else h * h_mask
        c0, h0 = (xw_t + hh @ w0h).chunk(2, dim=-1)
        return _highway(h, c0.sigmoid(), h0.tanh())

    @staticmethod
    def _project(
        states: Sequence[Tensor], srcs: Sequence[int], w: Tensor, h_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Stack the predecessors ``S = states[srcs]`` (``[n, B, H]``) and project ``[c, h] = S W``.

        Returns:
            ``(S, sigmoid(c), h)``, each ``[n, B, H]``.
        """
        S = torch.stack([states[i] for i in srcs])
        s = S if h_mask is None else S * h_mask
        c, h = (s @ w).chunk(2, dim=-1)
        return S, c.sigmoid(), h

    def _unroll(
        self,
        xw: Tensor,
        h: Tensor,
        w0h: Tensor,
        h_mask: Tensor | None,
        step: _NodeStep,
        concat: Sequence[int],
    ) -> tuple[Tensor, Tensor]:
        """Run the recurrence over time: per step ``s0``, the node states (``step``) and their mean.

        Args:
            xw: input projections ``[T, B, 2H]`` from :meth:`_prepare`.
            h: initial hidden state ``[B, H]``.
            w0h, h_mask: the (weight-dropped) recurrent half of ``W0`` and the state mask.
            step: maps ``s0`` to the states of nodes ``0..num_nodes``.
            concat: the output nodes, averaged into the new hidden state.

        Returns:
            ``(outputs [T, B, H], last hidden [B, H])``.
        """
        outputs = []
        for t in range(xw.size(0)):
            states = step(self._init_state(xw[t], h, w0h, h_mask))
            h = torch.stack([states[i] for i in concat]).mean(0)
            outputs.append(h)
        return torch.stack(outputs), h

    def _check_hidden(self, inputs: Tensor, hidden: Tensor) -> Tensor:
        if hidden.dim() == 3:
            if hidden.size(0) != 1:
                raise ConfigError(
                    f"hidden must be [1, B, {self.nhid}] or [B, {self.nhid}], got {tuple(hidden.shape)}"
                )
            hidden = hidden[0]
        if hidden.shape != (inputs.size(1), self.nhid):
            raise ConfigError(
                f"hidden state of shape {tuple(hidden.shape)} does not match inputs {tuple(inputs.shape)}; "
                f"expected [B={inputs.size(1)}, H={self.nhid}] (use init_hidden(batch_size))"
            )
        return hidden


class SearchRecurrentCell(_RecurrentCellBase):
    """The mixed DARTS recurrent cell of the supernet (architecture weights come from outside).

    Args:
        ninp, nhid: input and hidden sizes.
        spec: the ``"recurrent"`` cell spec (``num_inputs=1``: node 0 is ``s0``); rows of the ``[E, K]``
            architecture matrices follow ``spec.edges`` and columns ``spec.ops``.
        dropouth, dropoutx, wdrop: see the module docstring.
        batchnorm: non-affine BatchNorm after ``s0`` and each node (reference search code).

    Example:
        >>> from datanas_lm.space import RNNSpace
        >>> spec = RNNSpace().cell("recurrent")
        >>> cell = SearchRecurrentCell(8, 8, spec)
    """

    def __init__(
        self,
        ninp: int,
        nhid: int,
        spec: CellSpec,
        *,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        wdrop: float = 0.0,
        batchnorm: bool = True,
        init_range: float = INIT_RANGE,
    ) -> None:
        if spec.num_inputs != 1:
            raise ConfigError(
                f"a recurrent cell spec has one input node (s0), got num_inputs={spec.num_inputs}"
            )
        unknown = [o for o in spec.ops if o != "none" and o not in ACTIVATIONS]
        if unknown:
            raise ConfigError(f"unknown recurrent op(s) {unknown}; valid: none, {', '.join(ACTIVATIONS)}")
        super().__init__(
            ninp,
            nhid,
            spec.num_nodes,
            dropouth=dropouth,
            dropoutx=dropoutx,
            wdrop=wdrop,
            init_range=init_range,
        )
        self.spec = spec
        self.bn = nn.BatchNorm1d(nhid, affine=False) if batchnorm else None

    def _plan(
        self, sample: CellSample
    ) -> list[
        tuple[
            int,
            list[int],
            Tensor | None,
            list[tuple[Callable[[Tensor], Tensor], Tensor | None, Tensor]],
            Tensor | None,
            Tensor | None,
            bool,
        ]
    ]:
        """Per node: predecessors to project, dense weights (all ops active) or per-op groups, a proxy, the
        ``[K', n]`` weights of the zero-weight pairs (forward-only terms) and whether only those run."""
        spec = self.spec
        w = sample.weights
        if w.shape != (spec.num_edges, spec.num_ops):
            raise ConfigError(
                f"architecture weights for cell {spec.cell_type!r} must be "
                f"[{spec.num_edges}, {spec.num_ops}], "
                f"got {tuple(w.shape)}"
            )
        active = sample.active
        none = spec.ops.index("none") if "none" in spec.ops else -1
        act_cols = [k for k in range(spec.num_ops) if k != none]
        # exactly-zero weights of the exact executor: their highway terms run forward-only (see
        # datanas_core.space.mixed); `plain_exact` keeps every term in the autograd graph
        lean = not sample.plain_exact and not sample.grad_proxy
        zero = (w.detach() == 0).tolist() if lean else None
        arch_grad = bool(w.requires_grad and torch.is_grad_enabled())
        plans = []
        for j in spec.nodes:
            rows = spec.in_edges(j)
            used = [r for r in rows if any(k != none for k in active[r])]
            srcs = [spec.edges[r][0] for r in used]
            dense: Tensor | None = None
            groups: list[tuple[Callable[[Tensor], Tensor], Tensor | None, Tensor]] = []
            zterm: Tensor | None = None
            zpairs = (
                [(i, k) for i, r in enumerate(used) for k in act_cols if k in active[r] and zero[r][k]]
                if zero is not None
                else []
            )
            if (
                not zpairs
                and used
                and len(used) == len(rows)
                and all(all(k in active[r] for k in act_cols) for r in rows)
            ):
                # every (edge, activation) runs: one vectorised update; weights [K', n, 1, 1]
                dense = w[rows][:, act_cols].t().reshape(len(act_cols), len(rows), 1, 1)
            else:
                zset = set(zpairs)
                for k in act_cols:
                    sel = [i for i, r in enumerate(used) if k in active[r] and (i, k) not in zset]
                    if not sel:
                        continue
                    wk = w[[used[i] for i in sel], k].reshape(-1, 1, 1)
                    idx = None if len(sel) == len(used) else torch.tensor(sel, device=w.device)
                    groups.append((ACTIVATIONS[spec.ops[k]], idx, wk))
                if zpairs and arch_grad:
                    # [K', n] weights of the zero pairs only (the others masked to 0 in value and gradient)
                    zm = torch.zeros(len(act_cols), len(used), dtype=w.dtype, device=w.device)
                    for i, k in zpairs:
                        zm[act_cols.index(k), i] = 1.0
                    zterm = w[used][:, act_cols].t() * zm
            proxy = None
            if sample.grad_proxy:
                off = [(r, k) for r in rows for k in range(spec.num_ops) if k not in active[r]]
                if off:
                    t = w[[r for r, _ in off], [k for _, k in off]].sum()
                    proxy = t - t.detach()  # value exactly 0, gradient 1 to every non-active weight
            plans.append((j, srcs, dense, groups, proxy, zterm, bool(zpairs) and not groups))
        return plans

    def forward(
        self,
        inputs: Tensor,
        hidden: Tensor,
        sample: CellSample,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the mixed cell over a sequence.

        Args:
            inputs: ``[T, B, ninp]``.
            hidden: ``[B, nhid]`` (or ``[1, B, nhid]``).
            sample: this cell type's architecture sample (``weights [E, K]``, ``active``, ``grad_proxy``).
            generator: for the dropout masks.

        Returns:
            ``(outputs [T, B, nhid], last hidden [B, nhid])``.
        """
        h = self._check_hidden(inputs, hidden)
        xw, w0h, ws, h_mask = self._prepare(inputs, generator)
        plans = self._plan(sample)
        acts = [ACTIVATIONS[o] for o in self.spec.ops if o != "none"]
        bn = self.bn

        def step(s0: Tensor) -> list[Tensor]:
            """``s0`` and every node: the weighted mix of its in-edges' highway updates (then BatchNorm)."""
            if bn is not None:
                s0 = bn(s0)
            states = [s0]
            for j, srcs, dense, groups, proxy, zterm, only_zero in plans:
                if srcs:
                    S, c, hc = self._project(states, srcs, ws[j - 1], h_mask)  # [n, B, H]
                    if dense is not None:
                        F = torch.stack([f(hc) for f in acts])  # [K', n, B, H]
                        s = (dense * _highway(S, c, F)).sum(dim=(0, 1))
                    else:
                        s = torch.zeros_like(s0)
                        for f, idx, wk in groups:
                            Sg, cg, hg = (S, c, hc) if idx is None else (S[idx], c[idx], hc[idx])
                            s = s + (wk * _highway(Sg, cg, f(hg))).sum(0)
                    if torch.is_grad_enabled() and (zterm is not None or only_zero):
                        # zero-weight pairs: forward-only terms for their weights' gradients; the node's
                        # matrix gets its exact-zero gradient when no pair of the node has a graph
                        carry = [ws[j - 1], S] if only_zero else []
                        zw: list[Tensor] = []
                        zo: list[Tensor] = []
                        if zterm is not None:
                            with torch.no_grad():
                                zo.append(_highway(S, c, torch.stack([f(hc) for f in acts])))
                            zw.append(zterm)
                        if zw or carry:
                            s = zero_weight_terms(s, zw, zo, carry)
                else:
                    s = torch.zeros_like(s0)
                if proxy is not None:
                    s = s + proxy
                if bn is not None:
                    s = bn(s)
                states.append(s)
            return states

        return self._unroll(xw, h, w0h, h_mask, step, self.spec.concat)


class DerivedRecurrentCell(_RecurrentCellBase):
    """The recurrent cell of a derived genotype: each node combines its kept ``(predecessor, activation)`` pairs.

    Args:
        ninp, nhid: input and hidden sizes.
        cell: the genotype's ``"recurrent"`` cell (node 0 is ``s0``, nodes ``1..num_nodes``).
        num_nodes: intermediate nodes of the space (8 for DARTS).
        dropouth, dropoutx, wdrop: see the module docstring.
        merge: how a node with several pairs combines their highway updates: ``"mean"`` (default) or ``"sum"``
            (see the module docstring). One-pair nodes (every DARTS genotype) are the same either way.

    Example:
        >>> from datanas_lm.genotypes import load_genotype
        >>> cell = DerivedRecurrentCell(8, 8, load_genotype("darts_v2").cells["recurrent"])
    """

    def __init__(
        self,
        ninp: int,
        nhid: int,
        cell: CellGenotype,
        *,
        num_nodes: int = 8,
        dropouth: float = 0.0,
        dropoutx: float = 0.0,
        wdrop: float = 0.0,
        init_range: float = INIT_RANGE,
        merge: str = "mean",
    ) -> None:
        super().__init__(
            ninp, nhid, num_nodes, dropouth=dropouth, dropoutx=dropoutx, wdrop=wdrop, init_range=init_range
        )
        if merge not in MERGE_MODES:
            raise ConfigError(f"unknown merge {merge!r} for a node's pairs; valid: {', '.join(MERGE_MODES)}")
        self.merge = merge
        nodes: list[tuple[int, list[int], list[tuple[int, str]]]] = []
        for j in range(1, num_nodes + 1):
            pairs = cell.inputs_of(j)
            srcs = sorted({e.src for e in pairs})
            pos = {s: i for i, s in enumerate(srcs)}
            for e in pairs:
                if e.op not in ACTIVATIONS:
                    raise IncompatibleGenotypeError(
                        f"recurrent edge ({e.src}, {e.dst}, {e.op!r}): unknown activation; "
                        f"valid: {', '.join(ACTIVATIONS)}"
                    )
            nodes.append((j, srcs, [(pos[e.src], e.op) for e in pairs]))
        for c in cell.concat:
            if not 0 <= c <= num_nodes:
                raise IncompatibleGenotypeError(f"concat node {c} is out of range 0..{num_nodes}")
        for e in cell.edges:
            if e.dst > num_nodes or e.dst < 1:
                raise IncompatibleGenotypeError(
                    f"recurrent edge ({e.src}, {e.dst}, {e.op!r}): node {e.dst} out of range 1..{num_nodes}"
                )
        self._nodes = nodes
        self.concat: tuple[int, ...] = tuple(cell.concat)

    def forward(
        self, inputs: Tensor, hidden: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``inputs [T, B, ninp]``, ``hidden [B, nhid]`` -> ``(outputs [T, B, nhid], hidden [B, nhid])``."""
        h = self._check_hidden(inputs, hidden)
        xw, w0h, ws, h_mask = self._prepare(inputs, generator)

        def step(s0: Tensor) -> list[Tensor]:
            """``s0`` and every node: the mean (or sum) of its kept ``(predecessor, activation)`` highway updates."""
            states = [s0]
            for j, srcs, pairs in self._nodes:
                if not srcs:
                    states.append(torch.zeros_like(s0))
                    continue
                S, c, hc = self._project(states, srcs, ws[j - 1], h_mask)
                s: Tensor | None = None
                for p, op in pairs:
                    term = _highway(S[p], c[p], ACTIVATIONS[op](hc[p]))
                    s = term if s is None else s + term
                if len(pairs) > 1 and self.merge == "mean":
                    s = s / len(pairs)  # type: ignore[operator]
                states.append(s)  # type: ignore[arg-type]
            return states

        return self._unroll(xw, h, w0h, h_mask, step, self.concat)

    def extra_repr(self) -> str:
        desc = "; ".join(
            f"{j}<-" + ",".join(f"{op}({srcs[p]})" for p, op in pairs) for j, srcs, pairs in self._nodes
        )
        return f"ninp={self.ninp}, nhid={self.nhid}, nodes=[{desc}], concat={list(self.concat)}, merge={self.merge}"


def pairs_from_darts(recurrent: Sequence[tuple[str, int]]) -> list[tuple[int, int, str]]:
    """The DARTS list form ``[(activation, predecessor), ...]`` (one entry per node) as ``(src, dst, op)``."""
    return [(int(src), i + 1, op) for i, (op, src) in enumerate(recurrent)]
