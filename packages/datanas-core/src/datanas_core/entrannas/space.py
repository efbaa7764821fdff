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

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from datanas_core.derive import DerivationRule, build_rule
from datanas_core.entrannas.cells import (
    TRANSIT_WEIGHTS,
    CellPlan,
    DartsEnTranNASCell,
    NB201EnTranNASCell,
    TransitPlan,
    resolve_roles,
)
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.space._common import missing_cell_types, prepare_cell_sample
from datanas_core.space.base import SPACES, CellSpec
from datanas_core.space.darts import DartsSearchNetBase, DartsSpace, _check_positive, _reduction_layers
from datanas_core.space.nb201 import NB201Network, NB201SearchNetBase, NB201Space, _nb201_cells

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
            raise missing_cell_types(arch, self._cell_types)

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
                prep = prepare_cell_sample(arch[ct], spec)
            transit = TransitPlan.from_genotype(genes[ct], spec) if ct in self._transit_types else None
            plans[ct] = CellPlan(prep, transit)
        return plans

    @property
    def _needs_prep_for_transit(self) -> bool:
        return getattr(self, "transit_weights", "none") == "detached"


class EnTranNASDartsSuperNet(_PlanMixin, DartsSearchNetBase):
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
        self.transit_rule = build_rule(rule)
        self.transit_weights = transit_weights
        self.feature_sharing = feature_sharing
        reductions = _reduction_layers(layers)
        types = ["reduce" if i in reductions else "normal" for i in range(layers)]
        self.roles = resolve_roles(types, engine_cells)

        def make_cell(i: int, ct: str, C_pp: int, C_p: int, C_curr: int, reduction_prev: bool) -> nn.Module:
            return DartsEnTranNASCell(
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

        self._init_body(C, layers, num_classes, in_channels, stem_multiplier, make_cell)
        self._engine_types = frozenset(t for t, r in zip(types, self.roles, strict=True) if r == "engine")
        self._transit_types = frozenset(t for t, r in zip(types, self.roles, strict=True) if r == "transit")


class EnTranNASNB201SuperNet(_PlanMixin, NB201SearchNetBase):
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
        layout = self._init_stem_and_layout(C, N, in_channels)
        n_cells = sum(1 for _, is_block in layout if not is_block)
        self.roles = resolve_roles([ct] * n_cells, engine_cells)
        self.cells = _nb201_cells(
            C,
            layout,
            lambda j, C_l: NB201EnTranNASCell(
                self._specs[ct],
                C_l,
                role=self.roles[j],
                feature_sharing=feature_sharing,
                transit_weights=transit_weights,
            ),
        )
        self._cell_types = [ct]
        self._engine_types = frozenset([ct])
        self._transit_types = frozenset([ct]) if "transit" in self.roles else frozenset()
        self._init_final(layout[-1][0], num_classes)

    def _cell_input(self, arch: ArchSample) -> CellPlan:
        return self.prepare(arch)[self._cell_types[0]]


class _EnTranNASSpaceMixin:
    """The EnTranNAS options of a space: checked and stored once, added to ``config()`` and used as the
    defaults of ``build_supernet``."""

    engine_cells: str | int | Sequence[int]
    feature_sharing: bool
    transit_weights: str
    default_rule: str

    def _init_entrannas(
        self, engine_cells: str | int | Sequence[int], feature_sharing: bool, transit_weights: str, rule: str
    ) -> None:
        _check_options(engine_cells, feature_sharing, transit_weights)
        build_rule(rule)
        self.engine_cells = engine_cells
        self.feature_sharing = feature_sharing
        self.transit_weights = transit_weights
        self.default_rule = rule

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),  # type: ignore[misc]
            "method": "entrannas",
            "engine_cells": self.engine_cells
            if isinstance(self.engine_cells, (str, int))
            else list(self.engine_cells),
            "feature_sharing": self.feature_sharing,
            "transit_weights": self.transit_weights,
            "rule": self.default_rule,
        }

    def _supernet_options(
        self,
        engine_cells: str | int | Sequence[int] | None,
        feature_sharing: bool | None,
        transit_weights: str | None,
    ) -> dict[str, Any]:
        """The EnTranNAS keyword arguments of a supernet: the given ones, else the space's."""
        return {
            "engine_cells": self.engine_cells if engine_cells is None else engine_cells,
            "feature_sharing": self.feature_sharing if feature_sharing is None else feature_sharing,
            "transit_weights": self.transit_weights if transit_weights is None else transit_weights,
            "rule": self.default_rule,
        }


class EnTranNASDartsSpace(_EnTranNASSpaceMixin, DartsSpace):
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
        self._init_entrannas(engine_cells, feature_sharing, transit_weights, rule)

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
            **self._supernet_options(engine_cells, feature_sharing, transit_weights),
        )


class EnTranNASNB201Space(_EnTranNASSpaceMixin, NB201Space):
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
        self._init_entrannas(engine_cells, feature_sharing, transit_weights, rule)

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
            **self._supernet_options(engine_cells, feature_sharing, transit_weights),
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
