"""The NAS-Bench-201 cell space (methods.md §1.2).

One cell type, ``"cell"``: node 0 is the input, nodes 1..3 each sum an edge from every earlier node (6 edges),
and the cell output is node 3. Candidates: ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``.
The network is a 3x3 conv stem (C channels), N cells, a stride-2 ResNet basic block to 2C, N cells, a block to
4C, N cells, then BN-ReLU, global average pooling and a linear classifier. All cells share one genotype.

Genotypes keep one op per edge; ``none`` edges are simply absent (a node may have no input, its value is then
zero). :meth:`NB201Space.to_string` / :meth:`NB201Space.from_string` convert to and from the benchmark's
string form, e.g. the best CIFAR-10 cell
``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``,
where group ``i`` lists the ops into node ``i`` from nodes ``0 .. i-1`` and absent edges print as ``none``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, GenotypeError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.ops import OPS, ResNetBasicBlock, build_op
from datanas_core.sample import ArchSample
from datanas_core.space._common import (
    CellNetwork,
    DerivedNetMixin,
    SuperNetMixin,
    build_search_edges,
    missing_cell_types,
    mixed_node_sum,
    prepare_cell_sample,
    run_cell,
)
from datanas_core.space.base import SPACES, CellSpec, SearchSpace
from datanas_core.space.mixed import PreparedCellSample
from datanas_core.space.networks import op_cost

__all__ = ["NB201_OPS", "NB201Cell", "NB201Network", "NB201SearchCell", "NB201Space", "NB201SuperNet"]

#: NAS-Bench-201's candidate ops in the benchmark's column order.
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

_CELL = "cell"
#: One ``op~input`` token of the canonical string: an ASCII op name, ASCII digits without leading zeros.
_TOKEN = re.compile(r"(?P<op>[A-Za-z_][A-Za-z0-9_]*)~(?P<src>0|[1-9][0-9]*)")


class NB201Space(SearchSpace):
    """The NAS-Bench-201 space.

    Args:
        ops: candidate ops (default :data:`NB201_OPS`).
        num_nodes: computed nodes per cell (3 in the benchmark).
    """

    name = "nb201"
    default_rule = "argmax_edge"

    def __init__(self, ops: Sequence[str] | None = None, *, num_nodes: int = 3) -> None:
        ops = tuple(NB201_OPS if ops is None else ops)
        if not ops or len(set(ops)) != len(ops):
            raise ConfigError(f"ops must be a non-empty list of distinct names, got {list(ops)}")
        for op in ops:
            OPS.get(op)
        if not isinstance(num_nodes, int) or num_nodes < 1:
            raise ConfigError(f"num_nodes must be a positive integer, got {num_nodes!r}")
        self.ops = ops
        self.num_nodes = num_nodes
        self._spec = CellSpec.dense(_CELL, 1, num_nodes, ops, concat=(num_nodes,))
        self._cost_cache: dict[tuple[Any, ...], dict[str, Tensor]] = {}

    def cells(self) -> Mapping[str, CellSpec]:
        return {_CELL: self._spec}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "ops": list(self.ops), "num_nodes": self.num_nodes}

    def validate(self, genotype: Genotype) -> None:
        """Ops and edges must belong to the space, at most one op per edge; nodes without inputs are allowed.

        Raises:
            IncompatibleGenotypeError: naming the offending edge.
        """
        super().validate(genotype)
        cg = genotype.cells[_CELL]
        seen: dict[tuple[int, int], str] = {}
        for e in cg.edges:
            if (e.src, e.dst) in seen:
                raise IncompatibleGenotypeError(
                    f"cell {_CELL!r} edge ({e.src}, {e.dst}) carries two ops ({seen[(e.src, e.dst)]!r} and "
                    f"{e.op!r}); NB201 keeps one op per edge"
                )
            seen[(e.src, e.dst)] = e.op
        if cg.concat != self._spec.concat:
            raise IncompatibleGenotypeError(
                f"cell {_CELL!r}: concat must be {list(self._spec.concat)} (the last node), "
                f"got {list(cg.concat)}"
            )

    def _validate_reachability(self, ct: str, spec: CellSpec, cg: Any) -> None:
        """NB201 cells may have nodes without inputs (their value is zero)."""

    # ------------------------------------------------------------------------------------------------------
    # String form
    # ------------------------------------------------------------------------------------------------------

    def to_string(self, genotype: Genotype) -> str:
        """The benchmark string of ``genotype`` (absent edges print as ``none``)."""
        self.validate(genotype)
        ops = {(e.src, e.dst): e.op for e in genotype.cells[_CELL].edges}
        groups = [
            "|".join(f"{ops.get((j, i), 'none')}~{j}" for j in range(i)) for i in range(1, self.num_nodes + 1)
        ]
        return "|" + "|+|".join(groups) + "|"

    def from_string(self, arch: str) -> Genotype:
        """Parse a benchmark string into a genotype (``none`` edges are dropped).

        Only the canonical form that :meth:`to_string` writes is accepted: ``|op~0|+|op~0|op~1|+...|``, one
        group per node with its inputs in order ``0 .. i-1``, ASCII op names and digits without leading
        zeros, no whitespace. Anything else is an error, never silently normalised.

        Raises:
            GenotypeError: malformed string, naming the bad group or token and the expected form.
            IncompatibleGenotypeError: an op that is not a candidate of this space.
        """
        if not isinstance(arch, str):
            raise GenotypeError(f"NB201 architecture string expected, got {type(arch).__name__}")
        shown = arch if len(arch) <= 120 else arch[:117] + "..."
        form = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        if not arch.isascii() or any(c.isspace() for c in arch):
            raise GenotypeError(
                f"NB201 string {shown!r} contains whitespace or non-ASCII characters; expected the "
                f"canonical form {form}"
            )
        groups = arch.split("+")
        if len(groups) != self.num_nodes:
            raise GenotypeError(
                f"NB201 string {shown!r} has {len(groups)} node group(s) separated by '+', "
                f"expected {self.num_nodes} ({form})"
            )
        edges: list[EdgeChoice] = []
        for i, group in enumerate(groups, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise GenotypeError(f"NB201 node group {group!r} (node {i}) must look like '|op~0|op~1|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != i:
                raise GenotypeError(
                    f"NB201 node group {group!r} (node {i}) has {len(tokens)} token(s), expected {i} "
                    f"(one per input node 0..{i - 1})"
                )
            for j, tok in enumerate(tokens):
                m = _TOKEN.fullmatch(tok)
                if m is None:
                    raise GenotypeError(
                        f"bad NB201 token {tok!r} in node group {i}: expected 'op~{j}' (an op name, '~' and "
                        "the input node in plain digits)"
                    )
                op, src = m.group("op"), int(m.group("src"))
                if src >= i:
                    raise GenotypeError(
                        f"bad NB201 token {tok!r} in node group {i}: input {src} must be < {i}"
                    )
                if src < j:
                    raise GenotypeError(
                        f"bad NB201 token {tok!r} in node group {i}: input {src} appears twice"
                    )
                if src != j:
                    raise GenotypeError(
                        f"bad NB201 token {tok!r} in node group {i}: token {j} must name input {j} "
                        f"(inputs in order 0..{i - 1}), got {src}"
                    )
                if op not in self.ops:
                    raise IncompatibleGenotypeError(
                        f"bad NB201 token {tok!r} in node group {i}: unknown op {op!r}; valid ops: "
                        f"{', '.join(self.ops)}"
                    )
                if op != "none":
                    edges.append(EdgeChoice(src, i, op))
        return Genotype(self.name, {_CELL: CellGenotype(tuple(edges), (self.num_nodes,))})

    # ------------------------------------------------------------------------------------------------------
    # Networks and costs
    # ------------------------------------------------------------------------------------------------------

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        checkpoint_cells: bool = False,
    ) -> NB201SuperNet:
        """The weight-sharing search network (non-affine BN in the cells, no BN after pooling).

        ``checkpoint_cells``: recompute every searchable cell in backward (activation checkpointing: less
        memory, about one more forward pass of time).
        """
        return NB201SuperNet(
            self,
            C=C,
            N=N,
            num_classes=num_classes,
            in_channels=in_channels,
            checkpoint_cells=checkpoint_cells,
        )

    def build_derived(  # type: ignore[override]
        self, genotype: Genotype | str, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3
    ) -> NB201Network:
        """The benchmark network of ``genotype`` (a Genotype or a benchmark string), validated first."""
        if isinstance(genotype, str):
            genotype = self.from_string(genotype)
        self.validate(genotype)
        return NB201Network(genotype, self, C=C, N=N, num_classes=num_classes, in_channels=in_channels)

    def edge_costs(
        self, metric: str = "params", *, C: int = 16, N: int = 5, input_size: int = 32
    ) -> dict[str, Tensor]:
        """``[6, K]`` cost of each op on each edge summed over the 3N cells (evaluation-network ops).

        Raises:
            ConfigError: unknown ``metric``.
        """
        if metric not in ("params", "flops"):
            raise ConfigError(f"unknown cost metric {metric!r}; valid metrics: flops, params")
        key = (metric, C, N, input_size)
        if key not in self._cost_cache:
            cache: dict[tuple[Any, ...], float] = {}
            spec = self._spec
            total = torch.zeros(spec.num_edges, spec.num_ops)
            for stage in range(3):
                C_s, size = C * 2**stage, -(-input_size // 2**stage)
                for e in range(spec.num_edges):
                    for k, op in enumerate(spec.ops):
                        total[e, k] += N * op_cost(op, C_s, C_s, 1, size, metric, cache)
            self._cost_cache[key] = {_CELL: total}
        return {k: v.clone() for k, v in self._cost_cache[key].items()}


SPACES.register("nb201", NB201Space)


def _layout(C: int, N: int) -> list[tuple[int, bool]]:
    """``(channels, is_reduction_block)`` of every layer after the stem."""
    out: list[tuple[int, bool]] = []
    for stage in range(3):
        if stage > 0:
            out.append((C * 2**stage, True))
        out.extend([(C * 2**stage, False)] * N)
    return out


def _nb201_cells(
    C: int, layout: Sequence[tuple[int, bool]], make_cell: Callable[[int, int], nn.Module]
) -> nn.ModuleList:
    """The layers of ``layout`` after a stem of ``C`` channels: a stride-2 ResNet block where ``layout`` says
    so, else ``make_cell(j, C_l)`` for the ``j``-th searchable cell of ``C_l`` channels."""
    cells = nn.ModuleList()
    C_prev, j = C, 0
    for C_l, is_block in layout:
        if is_block:
            cells.append(ResNetBasicBlock(C_prev, C_l, 2))
        else:
            cells.append(make_cell(j, C_l))
            j += 1
        C_prev = C_l
    return cells


class NB201SearchCell(nn.Module):
    """A supernet cell: one :class:`MixedOp` per edge (non-affine BN, pools without BN)."""

    def __init__(self, spec: CellSpec, C: int) -> None:
        super().__init__()
        self.edges = build_search_edges(spec, C)
        self._nodes = [[(e, spec.edges[e][0]) for e in spec.in_edges(node)] for node in spec.nodes]

    def forward(self, x: Tensor, prep: PreparedCellSample) -> Tensor:
        states = [x]
        shared: dict[Any, Any] | None = {} if prep.lean else None  # relu(node) shared by its out-edges
        for in_edges in self._nodes:
            acc = mixed_node_sum(self.edges, in_edges, states, prep, shared)
            states.append(torch.zeros_like(x) if acc is None else acc)
        return states[-1]


class NB201Cell(nn.Module):
    """A derived NB201 cell (affine BN); a node without inputs is zero."""

    def __init__(self, cell: CellGenotype, num_nodes: int, C: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList()
        self.edge_keys: list[tuple[int, int, str]] = []
        self._nodes: list[list[tuple[int, int]]] = []
        for node in range(1, num_nodes + 1):
            entries = []
            for e in cell.inputs_of(node):
                entries.append((len(self.ops), e.src))
                self.ops.append(build_op(e.op, C, C, 1, affine=True))
                self.edge_keys.append((e.src, e.dst, e.op))
            self._nodes.append(entries)

    def forward(self, x: Tensor) -> Tensor:
        states = [x]
        for entries in self._nodes:
            acc: Tensor | None = None
            for i, src in entries:
                h = self.ops[i](states[src])
                acc = h if acc is None else acc + h
            states.append(torch.zeros_like(x) if acc is None else acc)
        return states[-1]


class _NB201Base(CellNetwork, nn.Module):
    """Stem, layout and final BN-ReLU + classifier shared by the NB201 networks."""

    def _init_common(self, C: int, N: int, num_classes: int, in_channels: int) -> list[tuple[int, bool]]:
        for name, v in (("C", C), ("N", N), ("in_channels", in_channels)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.num_classes = num_classes
        layout = self._init_stem_and_layout(C, N, in_channels)
        self._init_final(layout[-1][0], num_classes)
        return layout

    def _init_stem_and_layout(self, C: int, N: int, in_channels: int) -> list[tuple[int, bool]]:
        """The stem, and the ``feature_info`` of the stem and of every layer; returns the layout."""
        self._init_stem(in_channels, C)
        layout = _layout(C, N)
        red = 1
        for i, (C_l, is_block) in enumerate(layout):
            red *= 2 if is_block else 1
            self.feature_info.append({"num_chs": C_l, "reduction": red, "module": f"cells.{i}"})
        return layout

    def _init_final(self, C_last: int, num_classes: int) -> None:
        """The final BN-ReLU and the classifier head."""
        self.num_features = C_last
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_last), nn.ReLU(inplace=False))
        self._init_head(C_last, num_classes)

    def _final(self, x: Tensor) -> Tensor:
        return self.lastact(x)


class NB201SearchNetBase(SuperNetMixin, _NB201Base):
    """The forward pass shared by the NB201 supernets: ``_cell_input(arch)`` is what every searchable cell
    consumes (``cell(x, _cell_input(arch))``); ResNet blocks take ``x`` only."""

    cells: nn.ModuleList
    #: recompute each searchable cell in backward instead of keeping its activations (see
    #: :func:`~datanas_core.space._common.run_cell`)
    checkpoint_cells: bool = False
    #: run in channels-last memory layout on CPU (the input is converted before the stem): dense and 1x1
    #: convolutions and BatchNorm are several times faster there than in PyTorch's default layout at these
    #: sizes; the same function (values equal up to rounding)
    channels_last: bool = True

    def _cell_input(self, arch: ArchSample) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stages(self, x: Tensor, arch: ArchSample) -> Iterator[Tensor]:
        prep = self._cell_input(arch)
        if self.channels_last and x.device.type == "cpu" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        yield x
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResNetBasicBlock) else run_cell(self, cell, x, prep)
            yield x


class NB201SuperNet(NB201SearchNetBase):
    """NB201's search network; ``forward(x, arch)`` uses ``arch["cell"]`` for all 3N cells."""

    def __init__(
        self,
        space: NB201Space,
        *,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        checkpoint_cells: bool = False,
    ):
        super().__init__()
        self.checkpoint_cells = bool(checkpoint_cells)
        self.space_config = space.config()
        self._spec = space.cells()[_CELL]
        layout = self._init_common(C, N, num_classes, in_channels)
        self.cells = _nb201_cells(C, layout, lambda _j, C_l: NB201SearchCell(self._spec, C_l))

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> PreparedCellSample:
        """Split ``arch["cell"]`` once per forward.

        Raises:
            SearchSpaceError: ``arch`` has no ``"cell"`` entry or its matrices are not ``[6, K]``.
        """
        if _CELL not in arch:
            raise missing_cell_types(arch, [_CELL], "the NB201 supernet")
        return prepare_cell_sample(arch[_CELL], self._spec)

    def _cell_input(self, arch: ArchSample) -> PreparedCellSample:
        return self.prepare(arch)


class NB201Network(DerivedNetMixin, _NB201Base):
    """The benchmark network of one NB201 genotype (affine BN everywhere)."""

    def __init__(
        self,
        genotype: Genotype,
        space: NB201Space,
        *,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.genotype = genotype
        layout = self._init_common(C, N, num_classes, in_channels)
        cell = genotype.cells[_CELL]
        self.cells = _nb201_cells(C, layout, lambda _j, C_l: NB201Cell(cell, space.num_nodes, C_l))

    def _stages(self, x: Tensor) -> Iterator[Tensor]:
        x = self.stem(x)
        yield x
        for cell in self.cells:
            x = cell(x)
            yield x

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
