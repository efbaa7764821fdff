"""Search-space contract: cells described as data, supernet and derived-network builders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from torch import nn

from datanas_core.errors import IncompatibleGenotypeError
from datanas_core.genotype import Genotype
from datanas_core.registry import Registry

__all__ = ["SPACES", "CellSpec", "SearchSpace"]


@dataclass(frozen=True)
class CellSpec:
    """The searchable DAG of one cell type.

    Nodes are numbered globally: ``0 .. num_inputs-1`` are the cell inputs, then ``num_nodes`` intermediate
    nodes. Row ``e`` of every ``[E, K]`` architecture matrix of this cell type is edge ``edges[e]`` and
    column ``k`` is op ``ops[k]``.

    Attributes:
        cell_type: name of the cell type ("normal", "reduce", "cell", "recurrent", ...).
        num_inputs: number of input nodes.
        num_nodes: number of intermediate nodes.
        ops: candidate op names (column order).
        edges: ``(src, dst)`` pairs (row order).
        concat: nodes whose outputs form the cell output.
        reduction: whether edges leaving input nodes are strided (CNN reduction cells).
        max_in_degree: upper bound on kept inputs per node in derived genotypes (``None``: unbounded).
    """

    cell_type: str
    num_inputs: int
    num_nodes: int
    ops: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    concat: tuple[int, ...]
    reduction: bool = False
    max_in_degree: int | None = None

    @staticmethod
    def dense(
        cell_type: str,
        num_inputs: int,
        num_nodes: int,
        ops: Sequence[str],
        *,
        concat: Sequence[int] | None = None,
        reduction: bool = False,
        max_in_degree: int | None = None,
    ) -> CellSpec:
        """A cell in which every node takes an edge from every earlier node (DARTS, NB201, RNN)."""
        edges = tuple((i, j) for j in range(num_inputs, num_inputs + num_nodes) for i in range(j))
        if concat is None:
            concat = tuple(range(num_inputs, num_inputs + num_nodes))
        return CellSpec(
            cell_type, num_inputs, num_nodes, tuple(ops), edges, tuple(concat), reduction, max_in_degree
        )

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def nodes(self) -> range:
        """Intermediate node indices."""
        return range(self.num_inputs, self.num_inputs + self.num_nodes)

    @cached_property
    def edge_index(self) -> dict[tuple[int, int], int]:
        return {e: i for i, e in enumerate(self.edges)}

    def in_edges(self, dst: int) -> list[int]:
        """Row indices of the edges ending at ``dst``, in row order."""
        return [i for i, (_, d) in enumerate(self.edges) if d == dst]

    def edge_key(self, row: int) -> str:
        """Stable human-readable name of edge ``row``, e.g. ``"normal/0->2"``."""
        s, d = self.edges[row]
        return f"{self.cell_type}/{s}->{d}"

    def op_index(self, op: str) -> int:
        try:
            return self.ops.index(op)
        except ValueError:
            raise IncompatibleGenotypeError(
                f"op {op!r} is not a candidate of cell type {self.cell_type!r}; candidates: {', '.join(self.ops)}"
            ) from None


class SearchSpace(ABC):
    """A searchable space: cell specs plus builders for the supernet and for derived networks.

    Architecture parameters never live inside the networks a space builds: the supernet's ``forward`` takes
    an :class:`~datanas_core.sample.ArchSample` (one :class:`~datanas_core.sample.CellSample` per cell type).
    """

    #: Registry name of the space (e.g. ``"darts"``, ``"nb201"``).
    name: str = ""

    @abstractmethod
    def cells(self) -> Mapping[str, CellSpec]:
        """Cell specs keyed by cell type, in a stable order."""

    @abstractmethod
    def build_supernet(self, **hparams: Any) -> nn.Module:
        """The weight-sharing network whose ``forward(x, arch)`` consumes an ArchSample."""

    @abstractmethod
    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        """A standalone network of the discrete architecture ``genotype``."""

    #: Name of the default derivation rule (see :data:`datanas_core.DERIVATION_RULES`).
    default_rule: str = "topk_edges"

    def cell(self, cell_type: str) -> CellSpec:
        cells = self.cells()
        if cell_type not in cells:
            raise IncompatibleGenotypeError(
                f"space {self.name!r} has no cell type {cell_type!r}; cell types: {', '.join(cells)}"
            )
        return cells[cell_type]

    def edge_costs(self, metric: str = "params") -> dict[str, Any]:
        """Per-cell-type ``[E, K]`` tensors with the cost of each candidate op on each edge.

        ``metric`` is ``"params"`` (parameter count of one instance) or ``"flops"`` (multiply-adds for the
        space's reference input size), summed over the cells of that type in the supernet. Used by the
        expected-cost regulariser. Spaces that cannot measure a metric raise ConfigError.
        """
        from datanas_core.errors import ConfigError

        raise ConfigError(f"space {self.name!r} provides no {metric!r} cost table")

    def config(self) -> dict[str, Any]:
        """Constructor arguments that identify this space (for run manifests and resume checks)."""
        return {"name": self.name}

    def validate(self, genotype: Genotype) -> None:
        """Check that ``genotype`` fits this space.

        Raises:
            IncompatibleGenotypeError: naming the offending cell type and edge.
        """
        if genotype.space != self.name:
            raise IncompatibleGenotypeError(f"genotype is for space {genotype.space!r}, not {self.name!r}")
        cells = self.cells()
        missing = sorted(set(cells) - set(genotype.cells))
        extra = sorted(set(genotype.cells) - set(cells))
        if missing or extra:
            raise IncompatibleGenotypeError(
                f"genotype cell types {sorted(genotype.cells)} do not match space {self.name!r} "
                f"cell types {list(cells)} (missing {missing}, unexpected {extra})"
            )
        for ct, spec in cells.items():
            cg = genotype.cells[ct]
            for e in cg.edges:
                where = f"cell {ct!r} edge ({e.src}, {e.dst}, {e.op!r})"
                if (e.src, e.dst) not in spec.edge_index:
                    raise IncompatibleGenotypeError(
                        f"{where}: ({e.src}, {e.dst}) is not an edge of space {self.name!r} "
                        f"(nodes {spec.num_inputs}..{spec.num_inputs + spec.num_nodes - 1}, "
                        f"inputs 0..{spec.num_inputs - 1})"
                    )
                if e.op not in spec.ops or e.op == "none":
                    valid = [o for o in spec.ops if o != "none"]
                    raise IncompatibleGenotypeError(
                        f"{where}: unknown op {e.op!r}; valid ops: {', '.join(valid)}"
                    )
            if len(set(cg.edges)) != len(cg.edges):
                raise IncompatibleGenotypeError(f"cell {ct!r}: duplicate (src, dst, op) entries")
            for node in cg.concat:
                if node < 0 or node >= spec.num_inputs + spec.num_nodes:
                    raise IncompatibleGenotypeError(f"cell {ct!r}: concat node {node} is out of range")
                if spec.reduction and node < spec.num_inputs:
                    raise IncompatibleGenotypeError(
                        f"cell {ct!r}: concat node {node} is a cell input, which a reduction cell cannot "
                        f"output (other resolution); valid: nodes {spec.num_inputs}.."
                        f"{spec.num_inputs + spec.num_nodes - 1}"
                    )
            if len(set(cg.concat)) != len(cg.concat):
                raise IncompatibleGenotypeError(f"cell {ct!r}: concat {list(cg.concat)} names a node twice")
            if spec.max_in_degree is not None:
                for node in spec.nodes:
                    deg = len(cg.inputs_of(node))
                    if deg > spec.max_in_degree:
                        raise IncompatibleGenotypeError(
                            f"cell {ct!r} node {node}: {deg} inputs, at most {spec.max_in_degree} allowed"
                        )
            self._validate_reachability(ct, spec, cg)

    def _validate_reachability(self, ct: str, spec: CellSpec, cg: Any) -> None:
        """Every concat node that is an intermediate node must have at least one input."""
        for node in cg.concat:
            if node >= spec.num_inputs and not cg.inputs_of(node):
                raise IncompatibleGenotypeError(
                    f"cell {ct!r}: node {node} is part of the cell output but has no input edge"
                )


#: Search spaces by name: classes (or factories) returning a :class:`SearchSpace`; ``SPACES.build("darts")``.
SPACES: Registry[Callable[..., SearchSpace]] = Registry("search space")
