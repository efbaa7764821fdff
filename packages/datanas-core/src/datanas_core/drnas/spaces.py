"""DrNAS' search spaces: partial-channel supernets that can be pruned and widened between stages.

Registered in :data:`~datanas_core.space.base.SPACES` when :mod:`datanas_core.drnas` is imported:

* ``"drnas_darts"`` (:class:`DrNASDartsSpace`): the DARTS cell space without ``none`` (7 ops,
  :data:`~datanas_core.space.darts.DRNAS_OPS`), pooling ops followed by a non-affine BatchNorm inside the op
  (DrNAS' ``AvgPoolBN`` / ``MaxPoolBN``), also in its derived networks by default.
* ``"drnas_nb201"`` (:class:`DrNASNB201Space`): NAS-Bench-201 with partial-channel edges.

Their genotypes are ordinary ``"darts"`` / ``"nb201"`` genotypes (``space.name`` is the classic name, so a
derived cell trains and validates with the plain spaces; DrNAS' published cell is stored the same way).

The supernets differ from the classic ones in three ways: every edge is a
:class:`~datanas_core.drnas.partial.PartialChannelMixedOp` with ratio ``partial_channels``; ops whose sampled
weight is exactly 0 are skipped (DrNAS' ``if w != 0``); and they implement the progressive-learning hooks
``prune(cell_type, mask)`` and ``set_partial_channels(k, generator)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.drnas.partial import PartialChannelMixedOp, check_partial_channels
from datanas_core.drnas.widen import ParamChange
from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample, CellSample
from datanas_core.space._common import build_search_edges
from datanas_core.space.base import SPACES
from datanas_core.space.darts import DRNAS_OPS, DartsNetwork, DartsSearchCell, DartsSpace, DartsSuperNet
from datanas_core.space.mixed import PreparedCellSample
from datanas_core.space.nb201 import NB201SearchCell, NB201Space, NB201SuperNet

__all__ = [
    "DrNASDartsSpace",
    "DrNASDartsSuperNet",
    "DrNASNB201Space",
    "DrNASNB201SuperNet",
    "ProgressiveSupernetMixin",
]


def _skip_zero_weights(prep: PreparedCellSample, sample: CellSample) -> PreparedCellSample:
    """Drop the ops whose weight is exactly 0 from ``prep.run`` (one host sync per cell type)."""
    nonzero = (sample.weights.detach() != 0).tolist()
    prep.run = [[k for k in run if nonzero[e][k]] for e, run in enumerate(prep.run)]
    return prep


class ProgressiveSupernetMixin:
    """Progressive-learning hooks shared by the DrNAS supernets.

    Attributes:
        partial_channels: current partial-channel ratio ``K`` of every edge.
        skip_zero: skip ops whose sampled weight is exactly 0 (DrNAS; turn off for estimators that need
            straight-through gradients through zero weights, e.g. EGS).
    """

    partial_channels: int
    skip_zero: bool

    def mixed_ops(self) -> Iterator[tuple[str, int, PartialChannelMixedOp]]:
        """``(cell_type, edge_row, mixed_op)`` for every edge of every search cell."""
        for cell_type, cell in self._search_cells():
            for e, op in enumerate(cell.edges):
                yield cell_type, e, op

    def _search_cells(self) -> Iterator[tuple[str, nn.Module]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prune(self, cell_type: str, mask: Tensor) -> int:
        """Delete the modules of the ops outside ``mask`` (bool ``[E, K]``) in every cell of ``cell_type``.

        Returns:
            The number of op modules removed.

        Raises:
            ConfigError: unknown cell type or a mask of the wrong shape.
        """
        spec = self._specs_by_type().get(cell_type)
        if spec is None:
            raise ConfigError(
                f"unknown cell type {cell_type!r}; cell types: {', '.join(self._specs_by_type())}"
            )
        m = torch.as_tensor(mask).to(device="cpu", dtype=torch.bool)
        if tuple(m.shape) != (spec.num_edges, spec.num_ops):
            raise ConfigError(
                f"mask for {cell_type!r} must have shape [{spec.num_edges}, {spec.num_ops}], "
                f"got {tuple(m.shape)}"
            )
        rows = m.tolist()
        removed = 0
        for ct, e, op in self.mixed_ops():
            if ct == cell_type:
                removed += len(op.prune([k for k, keep in enumerate(rows[e]) if keep]))
        return removed

    def set_partial_channels(self, k: int, generator: torch.Generator | None = None) -> list[ParamChange]:
        """Set the ratio of every edge to ``k``, widening the ops Net2Net-style (see
        :meth:`PartialChannelMixedOp.set_partial_channels`).

        Raises:
            ConfigError: ``k`` does not divide some edge width or exceeds the current ratio (nothing is
                changed then).
        """
        for ct, e, op in self.mixed_ops():
            check_partial_channels(op.C, k, where=f"{ct} edge {e}")
            if k > op.k:
                raise ConfigError(
                    f"cannot raise the partial-channel ratio from K={op.k} to K={k} (ops cannot be narrowed)"
                )
        changes: list[ParamChange] = []
        for _, _, op in self.mixed_ops():
            changes.extend(op.set_partial_channels(k, generator))
        self.partial_channels = k
        return changes

    def _specs_by_type(self) -> Mapping[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_all_widths(widths: Sequence[tuple[str, int]], k: int) -> None:
    for where, C in widths:
        check_partial_channels(C, k, where=where)


# ----------------------------------------------------------------------------------------------------------
# DARTS space
# ----------------------------------------------------------------------------------------------------------


class DrNASDartsSpace(DartsSpace):
    """DrNAS' DARTS space (registry name ``"drnas_darts"``; genotypes are ``"darts"`` genotypes).

    Args:
        ops: candidate ops (default :data:`~datanas_core.space.darts.DRNAS_OPS`: DARTS' without ``none``).
        steps, multiplier: as in :class:`~datanas_core.space.darts.DartsSpace`.
    """

    def __init__(self, ops: Sequence[str] | None = None, *, steps: int = 4, multiplier: int = 4) -> None:
        super().__init__(DRNAS_OPS if ops is None else ops, steps=steps, multiplier=multiplier)

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        pool_bn: bool = True,
        partial_channels: int = 1,
        skip_zero: bool = True,
    ) -> DrNASDartsSuperNet:
        """The partial-channel search network (non-affine BN, BN inside the pooling ops)."""
        return DrNASDartsSuperNet(
            self,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            pool_bn=pool_bn,
            partial_channels=partial_channels,
            skip_zero=skip_zero,
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
        pool_bn: bool = True,
    ) -> DartsNetwork:
        """DARTS' evaluation network; ``pool_bn=True`` by default (DrNAS' cells have BN after pooling)."""
        return super().build_derived(
            genotype,
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


class DrNASDartsSuperNet(ProgressiveSupernetMixin, DartsSuperNet):
    """DARTS' search network with :class:`PartialChannelMixedOp` edges (ratio ``partial_channels``).

    Raises:
        ConfigError: ``partial_channels`` does not divide every cell width (``C``, ``2C``, ``4C``).
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
        partial_channels: int = 1,
        skip_zero: bool = True,
    ) -> None:
        # The parent builds stem, preprocessing, topology and head; its edges come from a space with only
        # ``none`` (no modules), and are replaced by partial-channel edges below.
        shell = DartsSpace(("none",), steps=space.steps, multiplier=space.multiplier)
        super().__init__(
            shell,
            C=C,
            layers=layers,
            num_classes=num_classes,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
        )
        self.space_config = space.config()
        self._specs = space.cells()
        cells: list[DartsSearchCell] = list(self.cells)  # type: ignore[arg-type]
        _check_all_widths([(f"cell {i} ({c.cell_type})", c.C) for i, c in enumerate(cells)], partial_channels)
        for cell in cells:
            cell.edges = build_search_edges(
                self._specs[cell.cell_type],
                cell.C,
                PartialChannelMixedOp.build,
                pool_bn=pool_bn,
                k=partial_channels,
            )
        self.partial_channels = partial_channels
        self.skip_zero = skip_zero

    def _search_cells(self) -> Iterator[tuple[str, nn.Module]]:
        for cell in self.cells:
            yield cell.cell_type, cell

    def _specs_by_type(self) -> Mapping[str, Any]:
        return self._specs

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> dict[str, PreparedCellSample]:
        """As :meth:`DartsSuperNet.prepare`, minus the ops whose weight is exactly 0 (``skip_zero``)."""
        prep = super().prepare(arch)
        if self.skip_zero:
            prep = {ct: _skip_zero_weights(p, arch[ct]) for ct, p in prep.items()}
        return prep


# ----------------------------------------------------------------------------------------------------------
# NAS-Bench-201 space
# ----------------------------------------------------------------------------------------------------------


class DrNASNB201Space(NB201Space):
    """NAS-Bench-201 with partial-channel supernets (registry ``"drnas_nb201"``; genotypes ``"nb201"``)."""

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        partial_channels: int = 1,
        skip_zero: bool = True,
    ) -> DrNASNB201SuperNet:
        """The partial-channel search network (non-affine BN in the cells, no BN after pooling)."""
        return DrNASNB201SuperNet(
            self,
            C=C,
            N=N,
            num_classes=num_classes,
            in_channels=in_channels,
            partial_channels=partial_channels,
            skip_zero=skip_zero,
        )


class DrNASNB201SuperNet(ProgressiveSupernetMixin, NB201SuperNet):
    """NB201's search network with :class:`PartialChannelMixedOp` edges.

    Raises:
        ConfigError: ``partial_channels`` does not divide ``C``, ``2C`` and ``4C``.
    """

    def __init__(
        self,
        space: NB201Space,
        *,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
        partial_channels: int = 1,
        skip_zero: bool = True,
    ) -> None:
        shell = NB201Space(("none",), num_nodes=space.num_nodes)
        super().__init__(shell, C=C, N=N, num_classes=num_classes, in_channels=in_channels)
        self.space_config = space.config()
        self._spec = space.cells()["cell"]
        searchable = [
            (i, cell, int(self.feature_info[i + 1]["num_chs"]))
            for i, cell in enumerate(self.cells)
            if isinstance(cell, NB201SearchCell)
        ]
        _check_all_widths([(f"cell {i}", C_l) for i, _, C_l in searchable], partial_channels)
        for _, cell, C_l in searchable:
            cell.edges = build_search_edges(self._spec, C_l, PartialChannelMixedOp.build, k=partial_channels)
        self.partial_channels = partial_channels
        self.skip_zero = skip_zero

    def _search_cells(self) -> Iterator[tuple[str, nn.Module]]:
        for cell in self.cells:
            if isinstance(cell, NB201SearchCell):
                yield "cell", cell

    def _specs_by_type(self) -> Mapping[str, Any]:
        return {"cell": self._spec}

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> PreparedCellSample:
        """As :meth:`NB201SuperNet.prepare`, minus the ops whose weight is exactly 0 (``skip_zero``)."""
        prep = super().prepare(arch)
        return _skip_zero_weights(prep, arch["cell"]) if self.skip_zero else prep


SPACES.register("drnas_darts", DrNASDartsSpace)
SPACES.register("drnas_nb201", DrNASNB201Space)
