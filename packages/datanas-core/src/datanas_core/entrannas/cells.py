"""EnTranNAS cells: engine and transit roles over feature-shared candidate ops (methods.md §5(a), (b)).

* **Feature sharing**: one candidate-op module per ``(source node, op)`` instead of per ``(edge, op)``;
  ``f_i^k = o_i^k(x_i)`` is computed at most once per forward and reused for every target node. With
  ``feature_sharing=False`` the modules are per edge, exactly like DARTS' supernet cell.
* **Engine cell**: ``x_j = sum_i sum_k w_ij^k f_i^k`` with the sample's differentiable weights (it learns
  ``alpha``); only the columns the executor marks active are computed, as in :class:`MixedOp`.
* **Transit cell**: ``x_j = sum_{(i, k) in S_j} f_i^k`` over the pairs ``S_j`` of the architecture derived
  from the current ``alpha`` (re-derived at every forward pass by the supernet); no ``alpha`` weighting, so no
  gradient reaches ``alpha`` (``transit_weights="detached"`` multiplies by the detached engine weights
  instead; whether the paper weights transit outputs is unknown, methods.md §5(i)).

A cell's modules do not depend on its role, so the same ``state_dict`` loads into either role.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype
from datanas_core.ops import out_size
from datanas_core.space.base import CellSpec
from datanas_core.space.darts import _preprocess
from datanas_core.space.mixed import MixedOp, PreparedCellSample, zero_weight_terms

__all__ = [
    "ROLES",
    "TRANSIT_WEIGHTS",
    "CellPlan",
    "DartsEnTranNASCell",
    "NB201EnTranNASCell",
    "SharedOpCell",
    "TransitPlan",
]

#: Cell roles.
ROLES = ("engine", "transit")
#: How transit cells weight their pairs: ``"none"`` (plain sum, default) or ``"detached"`` engine weights.
TRANSIT_WEIGHTS = ("none", "detached")


@dataclass(frozen=True)
class TransitPlan:
    """The derived sub-graph of one cell type for one forward pass.

    Attributes:
        genotype: the derived cell (``(src, dst, op)`` triples).
        nodes: per intermediate node (``spec.nodes`` order), the ``(edge row, src, op column)`` to sum.
    """

    genotype: CellGenotype
    nodes: tuple[tuple[tuple[int, int, int], ...], ...]

    @classmethod
    def from_genotype(cls, cell: CellGenotype, spec: CellSpec) -> TransitPlan:
        """Index the genotype's triples by the spec's edge rows and op columns."""
        nodes = []
        for node in spec.nodes:
            pairs = [
                (spec.edge_index[(e.src, e.dst)], e.src, spec.ops.index(e.op)) for e in cell.inputs_of(node)
            ]
            nodes.append(tuple(pairs))
        return cls(cell, tuple(nodes))


@dataclass
class CellPlan:
    """What every cell of one type consumes in one forward pass.

    Attributes:
        prep: the sample split for engine cells (``None`` if the type has no engine cell).
        transit: the derived sub-graph for transit cells (``None`` if the type has no transit cell).
    """

    prep: PreparedCellSample | None
    transit: TransitPlan | None


class SharedOpCell(nn.Module):
    """Candidate ops keyed by ``(source, op)`` (or ``(edge, op)``) and the engine/transit node sums.

    Args:
        spec: the cell's DAG.
        C: channels of every node.
        role: ``"engine"`` or ``"transit"``.
        stride_of: stride of the ops leaving source node ``src``.
        feature_sharing: one module per ``(source, op)``; ``False``: one per ``(edge, op)`` (DARTS).
        pool_bn: non-affine BN after pooling ops (DARTS' search supernet).
        transit_weights: ``"none"`` or ``"detached"`` (see the module docstring).

    Raises:
        ConfigError: unknown role or transit weighting.
    """

    def __init__(
        self,
        spec: CellSpec,
        C: int,
        *,
        role: str,
        stride_of: Callable[[int], int],
        feature_sharing: bool = True,
        pool_bn: bool = False,
        transit_weights: str = "none",
    ) -> None:
        super().__init__()
        if role not in ROLES:
            raise ConfigError(f"unknown cell role {role!r}; valid roles: {', '.join(ROLES)}")
        if transit_weights not in TRANSIT_WEIGHTS:
            raise ConfigError(
                f"unknown transit_weights {transit_weights!r}; valid values: {', '.join(TRANSIT_WEIGHTS)}"
            )
        self.cell_type = spec.cell_type
        self.role = role
        self.C = C
        self.feature_sharing = bool(feature_sharing)
        self.transit_weights = transit_weights
        if self.feature_sharing:
            sources = sorted({src for src, _ in spec.edges})
            keys = sources
            slot_of_edge = [sources.index(src) for src, _ in spec.edges]
        else:
            keys = [src for src, _ in spec.edges]
            slot_of_edge = list(range(spec.num_edges))
        #: ``ops[slot]`` holds the candidates of one source (shared) or one edge (unshared).
        self.ops = nn.ModuleList(
            MixedOp.build(spec.ops, C, C, stride_of(src), affine=False, pool_bn=pool_bn) for src in keys
        )
        self.slot_of_edge: tuple[int, ...] = tuple(slot_of_edge)
        self._nodes: list[list[tuple[int, int]]] = [
            [(e, spec.edges[e][0]) for e in spec.in_edges(node)] for node in spec.nodes
        ]
        self._num_edges = spec.num_edges
        self._num_ops = spec.num_ops
        self._stride_of = [stride_of(src) for src, _ in spec.edges]
        #: output stride of each node relative to the cell inputs (its strided in-edges, if any)
        self._node_stride = [max((self._stride_of[e] for e, _ in edges), default=1) for edges in self._nodes]

    @property
    def num_modules(self) -> int:
        """Number of candidate-op groups (sources with sharing, edges without)."""
        return len(self.ops)

    def _zeros(self, ref: Tensor, stride: int) -> Tensor:
        h, w = out_size(ref.shape[2], stride), out_size(ref.shape[3], stride)
        return ref.new_zeros(ref.shape[0], self.C, h, w)

    def _feature(self, cache: dict[tuple[int, int], Tensor], e: int, k: int, x: Tensor) -> Tensor | None:
        slot = self.slot_of_edge[e]
        key = (slot, k)
        f = cache.get(key)
        if f is None:
            op = self.ops[slot].op(k)
            if op is None:  # `none`: contributes nothing
                return None
            f = op(x)
            cache[key] = f
        return f

    def _graph_features(self, prep: PreparedCellSample) -> set[tuple[int, int]] | None:
        """The ``(module slot, column)`` features that need an autograd graph: used with a non-zero weight
        on some edge, or not allowed to run forward-only. ``None``: every feature does (plain path)."""
        if prep.zero is None:
            return None
        graph: set[tuple[int, int]] = set()
        for e in range(self._num_edges):
            zero = prep.zero_of(e)
            slot = self.slot_of_edge[e]
            for k in prep.run[e]:
                if k not in zero or not self.ops[slot]._forward_only_ok(k):
                    graph.add((slot, k))
        return graph

    def _lean_feature(
        self,
        lean_cache: dict[tuple[int, int], Tensor],
        carried: set[tuple[int, int]],
        e: int,
        k: int,
        x: Tensor,
        w: Tensor,
        arch_grad: bool,
        zw: list[Tensor],
        zf: list[Tensor],
        zp: list[Tensor],
    ) -> None:
        """Queue the zero-weight feature ``(e, k)``: forward-only for its weight's gradient (computed once
        per slot); its input and parameters get exact-zero gradients, as the plain product gives them."""
        slot = self.slot_of_edge[e]
        op = self.ops[slot].op(k)
        if op is None or not torch.is_grad_enabled():
            return
        key = (slot, k)
        if key not in carried:
            carried.add(key)
            zp.extend(p for p in op.parameters() if p.requires_grad)
        zp.append(x)
        if arch_grad and w.requires_grad:
            f = lean_cache.get(key)
            if f is None:
                with torch.no_grad():
                    f = op(x)
                lean_cache[key] = f
            zw.append(w)
            zf.append(f)

    def run_nodes(self, states: list[Tensor], plan: CellPlan, zero_ref: Tensor) -> list[Tensor]:
        """Append the intermediate nodes to ``states`` (inputs first) according to the cell's role.

        Args:
            states: the input node values.
            plan: the per-forward plan of this cell type.
            zero_ref: reference tensor for nodes with no input (shape of the inputs before striding).

        Returns:
            ``states`` with every intermediate node appended.

        Raises:
            ConfigError: the plan lacks what the role needs.
        """
        cache: dict[tuple[int, int], Tensor] = {}
        if self.role == "engine":
            if plan.prep is None:
                raise ConfigError(f"engine cell of type {self.cell_type!r} got no architecture sample")
            prep = plan.prep
            graph = self._graph_features(prep)
            lean_cache: dict[tuple[int, int], Tensor] = {}
            carried: set[tuple[int, int]] = set()
            for n, in_edges in enumerate(self._nodes):
                acc: Tensor | None = None
                zw: list[Tensor] = []
                zf: list[Tensor] = []
                zp: list[Tensor] = []
                for e, src in in_edges:
                    if prep.skip(e):
                        continue
                    w = prep.rows[e]
                    for k in prep.run[e]:
                        if graph is not None and (self.slot_of_edge[e], k) not in graph:
                            self._lean_feature(
                                lean_cache, carried, e, k, states[src], w[k], prep.arch_grad, zw, zf, zp
                            )
                            continue
                        f = self._feature(cache, e, k, states[src])
                        if f is None:
                            continue
                        y = w[k] * f
                        acc = y if acc is None else acc + y
                    px = prep.proxy[e]
                    if px is not None:
                        acc = (self._zeros(states[src], self._stride_of[e]) if acc is None else acc) + px
                if (zw or zp) and torch.is_grad_enabled():
                    base = acc if acc is not None else self._zeros(zero_ref, self._node_stride[n])
                    acc = zero_weight_terms(base, zw, zf, zp)
                states.append(acc if acc is not None else self._zeros(zero_ref, self._node_stride[n]))
            return states
        if plan.transit is None:
            raise ConfigError(f"transit cell of type {self.cell_type!r} got no derived sub-graph")
        weighted = self.transit_weights == "detached"
        if weighted and plan.prep is None:
            raise ConfigError("transit_weights='detached' needs the architecture sample of the cell type")
        for n, pairs in enumerate(plan.transit.nodes):
            acc = None
            for e, src, k in pairs:
                f = self._feature(cache, e, k, states[src])
                if f is None:
                    continue
                if weighted:
                    f = plan.prep.rows[e][k].detach() * f  # type: ignore[union-attr]
                acc = f if acc is None else acc + f
            states.append(acc if acc is not None else self._zeros(zero_ref, self._node_stride[n]))
        return states

    def extra_repr(self) -> str:
        return (
            f"role={self.role!r}, cell_type={self.cell_type!r}, feature_sharing={self.feature_sharing}, "
            f"modules={self.num_modules}"
        )


class DartsEnTranNASCell(SharedOpCell):
    """A DARTS-space cell (2 preprocessed inputs, concat output) with an engine or transit role.

    Args:
        spec: the DARTS cell spec (``normal`` or ``reduce``).
        C_pp: channels of the input two cells back.
        C_p: channels of the previous cell's output.
        C: channels of this cell's nodes.
        reduction_prev: the previous cell was a reduction cell.
        role, feature_sharing, pool_bn, transit_weights: see :class:`SharedOpCell`.
    """

    def __init__(
        self,
        spec: CellSpec,
        C_pp: int,
        C_p: int,
        C: int,
        reduction_prev: bool,
        *,
        role: str,
        feature_sharing: bool = True,
        pool_bn: bool = True,
        transit_weights: str = "none",
    ) -> None:
        reduction = spec.reduction
        n_in = spec.num_inputs
        super().__init__(
            spec,
            C,
            role=role,
            stride_of=lambda src: 2 if reduction and src < n_in else 1,
            feature_sharing=feature_sharing,
            pool_bn=pool_bn,
            transit_weights=transit_weights,
        )
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = _preprocess(C_pp, C_p, C, reduction_prev, affine=False)
        self._concat = spec.concat
        self.multiplier = len(spec.concat)

    def forward(self, s0: Tensor, s1: Tensor, plan: CellPlan) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        states = self.run_nodes(states, plan, states[1])
        return torch.cat([states[i] for i in self._concat], dim=1)


class NB201EnTranNASCell(SharedOpCell):
    """An NB201 cell (one input node, output = last node) with an engine or transit role.

    Args:
        spec: the NB201 cell spec.
        C: channels.
        role, feature_sharing, transit_weights: see :class:`SharedOpCell`.
    """

    def __init__(
        self,
        spec: CellSpec,
        C: int,
        *,
        role: str,
        feature_sharing: bool = True,
        transit_weights: str = "none",
    ) -> None:
        super().__init__(
            spec,
            C,
            role=role,
            stride_of=lambda src: 1,
            feature_sharing=feature_sharing,
            pool_bn=False,
            transit_weights=transit_weights,
        )

    def forward(self, x: Tensor, plan: CellPlan) -> Tensor:
        return self.run_nodes([x], plan, x)[-1]


def resolve_roles(cell_types: Sequence[str], engine_cells: str | int | Sequence[int]) -> tuple[str, ...]:
    """The role of every searchable cell, given their cell types in network order.

    Args:
        cell_types: cell type of each searchable cell, in order.
        engine_cells: ``"first"`` (the first cell of each type, default), ``"last"``, ``"all"`` (every cell:
            a feature-shared DARTS supernet), an int ``n`` (the first ``n`` cells of each type) or a list of
            cell indices (negative indices count from the end).

    Raises:
        ConfigError: bad value, an index out of range, or a cell type without an engine cell (its ``alpha``
            would get no gradient).
    """
    n = len(cell_types)
    types = list(dict.fromkeys(cell_types))
    by_type = {ct: [i for i, c in enumerate(cell_types) if c == ct] for ct in types}
    engine: set[int]
    if isinstance(engine_cells, str):
        if engine_cells == "first":
            engine = {idx[0] for idx in by_type.values()}
        elif engine_cells == "last":
            engine = {idx[-1] for idx in by_type.values()}
        elif engine_cells == "all":
            engine = set(range(n))
        else:
            raise ConfigError(
                f"unknown engine_cells {engine_cells!r}; valid: 'first', 'last', 'all', an int or a list of "
                f"cell indices 0..{n - 1}"
            )
    elif isinstance(engine_cells, int) and not isinstance(engine_cells, bool):
        if engine_cells < 1:
            raise ConfigError(f"engine_cells as a count must be >= 1, got {engine_cells}")
        engine = {i for idx in by_type.values() for i in idx[:engine_cells]}
    elif isinstance(engine_cells, Sequence):
        engine = set()
        for i in engine_cells:
            if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                raise ConfigError(
                    f"engine cell index {i!r} out of range for {n} searchable cells (0..{n - 1})"
                )
            engine.add(i % n)
    else:
        raise ConfigError(f"engine_cells must be a string, an int or a list of ints, got {engine_cells!r}")
    missing = [ct for ct, idx in by_type.items() if not engine.intersection(idx)]
    if missing:
        raise ConfigError(
            f"cell type(s) {missing} have no engine cell (engine cells {sorted(engine)}; cells of each type: "
            f"{by_type}); their architecture parameters would never be trained"
        )
    return tuple("engine" if i in engine else "transit" for i in range(n))
