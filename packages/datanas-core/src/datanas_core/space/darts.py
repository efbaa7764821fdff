"""The DARTS CNN cell space (methods.md §1.1) and its extended variant.

Two cell types, ``normal`` and ``reduce``, each a dense DAG with 2 input nodes (the outputs of the two
previous cells) and ``steps`` intermediate nodes (4: 14 edges); the cell output concatenates the last
``multiplier`` nodes. Reduction cells stride the edges that leave the input nodes and double the channels;
they sit at ``layers // 3`` and ``2 * layers // 3``.

* ``"darts"`` (:class:`DartsSpace`): derived genotypes keep exactly 2 ``(input, op)`` pairs per node (the
  DARTS, PC-DARTS, DrNAS, GDAS, SNAS and E2NAS cells). The two pairs may share an edge: GDAS-style "top-2
  pairs" derivation and the published E2NAS cell do that, and the evaluation network does not care.
* ``"darts_ext"`` (:class:`DartsExtSpace`): any number of pairs per node and several ops per edge (DATA with
  M > 1, EnTranNAS-DST). It accepts ``"darts"`` genotypes too.

The supernet (:class:`DartsSuperNet`) owns no architecture parameters: ``forward(x, arch)`` reads one
:class:`~datanas_core.sample.CellSample` per cell type. The derived network (:class:`DartsNetwork`) is
DARTS' ``NetworkCIFAR`` / ``NetworkImageNet`` generalised to any list of ``(input, op)`` pairs per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype, Genotype
from datanas_core.ops import OPS, FactorizedReduce, ReLUConvBN, build_op, out_size, with_pool_bn
from datanas_core.sample import ArchSample
from datanas_core.space._common import (
    DerivedNetMixin,
    SuperNetMixin,
    build_search_edges,
    missing_cell_types,
    mixed_node_sum,
    prepare_cell_sample,
    run_cell,
    zero_node,
)
from datanas_core.space.base import SPACES, CellSpec, SearchSpace
from datanas_core.space.mixed import PreparedCellSample
from datanas_core.space.networks import AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet, drop_path, op_cost

__all__ = [
    "DARTS_OPS",
    "DRNAS_OPS",
    "DartsCell",
    "DartsExtSpace",
    "DartsNetwork",
    "DartsSearchCell",
    "DartsSpace",
    "DartsSuperNet",
]

#: DARTS' candidate ops in column order (index 0 is ``none``, which several codes exclude by index).
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: DrNAS' DARTS-space candidates: DARTS' without ``none``.
DRNAS_OPS: tuple[str, ...] = DARTS_OPS[1:]

_NUM_INPUTS = 2


def _reduction_layers(layers: int) -> tuple[int, int]:
    return layers // 3, 2 * layers // 3


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


class DartsSpace(SearchSpace):
    """The DARTS CNN cell space.

    Args:
        ops: candidate op names in column order (default :data:`DARTS_OPS`; DrNAS uses :data:`DRNAS_OPS`).
        steps: intermediate nodes per cell.
        multiplier: how many of the last intermediate nodes form the cell output.
        extended: variable in-degree and several ops per edge in derived genotypes (space ``"darts_ext"``).

    Raises:
        UnknownNameError: an op is not registered in :data:`~datanas_core.ops.OPS`.
        ConfigError: empty or repeated ops, or bad ``steps`` / ``multiplier``.
    """

    name = "darts"
    default_rule = "topk_edges"

    def __init__(
        self,
        ops: Sequence[str] | None = None,
        *,
        steps: int = 4,
        multiplier: int = 4,
        extended: bool = False,
    ) -> None:
        ops = tuple(DARTS_OPS if ops is None else ops)
        if not ops:
            raise ConfigError("ops must not be empty")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"ops must be distinct, got {list(ops)}")
        for op in ops:
            OPS.get(op)
        _check_positive(steps=steps, multiplier=multiplier)
        if multiplier > steps:
            raise ConfigError(f"multiplier ({multiplier}) cannot exceed steps ({steps})")
        self.name = "darts_ext" if extended else "darts"
        self.ops = ops
        self.steps = steps
        self.multiplier = multiplier
        self.extended = extended
        concat = tuple(range(_NUM_INPUTS + steps - multiplier, _NUM_INPUTS + steps))
        self._cells = {
            ct: CellSpec.dense(ct, _NUM_INPUTS, steps, ops, concat=concat, reduction=ct == "reduce")
            for ct in ("normal", "reduce")
        }
        self._cost_cache: dict[tuple[Any, ...], dict[str, Tensor]] = {}

    @property
    def strict(self) -> bool:
        """Classic DARTS genotypes: exactly 2 ``(input, op)`` pairs per intermediate node."""
        return not self.extended

    def cells(self) -> Mapping[str, CellSpec]:
        return dict(self._cells)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "ops": list(self.ops), "steps": self.steps, "multiplier": self.multiplier}

    def validate(self, genotype: Genotype) -> None:
        """Check ``genotype`` against the space (ops, edges, concat; 2 pairs per node unless extended).

        Raises:
            IncompatibleGenotypeError: naming the cell type and the offending edge or node.
        """
        if self.extended and genotype.space == "darts":
            genotype = Genotype(self.name, genotype.cells, genotype.schema_version, genotype.meta)
        super().validate(genotype)
        if self.strict:
            for ct, spec in self._cells.items():
                cg = genotype.cells[ct]
                for node in spec.nodes:
                    deg = len(cg.inputs_of(node))
                    if deg != 2:
                        raise IncompatibleGenotypeError(
                            f"cell {ct!r} node {node}: {deg} inputs; space 'darts' keeps exactly 2 "
                            f"(input, op) pairs per node (use space 'darts_ext' for any number)"
                        )

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        pool_bn: bool = True,
        checkpoint_cells: bool = False,
    ) -> DartsSuperNet:
        """The weight-sharing search network (non-affine BN; ``pool_bn``: BN after each pooling op;
        ``checkpoint_cells``: recompute every cell in backward, less memory for about one more forward)."""
        return DartsSuperNet(
            self,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            pool_bn=pool_bn,
            checkpoint_cells=checkpoint_cells,
        )

    def build_derived(  # type: ignore[override]
        self,
        genotype: Genotype,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        stem: str = "cifar",
        stem_multiplier: int = 3,
        pool_bn: bool = False,
    ) -> DartsNetwork:
        """The evaluation network of ``genotype`` (validated first).

        Args:
            stem: ``"cifar"`` (3x3 conv to ``stem_multiplier * C``) or ``"imagenet"`` (two stride-2 stems).
            auxiliary: add DARTS' auxiliary head after cell ``2 * layers // 3``.
            drop_path_prob: initial value of the network's ``drop_path_prob`` attribute.
            pool_bn: BatchNorm after pooling ops (DrNAS' evaluation cells have it; DARTS' do not).
        """
        self.validate(genotype)
        return DartsNetwork(
            genotype,
            self,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_channels,
            auxiliary=auxiliary,
            drop_path_prob=drop_path_prob,
            stem=stem,
            stem_multiplier=stem_multiplier,
            pool_bn=pool_bn,
        )

    def edge_costs(
        self,
        metric: str = "params",
        *,
        C: int = 16,
        layers: int = 8,
        input_size: int = 32,
    ) -> dict[str, Tensor]:
        """``[E, K]`` cost of each op on each edge, summed over the cells of each type.

        Costs are those of the ops as built in an evaluation network (affine BN, no post-pool BN) inside a
        supernet of width ``C`` and ``layers`` cells on ``input_size`` x ``input_size`` inputs (CIFAR stem);
        ``"params"`` counts parameters, ``"flops"`` multiply-adds of convolutions. ``none`` costs 0.

        Raises:
            ConfigError: unknown ``metric``.
        """
        if metric not in ("params", "flops"):
            raise ConfigError(f"unknown cost metric {metric!r}; valid metrics: flops, params")
        key = (metric, C, layers, input_size)
        if key not in self._cost_cache:
            op_cache: dict[tuple[Any, ...], float] = {}
            totals = {ct: torch.zeros(spec.num_edges, spec.num_ops) for ct, spec in self._cells.items()}
            size, C_curr = input_size, C
            for i in range(layers):
                reduction = i in _reduction_layers(layers)
                if reduction:
                    C_curr *= 2
                spec = self._cells["reduce" if reduction else "normal"]
                inner = out_size(size, 2) if reduction else size
                for e, (src, _dst) in enumerate(spec.edges):
                    from_input = src < spec.num_inputs
                    stride = 2 if reduction and from_input else 1
                    in_size = size if from_input else inner
                    for k, op in enumerate(spec.ops):
                        totals[spec.cell_type][e, k] += op_cost(
                            op, C_curr, C_curr, stride, in_size, metric, op_cache
                        )
                size = inner
            self._cost_cache[key] = totals
        return {ct: t.clone() for ct, t in self._cost_cache[key].items()}


class DartsExtSpace(DartsSpace):
    """The extended DARTS space ``"darts_ext"``: any number of ``(input, op)`` pairs per node."""

    name = "darts_ext"

    def __init__(self, ops: Sequence[str] | None = None, *, steps: int = 4, multiplier: int = 4) -> None:
        super().__init__(ops, steps=steps, multiplier=multiplier, extended=True)


SPACES.register("darts", DartsSpace)
SPACES.register("darts_ext", DartsExtSpace)


# ----------------------------------------------------------------------------------------------------------
# Search supernet
# ----------------------------------------------------------------------------------------------------------


def _preprocess(
    C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool
) -> tuple[nn.Module, nn.Module]:
    pre0: nn.Module
    if reduction_prev:
        pre0 = FactorizedReduce(C_pp, C, 2, affine=affine)
    else:
        pre0 = ReLUConvBN(C_pp, C, 1, affine=affine)
    return pre0, ReLUConvBN(C_p, C, 1, affine=affine)


#: ``make_cell(index, cell_type, C_pp, C_p, C, reduction_prev)``: one cell of a DARTS network.
CellFactory = Callable[[int, str, int, int, int, bool], nn.Module]


def _darts_cells(
    layers: int,
    C: int,
    C_in: int,
    make_cell: CellFactory,
    feature_info: list[dict[str, Any]],
    *,
    reduction_prev: bool = False,
    red: int = 1,
) -> nn.ModuleList:
    """The ``layers`` cells of a DARTS network after a stem of ``C_in`` channels and output stride ``red``.

    Reduction cells (at ``layers // 3`` and ``2 * layers // 3``) double the channels; each cell's output
    (``cell.multiplier * C`` channels) is appended to ``feature_info``.
    """
    cells = nn.ModuleList()
    C_pp, C_p, C_curr = C_in, C_in, C
    for i in range(layers):
        reduction = i in _reduction_layers(layers)
        if reduction:
            C_curr *= 2
            red *= 2
        cell = make_cell(i, "reduce" if reduction else "normal", C_pp, C_p, C_curr, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        C_pp, C_p = C_p, cell.multiplier * C_curr
        feature_info.append({"num_chs": C_p, "reduction": red, "module": f"cells.{i}"})
    return cells


class DartsSearchCell(nn.Module):
    """A supernet cell: a :class:`MixedOp` per edge, non-affine BN, inputs preprocessed to ``C`` channels."""

    def __init__(
        self, spec: CellSpec, C_pp: int, C_p: int, C: int, reduction_prev: bool, *, pool_bn: bool = True
    ) -> None:
        super().__init__()
        self.cell_type = spec.cell_type
        self.reduction = spec.reduction
        self.C = C
        self.preprocess0, self.preprocess1 = _preprocess(C_pp, C_p, C, reduction_prev, affine=False)
        self.edges = build_search_edges(spec, C, pool_bn=pool_bn)
        self._nodes: list[list[tuple[int, int]]] = [
            [(e, spec.edges[e][0]) for e in spec.in_edges(node)] for node in spec.nodes
        ]
        self._concat = spec.concat
        self.multiplier = len(spec.concat)

    def forward(self, s0: Tensor, s1: Tensor, prep: PreparedCellSample) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        shared: dict[Any, Any] = {}
        for in_edges in self._nodes:
            acc = mixed_node_sum(self.edges, in_edges, states, prep, shared)
            states.append(zero_node(states[1], self.C, 2 if self.reduction else 1) if acc is None else acc)
        return torch.cat([states[i] for i in self._concat], dim=1)


class DartsSearchNetBase(SuperNetMixin, nn.Module):
    """Stem, cells, head and forward pass shared by the DARTS-space supernets.

    Subclasses build the body with :meth:`_init_body` and implement ``prepare(arch)``, returning what the
    cells of each cell type consume in one forward pass (``cell(s0, s1, prepared[cell.cell_type])``).
    """

    cells: nn.ModuleList
    _cell_types: list[str]
    #: recompute each cell in backward instead of keeping its activations (see
    #: :func:`~datanas_core.space._common.run_cell`)
    checkpoint_cells: bool = False
    #: run in channels-last memory layout on CPU (the input is converted before the stem): depthwise,
    #: pointwise and dense convolutions, pooling and BatchNorm are several times faster there than in
    #: PyTorch's default layout; the same function (values equal up to rounding)
    channels_last: bool = True

    def _init_body(
        self,
        C: int,
        layers: int,
        num_classes: int,
        in_channels: int,
        stem_multiplier: int,
        make_cell: CellFactory,
    ) -> None:
        """Stem (``stem_multiplier * C`` channels), ``layers`` cells from ``make_cell``, classifier head."""
        self.num_classes = num_classes
        C_stem = stem_multiplier * C
        self._init_stem(in_channels, C_stem)
        self.cells = _darts_cells(layers, C, C_stem, make_cell, self.feature_info)
        self._cell_types = sorted({c.cell_type for c in self.cells})
        self._init_head(self.feature_info[-1]["num_chs"], num_classes)

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> Mapping[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _stages(self, x: Tensor, arch: ArchSample) -> Iterator[Tensor]:
        prep = self.prepare(arch)
        if self.channels_last and x.device.type == "cpu" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        yield s1
        for cell in self.cells:
            s0, s1 = s1, run_cell(self, cell, s0, s1, prep[cell.cell_type])
            yield s1


class DartsSuperNet(DartsSearchNetBase):
    """DARTS' search network: stem, ``layers`` search cells, global pooling, linear classifier.

    ``forward(x, arch)`` uses ``arch[cell.cell_type]`` for every cell; all cells of one type share the sample.
    """

    def __init__(
        self,
        space: DartsSpace,
        *,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        pool_bn: bool = True,
        checkpoint_cells: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(C=C, layers=layers, in_channels=in_channels, stem_multiplier=stem_multiplier)
        self.checkpoint_cells = bool(checkpoint_cells)
        self.space_config = space.config()
        self._specs = space.cells()

        def make_cell(i: int, ct: str, C_pp: int, C_p: int, C_curr: int, reduction_prev: bool) -> nn.Module:
            return DartsSearchCell(self._specs[ct], C_pp, C_p, C_curr, reduction_prev, pool_bn=pool_bn)

        self._init_body(C, layers, num_classes, in_channels, stem_multiplier, make_cell)

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> dict[str, PreparedCellSample]:
        """Split ``arch`` once per forward (shape checks included).

        Raises:
            SearchSpaceError: a needed cell type is missing or its matrices have the wrong shape.
        """
        out = {}
        for ct in self._cell_types:
            if ct not in arch:
                raise missing_cell_types(arch, self._cell_types)
            out[ct] = prepare_cell_sample(arch[ct], self._specs[ct])
        return out


# ----------------------------------------------------------------------------------------------------------
# Derived (evaluation) network
# ----------------------------------------------------------------------------------------------------------


class DartsCell(nn.Module):
    """A derived cell: each node sums any list of ``op(input)``; drop-path on non-identity ops in training."""

    def __init__(
        self,
        cell: CellGenotype,
        steps: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        *,
        pool_bn: bool = False,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.C = C
        self.preprocess0, self.preprocess1 = _preprocess(C_pp, C_p, C, reduction_prev, affine=True)
        self.ops = nn.ModuleList()
        self.edge_keys: list[tuple[int, int, str]] = []
        self._nodes: list[list[tuple[int, int]]] = []
        identity: list[bool] = []
        for node in range(_NUM_INPUTS, _NUM_INPUTS + steps):
            entries = []
            for e in cell.inputs_of(node):
                stride = 2 if reduction and e.src < _NUM_INPUTS else 1
                op = build_op(e.op, C, C, stride, affine=True)
                if pool_bn:
                    op = with_pool_bn(e.op, op, C)
                entries.append((len(self.ops), e.src))
                identity.append(isinstance(op, nn.Identity))
                self.ops.append(op)
                self.edge_keys.append((e.src, e.dst, e.op))
            self._nodes.append(entries)
        self._identity = tuple(identity)
        self._concat = cell.concat
        self.multiplier = len(cell.concat)

    def forward(
        self, s0: Tensor, s1: Tensor, drop_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        dropping = self.training and drop_prob > 0.0
        for entries in self._nodes:
            acc: Tensor | None = None
            for i, src in entries:
                h = self.ops[i](states[src])
                if dropping and not self._identity[i]:
                    h = drop_path(h, drop_prob, generator=generator)
                acc = h if acc is None else acc + h
            states.append(zero_node(states[1], self.C, 2 if self.reduction else 1) if acc is None else acc)
        return torch.cat([states[i] for i in self._concat], dim=1)


class DartsNetwork(DerivedNetMixin, nn.Module):
    """DARTS' evaluation network (``NetworkCIFAR`` / ``NetworkImageNet``) for any genotype of the space.

    In training mode with ``auxiliary=True`` ``forward`` returns ``(logits, aux_logits)``, else ``logits``.
    Set ``drop_path_prob`` (and optionally ``drop_path_generator``, a ``torch.Generator`` on the input's
    device) to control drop-path; it is applied to the outputs of non-identity ops during training only.
    """

    def __init__(
        self,
        genotype: Genotype,
        space: DartsSpace,
        *,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        stem: str = "cifar",
        stem_multiplier: int = 3,
        pool_bn: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(C=C, layers=layers, in_channels=in_channels, stem_multiplier=stem_multiplier)
        if stem not in ("cifar", "imagenet"):
            raise ConfigError(f"unknown stem {stem!r}; valid stems: cifar, imagenet")
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
        self.genotype = genotype
        self.num_classes = num_classes
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.drop_path_generator: torch.Generator | None = None
        self.stem_type = stem
        if stem == "cifar":
            C_stem = stem_multiplier * C
            self._init_stem(in_channels, C_stem)
            reduction_prev, red = False, 1
        else:
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
            )
            self.feature_info = [
                {"num_chs": C, "reduction": 4, "module": "stem0"},
                {"num_chs": C, "reduction": 8, "module": "stem1"},
            ]
            C_stem, reduction_prev, red = C, True, 8
        self._num_stems = len(self.feature_info)
        self._aux_cell = 2 * layers // 3

        def make_cell(i: int, ct: str, C_pp: int, C_p: int, C_curr: int, reduction_prev: bool) -> nn.Module:
            cell = genotype.cells[ct]
            reduction = ct == "reduce"
            return DartsCell(cell, space.steps, C_pp, C_p, C_curr, reduction, reduction_prev, pool_bn=pool_bn)

        self.cells = _darts_cells(
            layers, C, C_stem, make_cell, self.feature_info, reduction_prev=reduction_prev, red=red
        )
        if auxiliary:
            head = AuxiliaryHeadCIFAR if stem == "cifar" else AuxiliaryHeadImageNet
            self.auxiliary_head = head(
                self.feature_info[self._num_stems + self._aux_cell]["num_chs"], num_classes
            )
        self._init_head(self.feature_info[-1]["num_chs"], num_classes)

    def _stages(self, x: Tensor) -> Iterator[Tensor]:
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(x)
            yield s1
        else:
            s0 = self.stem0(x)
            yield s0
            s1 = self.stem1(s0)
            yield s1
        p, g = self.drop_path_prob, self.drop_path_generator
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, p, g)
            yield s1

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        want_aux = self.auxiliary and self.training
        aux_at = self._num_stems + self._aux_cell
        aux: Tensor | None = None
        last = x
        for i, feat in enumerate(self._stages(x)):
            last = feat
            if want_aux and i == aux_at:
                aux = self.auxiliary_head(feat)
        logits = self.forward_head(last)
        if want_aux:
            assert aux is not None  # the auxiliary cell index is always < layers
            return logits, aux
        return logits
