"""EnTranNAS search spaces: the DARTS and NB201 spaces with engine/transit supernets (methods.md §5).

``SPACES`` names ``"entrannas_darts"`` (:class:`EnTranNASDartsSpace`) and ``"entrannas_nb201"``
(:class:`EnTranNASNB201Space`). They are the core DARTS (extended, variable in-degree: ``"darts_ext"``) and
NB201 spaces — same cells, same genotypes (the genotypes they derive are tagged ``"darts_ext"`` / ``"nb201"``
and retrain with the usual evaluation networks) — whose ``build_supernet`` builds an EnTranNAS supernet:

* the first cell of each cell type (configurable, ``engine_cells``) is an **engine** cell: differentiable in
  the sample's weights, it learns the architecture;
* every other cell is a **transit** cell: at every forward pass the supernet derives the architecture from
  the sample's deterministic ``probs`` with the space's rule (default ``"entrannas"``: the DST support for
  the ``"dst"`` estimator, DARTS' top-2 / NB201's argmax for other estimators) and the transit cells run only
  that sub-graph, without ``alpha`` weights and without gradient to ``alpha``;
* candidate ops are shared per source node (``feature_sharing``).

The derivation rule of the space (``space.default_rule``) is the transit rule, so a search that leaves the
rule unset derives at the end exactly the graph the transit cells ran. ``supernet.transit_genotype(arch)``
returns the graph of a given sample.

Example:
    >>> import torch
    >>> from datanas_core import ArchitectureDistribution, get_space
    >>> space = get_space("entrannas_darts")
    >>> net = space.build_supernet(C=4, layers=3, num_classes=3)
    >>> net.roles
    ('engine', 'engine', 'transit')
    >>> dist = ArchitectureDistribution(space, "dst", seed=0)
    >>> net(torch.randn(2, 3, 8, 8), dist.sample()).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from datanas_core.derive import DerivationRule, build_rule
from datanas_core.entrannas.cells import (
    TRANSIT_WEIGHTS,
    CellPlan,
    DartsEnTranNASCell,
    NB201EnTranNASCell,
    TransitPlan,
    resolve_roles,
)
from datanas_core.errors import ConfigError, SearchSpaceError
from datanas_core.genotype import Genotype
from datanas_core.ops import ResNetBasicBlock
from datanas_core.sample import ArchSample
from datanas_core.space.base import SPACES, CellSpec
from datanas_core.space.darts import DartsSpace, _check_positive, _reduction_layers
from datanas_core.space.mixed import PreparedCellSample
from datanas_core.space.nb201 import NB201Network, NB201Space, _layout
from datanas_core.space.networks import CellNetworkMixin

__all__ = [
    "EnTranNASDartsSpace",
    "EnTranNASDartsSuperNet",
    "EnTranNASNB201Space",
    "EnTranNASNB201SuperNet",
]


def _check_options(engine_cells: Any, feature_sharing: Any, transit_weights: Any) -> None:
    if not isinstance(feature_sharing, bool):
        raise ConfigError(f"feature_sharing must be True or False, got {feature_sharing!r}")
    if transit_weights not in TRANSIT_WEIGHTS:
        raise ConfigError(
            f"unknown transit_weights {transit_weights!r}; valid values: {', '.join(TRANSIT_WEIGHTS)}"
        )
    if isinstance(engine_cells, str) and engine_cells not in ("first", "last", "all"):
        raise ConfigError(
            f"unknown engine_cells {engine_cells!r}; valid: 'first', 'last', 'all', an int or a list of "
            "cell indices"
        )


class _PlanMixin:
    """Per-forward planning shared by the EnTranNAS supernets: split the sample for engine cells, derive the
    sub-graph for transit cells."""

    _specs: dict[str, CellSpec]
    _engine_types: frozenset[str]
    _transit_types: frozenset[str]
    _cell_types: list[str]
    transit_rule: DerivationRule
    _one_op_per_edge: bool = False

    def transit_genotype(self, arch: ArchSample | Mapping[str, Any]) -> dict[str, Any]:
        """The cells the transit cells run under ``arch``: the rule applied to the sample's detached probs."""
        self._check_types(arch)
        probs = {ct: arch[ct].probs.detach() for ct in self._cell_types}
        cells = self.transit_rule(probs, {ct: self._specs[ct] for ct in self._cell_types})
        if self._one_op_per_edge:
            for ct, cg in cells.items():
                seen: set[tuple[int, int]] = set()
                for e in cg.edges:
                    if (e.src, e.dst) in seen:
                        raise ConfigError(
                            f"cell type {ct!r}: rule {self.transit_rule.name!r} keeps several ops on edge "
                            f"({e.src}, {e.dst}), which NB201 does not allow; use the rule 'entrannas_nb201' "
                            "(the space's default) or the 'dst' estimator with ops_per_edge=1"
                        )
                    seen.add((e.src, e.dst))
        return cells

    def _check_types(self, arch: ArchSample | Mapping[str, Any]) -> None:
        missing = [ct for ct in self._cell_types if ct not in arch]
        if missing:
            raise SearchSpaceError(
                f"arch sample has cell types {sorted(arch)}, the supernet needs {self._cell_types}"
            )

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> dict[str, CellPlan]:
        """Split ``arch`` for the engine cells and derive the transit sub-graphs (once per forward).

        Raises:
            SearchSpaceError: a needed cell type is missing or its matrices have the wrong shape.
            ConfigError: (NB201) the derived graph has an edge with several ops.
        """
        self._check_types(arch)
        genes = self.transit_genotype(arch) if self._transit_types else {}
        plans = {}
        for ct in self._cell_types:
            spec = self._specs[ct]
            prep = None
            if ct in self._engine_types or self._needs_prep_for_transit:
                prep = PreparedCellSample.from_sample(
                    arch[ct], spec.ops, spec.num_edges, where=f"cell type {ct!r}"
                )
            transit = TransitPlan.from_genotype(genes[ct], spec) if ct in self._transit_types else None
            plans[ct] = CellPlan(prep, transit)
        return plans

    @property
    def _needs_prep_for_transit(self) -> bool:
        return getattr(self, "transit_weights", "none") == "detached"


class EnTranNASDartsSuperNet(_PlanMixin, CellNetworkMixin, nn.Module):
    """DARTS' search network with EnTranNAS cells: stem, ``layers`` cells, global pooling, classifier.

    ``forward(x, arch)``: engine cells use ``arch[cell_type]`` weights; transit cells run
    ``transit_genotype(arch)``. Same stem, reductions (``layers // 3``, ``2 * layers // 3``), channel plan
    and timm-style API (``feature_info``, ``forward_features``, ``forward_intermediates``) as
    :class:`~datanas_core.space.darts.DartsSuperNet`.

    Attributes:
        roles: role of each cell (``"engine"`` / ``"transit"``).
        transit_rule: the derivation rule of the transit cells.
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
        engine_cells: str | int | Sequence[int] = "first",
        feature_sharing: bool = True,
        transit_weights: str = "none",
        rule: str | Mapping[str, Any] | DerivationRule = "entrannas",
    ) -> None:
        super().__init__()
        _check_positive(C=C, layers=layers, in_channels=in_channels, stem_multiplier=stem_multiplier)
        _check_options(engine_cells, feature_sharing, transit_weights)
        self.space_config = space.config()
        self._specs = dict(space.cells())
        self.num_classes = num_classes
        self.transit_rule = build_rule(rule)
        self.transit_weights = transit_weights
        self.feature_sharing = feature_sharing
        reductions = _reduction_layers(layers)
        types = ["reduce" if i in reductions else "normal" for i in range(layers)]
        self.roles = resolve_roles(types, engine_cells)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        self.feature_info: list[dict[str, Any]] = [{"num_chs": C_curr, "reduction": 1, "module": "stem"}]
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        red = 1
        for i, ct in enumerate(types):
            reduction = ct == "reduce"
            if reduction:
                C_curr *= 2
                red *= 2
            cell = DartsEnTranNASCell(
                self._specs[ct],
                C_pp,
                C_p,
                C_curr,
                reduction_prev,
                role=self.roles[i],
                feature_sharing=feature_sharing,
                pool_bn=pool_bn,
                transit_weights=transit_weights,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            self.feature_info.append({"num_chs": C_p, "reduction": red, "module": f"cells.{i}"})
        self._cell_types = sorted(set(types))
        self._engine_types = frozenset(t for t, r in zip(types, self.roles, strict=True) if r == "engine")
        self._transit_types = frozenset(t for t, r in zip(types, self.roles, strict=True) if r == "transit")
        self.num_features = C_p
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier: nn.Module = nn.Linear(C_p, num_classes) if num_classes > 0 else nn.Identity()

    def _stages(self, x: Tensor, arch: ArchSample) -> Iterator[Tensor]:
        plans = self.prepare(arch)
        s0 = s1 = self.stem(x)
        yield s1
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, plans[cell.cell_type])
            yield s1

    def forward_features(self, x: Tensor, arch: ArchSample) -> Tensor:
        """Output of the last cell."""
        return self._features(x, arch)

    def forward(self, x: Tensor, arch: ArchSample) -> Tensor:
        """Logits under ``arch`` (engine cells weighted by it, transit cells running its derived graph)."""
        return self.forward_head(self.forward_features(x, arch))

    def forward_intermediates(
        self,
        x: Tensor,
        arch: ArchSample,
        indices: int | Sequence[int] | None = None,
        *,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stem and per-cell feature maps (``feature_info`` order), timm-style."""
        return self._intermediates(x, (arch,), indices, stop_early, output_fmt, intermediates_only)

    def weight_parameters(self) -> list[nn.Parameter]:
        """All parameters (architecture parameters never live in the supernet)."""
        return list(self.parameters())


class EnTranNASNB201SuperNet(_PlanMixin, CellNetworkMixin, nn.Module):
    """NB201's search network with EnTranNAS cells (3N cells; ResNet blocks between the stages).

    ``engine_cells`` indexes the 3N searchable cells (default: the first). Derived graphs must keep at most
    one op per edge (NB201 genotypes); a rule that does not raises :class:`ConfigError`.
    """

    _one_op_per_edge = True

    def __init__(
        self,
        space: NB201Space,
        *,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        engine_cells: str | int | Sequence[int] = "first",
        feature_sharing: bool = True,
        transit_weights: str = "none",
        rule: str | Mapping[str, Any] | DerivationRule = "entrannas_nb201",
    ) -> None:
        super().__init__()
        for name, v in (("C", C), ("N", N), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        _check_options(engine_cells, feature_sharing, transit_weights)
        self.space_config = space.config()
        self._specs = dict(space.cells())
        (ct,) = self._specs
        self.num_classes = num_classes
        self.transit_rule = build_rule(rule)
        self.transit_weights = transit_weights
        self.feature_sharing = feature_sharing
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.feature_info: list[dict[str, Any]] = [{"num_chs": C, "reduction": 1, "module": "stem"}]
        layout = _layout(C, N)
        n_cells = sum(1 for _, is_block in layout if not is_block)
        self.roles = resolve_roles([ct] * n_cells, engine_cells)
        self.cells = nn.ModuleList()
        C_prev, red, j = C, 1, 0
        for i, (C_l, is_block) in enumerate(layout):
            if is_block:
                red *= 2
                self.cells.append(ResNetBasicBlock(C_prev, C_l, 2))
            else:
                self.cells.append(
                    NB201EnTranNASCell(
                        self._specs[ct],
                        C_l,
                        role=self.roles[j],
                        feature_sharing=feature_sharing,
                        transit_weights=transit_weights,
                    )
                )
                j += 1
            self.feature_info.append({"num_chs": C_l, "reduction": red, "module": f"cells.{i}"})
            C_prev = C_l
        self._cell_types = [ct]
        self._engine_types = frozenset([ct])
        self._transit_types = frozenset([ct]) if "transit" in self.roles else frozenset()
        self.num_features = C_prev
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=False))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier: nn.Module = nn.Linear(C_prev, num_classes) if num_classes > 0 else nn.Identity()

    def _final(self, x: Tensor) -> Tensor:
        return self.lastact(x)

    def _stages(self, x: Tensor, arch: ArchSample) -> Iterator[Tensor]:
        plan = self.prepare(arch)[self._cell_types[0]]
        x = self.stem(x)
        yield x
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResNetBasicBlock) else cell(x, plan)
            yield x

    def forward_features(self, x: Tensor, arch: ArchSample) -> Tensor:
        """Last cell output after the final BN-ReLU."""
        return self._features(x, arch)

    def forward(self, x: Tensor, arch: ArchSample) -> Tensor:
        return self.forward_head(self.forward_features(x, arch))

    def forward_intermediates(
        self,
        x: Tensor,
        arch: ArchSample,
        indices: int | Sequence[int] | None = None,
        *,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stem, cell and block outputs (``feature_info`` order), timm-style."""
        return self._intermediates(x, (arch,), indices, stop_early, output_fmt, intermediates_only)

    def weight_parameters(self) -> list[nn.Parameter]:
        """All parameters (architecture parameters never live in the supernet)."""
        return list(self.parameters())


def _entrannas_config(space: Any) -> dict[str, Any]:
    return {
        "method": "entrannas",
        "engine_cells": space.engine_cells
        if isinstance(space.engine_cells, (str, int))
        else list(space.engine_cells),
        "feature_sharing": space.feature_sharing,
        "transit_weights": space.transit_weights,
        "rule": space.default_rule,
    }


class EnTranNASDartsSpace(DartsSpace):
    """The DARTS CNN space searched the EnTranNAS way (registered as ``"entrannas_darts"``).

    Cells, genotypes, validation, derived networks and cost tables are those of
    :class:`~datanas_core.space.darts.DartsSpace` (``extended=True``: ``"darts_ext"``, any in-degree, what
    DST derives; ``extended=False``: ``"darts"``, for the top-2 rule). Only the supernet differs.

    Args:
        ops, steps, multiplier, extended: see :class:`~datanas_core.space.darts.DartsSpace`.
        engine_cells: which cells are engine cells (see :func:`~datanas_core.entrannas.cells.resolve_roles`;
            default ``"first"``: the first normal and the first reduction cell). Unknown in the paper.
        feature_sharing: share candidate ops per source node (EnTranNAS) instead of per edge.
        transit_weights: ``"none"`` (transit cells sum their derived pairs, default) or ``"detached"``.
        rule: derivation rule of the transit cells and default rule of the search (``"entrannas"``).

    Raises:
        ConfigError: invalid options.
    """

    def __init__(
        self,
        ops: Sequence[str] | None = None,
        *,
        steps: int = 4,
        multiplier: int = 4,
        extended: bool = True,
        engine_cells: str | int | Sequence[int] = "first",
        feature_sharing: bool = True,
        transit_weights: str = "none",
        rule: str = "entrannas",
    ) -> None:
        super().__init__(ops, steps=steps, multiplier=multiplier, extended=extended)
        _check_options(engine_cells, feature_sharing, transit_weights)
        build_rule(rule)
        self.engine_cells = engine_cells
        self.feature_sharing = feature_sharing
        self.transit_weights = transit_weights
        self.default_rule = rule

    def config(self) -> dict[str, Any]:
        return {**super().config(), **_entrannas_config(self)}

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        pool_bn: bool = True,
        engine_cells: str | int | Sequence[int] | None = None,
        feature_sharing: bool | None = None,
        transit_weights: str | None = None,
    ) -> EnTranNASDartsSuperNet:
        """The EnTranNAS search network (engine/transit options default to the space's)."""
        return EnTranNASDartsSuperNet(
            self,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            pool_bn=pool_bn,
            engine_cells=self.engine_cells if engine_cells is None else engine_cells,
            feature_sharing=self.feature_sharing if feature_sharing is None else feature_sharing,
            transit_weights=self.transit_weights if transit_weights is None else transit_weights,
            rule=self.default_rule,
        )


class EnTranNASNB201Space(NB201Space):
    """The NB201 space searched the EnTranNAS way (registered as ``"entrannas_nb201"``).

    Cells, genotypes (``"nb201"``: one op per edge), string form and derived networks are NB201's. With the
    ``"dst"`` estimator the default rule ``"entrannas_nb201"`` keeps the DST topology (the engine's surviving
    edges) and each edge's largest surviving op; ``--estimator-option ops_per_edge=1`` makes the engine
    itself keep one op per edge, so ops coincide too (but then a node with a single in-edge, NB201's node 1,
    has a constant weight and its op is never learned). ``layers`` is accepted as an alias of ``N`` by the
    network builders (domain CLIs pass ``layers`` for non-NB201 spaces).

    Args:
        ops, num_nodes: see :class:`~datanas_core.space.nb201.NB201Space`.
        engine_cells, feature_sharing, transit_weights: see :class:`EnTranNASDartsSpace` (``engine_cells``
            indexes the 3N searchable cells; default: the first).
        rule: transit and default derivation rule (``"entrannas_nb201"``: DST support or argmax per edge).
    """

    def __init__(
        self,
        ops: Sequence[str] | None = None,
        *,
        num_nodes: int = 3,
        engine_cells: str | int | Sequence[int] = "first",
        feature_sharing: bool = True,
        transit_weights: str = "none",
        rule: str = "entrannas_nb201",
    ) -> None:
        super().__init__(ops, num_nodes=num_nodes)
        _check_options(engine_cells, feature_sharing, transit_weights)
        build_rule(rule)
        self.engine_cells = engine_cells
        self.feature_sharing = feature_sharing
        self.transit_weights = transit_weights
        self.default_rule = rule

    def config(self) -> dict[str, Any]:
        return {**super().config(), **_entrannas_config(self)}

    @staticmethod
    def _resolve_N(N: int | None, layers: int | None) -> int:
        if N is not None and layers is not None and N != layers:
            raise ConfigError(f"give the cells per stage once: N={N} and its alias layers={layers} differ")
        return N if N is not None else (layers if layers is not None else 5)

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        N: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        layers: int | None = None,
        engine_cells: str | int | Sequence[int] | None = None,
        feature_sharing: bool | None = None,
        transit_weights: str | None = None,
    ) -> EnTranNASNB201SuperNet:
        """The EnTranNAS NB201 search network (``layers`` = alias of ``N``)."""
        return EnTranNASNB201SuperNet(
            self,
            C=C,
            N=self._resolve_N(N, layers),
            num_classes=num_classes,
            in_channels=in_channels,
            engine_cells=self.engine_cells if engine_cells is None else engine_cells,
            feature_sharing=self.feature_sharing if feature_sharing is None else feature_sharing,
            transit_weights=self.transit_weights if transit_weights is None else transit_weights,
            rule=self.default_rule,
        )

    def build_derived(  # type: ignore[override]
        self,
        genotype: Genotype | str,
        C: int = 16,
        N: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        layers: int | None = None,
    ) -> NB201Network:
        """The benchmark network of ``genotype`` (``layers`` = alias of ``N``)."""
        return super().build_derived(
            genotype, C=C, N=self._resolve_N(N, layers), num_classes=num_classes, in_channels=in_channels
        )


SPACES.register("entrannas_darts", EnTranNASDartsSpace)
SPACES.register("entrannas_nb201", EnTranNASNB201Space)
