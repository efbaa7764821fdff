"""Multi-scale segmentation backbones built from DARTS cells (pure torch).

Layout (output strides in brackets)::

    stem: conv3x3/2 -> BN -> ReLU -> conv3x3/2 -> BN            [4]
    stage 0: n0 normal cells                                     [4]   -> feature 0
    stage 1: reduction cell, n1 normal cells                     [8]   -> feature 1
    stage 2: reduction cell, n2 normal cells                     [16]  -> feature 2
    stage 3 (num_stages=4): reduction cell, n3 normal cells      [32]  -> feature 3

Stage ``s`` works at ``C * 2**s`` channels per node; its feature map is the output of its last cell, i.e.
``len(concat) * C * 2**s`` channels. Cells take the two previous cell outputs (DARTS); the stem output feeds
the first cell twice. The cells are :class:`datanas_core.space.darts.DartsSearchCell` (supernet) and
:class:`datanas_core.space.darts.DartsCell` (derived network).

* :class:`SegSupernetBackbone` - ``forward(x, arch)`` with an :class:`~datanas_core.sample.ArchSample`.
* :class:`DataNASBackbone` - the derived backbone of a genotype, ``forward(x)``.

Both return a tuple of NCHW feature maps (``out_indices`` order) and expose ``out_channels``,
``out_strides`` and timm-style ``feature_info``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.space.darts import DartsCell, DartsSearchCell
from datanas_core.space.mixed import PreparedCellSample
from datanas_seg.genotypes import GenotypeRef, resolve_genotype
from datanas_seg.space import SegDartsSpace, cell_layout, normalize_stages

__all__ = ["DataNASBackbone", "SegSupernetBackbone", "feature_channels", "supernet_feature_channels"]


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _check_out_indices(out_indices: Sequence[int] | None, num_stages: int) -> tuple[int, ...]:
    if out_indices is None:
        return tuple(range(num_stages))
    idx = tuple(int(i) for i in out_indices)
    if not idx or any(not 0 <= i < num_stages for i in idx) or len(set(idx)) != len(idx):
        raise ConfigError(
            f"out_indices {idx} must be distinct stage indices in 0..{num_stages - 1} (one per output stride "
            f"{', '.join(str(4 * 2**s) for s in range(num_stages))})"
        )
    return idx


def _stage_channels(
    concat_len: Mapping[str, int], C: int, stages: Sequence[int], stem_channels: int
) -> list[int]:
    out = []
    for s, n in enumerate(stages):
        last = "normal" if n > 0 else ("reduce" if s > 0 else None)
        out.append(stem_channels if last is None else concat_len[last] * C * 2**s)
    return out


def feature_channels(
    genotype: GenotypeRef,
    C: int = 16,
    *,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    stem_multiplier: int = 2,
    out_indices: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Channel counts of the feature maps :class:`DataNASBackbone` returns, without building it.

    Use it to fill ``decode_head.in_channels`` in configs.

    Example:
        >>> from datanas_core.genotype import Genotype
        >>> g = Genotype.from_pairs("seg.darts", {ct: ([("skip_connect", 0), ("skip_connect", 1)] * 4,
        ...                                            [2, 3, 4, 5]) for ct in ("normal", "reduce")})
        >>> feature_channels(g, C=8)
        (32, 64, 128)
    """
    g = resolve_genotype(genotype)
    stages = normalize_stages(cells_per_stage, num_stages)
    idx = _check_out_indices(out_indices, num_stages)
    lens = {ct: len(c.concat) for ct, c in g.cells.items()}
    chans = _stage_channels(lens, C, stages, stem_multiplier * C)
    return tuple(chans[i] for i in idx)


def supernet_feature_channels(
    space: SegDartsSpace,
    C: int = 8,
    *,
    cells_per_stage: int | Sequence[int] = 1,
    num_stages: int = 3,
    stem_multiplier: int = 2,
    out_indices: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Channel counts of the feature maps :class:`SegSupernetBackbone` returns, without building it."""
    stages = normalize_stages(cells_per_stage, num_stages)
    idx = _check_out_indices(out_indices, num_stages)
    lens = {ct: len(spec.concat) for ct, spec in space.cells().items()}
    chans = _stage_channels(lens, C, stages, stem_multiplier * C)
    return tuple(chans[i] for i in idx)


class _Stem(nn.Sequential):
    def __init__(self, in_channels: int, C_stem: int) -> None:
        mid = max(C_stem // 2, 1)
        super().__init__(
            nn.Conv2d(in_channels, mid, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, C_stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )


class _SegBackboneBase(nn.Module):
    """Stem, cell layout bookkeeping and ``feature_info`` shared by the supernet and derived backbones."""

    cells: nn.ModuleList

    def _setup(
        self,
        C: int,
        cells_per_stage: int | Sequence[int],
        num_stages: int,
        in_channels: int,
        stem_multiplier: int,
        out_indices: Sequence[int] | None,
    ) -> tuple[tuple[int, ...], int]:
        _check_positive(C=C, in_channels=in_channels, stem_multiplier=stem_multiplier)
        self.C = C
        self.stages = normalize_stages(cells_per_stage, num_stages)
        self.num_stages = num_stages
        self.in_channels = in_channels
        self.out_indices = _check_out_indices(out_indices, num_stages)
        C_stem = stem_multiplier * C
        if C_stem < 2:
            raise ConfigError(f"stem_multiplier * C must be >= 2, got {C_stem}")
        self.stem = _Stem(in_channels, C_stem)
        self._layout = cell_layout(self.stages)
        return self.stages, C_stem

    def _finish(self, stage_channels: Sequence[int]) -> None:
        # index of the cell whose output is each stage's feature (-1: the stem)
        last_cell = []
        for s in range(self.num_stages):
            cells_of_s = [i for i, (_, st) in enumerate(self._layout) if st == s]
            last_cell.append(cells_of_s[-1] if cells_of_s else -1)
        self._stage_end = tuple(last_cell)
        self._stage_of_cell = {i: s for s, i in enumerate(last_cell) if i >= 0}
        self.all_channels = tuple(stage_channels)
        self.feature_info: list[dict[str, Any]] = [
            {
                "num_chs": stage_channels[s],
                "reduction": 4 * 2**s,
                "module": "stem" if last_cell[s] < 0 else f"cells.{last_cell[s]}",
                "stage": s,
            }
            for s in self.out_indices
        ]

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each returned feature map (``out_indices`` order)."""
        return tuple(self.all_channels[s] for s in self.out_indices)

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Output stride of each returned feature map (``out_indices`` order)."""
        return tuple(4 * 2**s for s in self.out_indices)

    def _collect(self, stem_out: Tensor, cell_outputs: Iterator[Tensor]) -> tuple[Tensor, ...]:
        feats: dict[int, Tensor] = {}
        if self._stage_end[0] < 0:
            feats[0] = stem_out
        wanted_last = max(self._stage_end[s] for s in self.out_indices)
        for i, out in enumerate(cell_outputs):
            s = self._stage_of_cell.get(i)
            if s is not None:
                feats[s] = out
            if i >= wanted_last:
                break
        return tuple(feats[s] for s in self.out_indices)


class SegSupernetBackbone(_SegBackboneBase):
    """Weight-sharing DARTS backbone: ``forward(x, arch) -> tuple`` of multi-scale features.

    ``arch`` holds one ``[E, K]`` weight matrix per cell type (``"normal"`` and ``"reduce"``) shared by all
    cells of that type. The module owns no architecture parameters.

    Args:
        space: the :class:`SegDartsSpace` (cell specs).
        C: channels per node in stage 0 (doubled at every stage).
        cells_per_stage: normal cells per stage (int or one per stage).
        num_stages: 3 (output strides 4/8/16) or 4 (4/8/16/32).
        in_channels: input image channels.
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
        out_indices: stages whose features are returned (default all).
        pool_bn: non-affine BN after pooling ops (DARTS' supernet).

    Example:
        >>> import torch
        >>> from datanas_core.sample import ArchSample
        >>> space = SegDartsSpace()
        >>> net = space.build_supernet(C=4)
        >>> arch = ArchSample.fixed({ct: torch.full((14, 8), 1 / 8) for ct in ("normal", "reduce")})
        >>> [tuple(f.shape) for f in net(torch.randn(1, 3, 32, 32), arch)]
        [(1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2)]
    """

    def __init__(
        self,
        space: SegDartsSpace | None = None,
        *,
        C: int = 8,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] | None = None,
        pool_bn: bool = True,
    ) -> None:
        super().__init__()
        space = SegDartsSpace() if space is None else space
        self.space_config = space.config()
        self._specs = space.cells()
        stages, C_stem = self._setup(
            C, cells_per_stage, num_stages, in_channels, stem_multiplier, out_indices
        )
        self.cells = nn.ModuleList()
        C_pp, C_p, reduction_prev = C_stem, C_stem, False
        for ct, s in self._layout:
            spec = self._specs[ct]
            cell = DartsSearchCell(spec, C_pp, C_p, C * 2**s, reduction_prev, pool_bn=pool_bn)
            self.cells.append(cell)
            reduction_prev = spec.reduction
            C_pp, C_p = C_p, cell.multiplier * C * 2**s
        lens = {ct: len(spec.concat) for ct, spec in self._specs.items()}
        self._finish(_stage_channels(lens, C, stages, C_stem))
        self._cell_types = sorted({ct for ct, _ in self._layout})

    def prepare(self, arch: ArchSample | Mapping[str, Any]) -> dict[str, PreparedCellSample]:
        """Check and split ``arch`` once per forward.

        Raises:
            ConfigError: ``arch`` is not an ArchSample-like mapping with the needed cell types.
            SearchSpaceError: a weight matrix has the wrong shape.
        """
        if not isinstance(arch, Mapping):
            raise ConfigError(
                f"the supernet needs an ArchSample (cell type -> CellSample), got {type(arch).__name__}"
            )
        missing = [ct for ct in self._cell_types if ct not in arch]
        if missing:
            raise ConfigError(
                f"arch sample has cell types {sorted(arch)}, the supernet needs {self._cell_types}"
            )
        return {
            ct: PreparedCellSample.from_sample(
                arch[ct], self._specs[ct].ops, self._specs[ct].num_edges, where=f"cell type {ct!r}"
            )
            for ct in self._cell_types
        }

    def _cell_outputs(self, s: Tensor, prep: Mapping[str, PreparedCellSample]) -> Iterator[Tensor]:
        s0 = s1 = s
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, prep[cell.cell_type])
            yield s1

    def forward(self, x: Tensor, arch: ArchSample) -> tuple[Tensor, ...]:
        """Multi-scale features of ``x`` (N, C_in, H, W) under architecture ``arch``."""
        prep = self.prepare(arch)
        stem = self.stem(x)
        return self._collect(stem, self._cell_outputs(stem, prep))


class DataNASBackbone(_SegBackboneBase):
    """The derived backbone of a ``seg.darts`` genotype: ``forward(x) -> tuple`` of multi-scale features.

    Args:
        genotype: a Genotype, genotype document, bundled name or JSON path (``seg.darts``, ``darts`` or
            ``darts_ext`` genotypes).
        space: the space to validate against (default ``SegDartsSpace()``).
        C: channels per node in stage 0 (doubled at every stage).
        cells_per_stage: normal cells per stage (int or one per stage).
        num_stages: 3 (output strides 4/8/16) or 4 (4/8/16/32).
        in_channels: input image channels.
        stem_multiplier: the stem outputs ``stem_multiplier * C`` channels.
        out_indices: stages whose features are returned (default all).
        drop_path_prob: drop-path probability on non-identity ops in training (attribute, can be changed).

    Raises:
        IncompatibleGenotypeError: the genotype does not fit the space.

    Example:
        >>> import torch
        >>> from datanas_core.genotype import Genotype
        >>> g = Genotype.from_pairs("seg.darts", {ct: ([("sep_conv_3x3", 0), ("skip_connect", 1)] * 4,
        ...                                            [2, 3, 4, 5]) for ct in ("normal", "reduce")})
        >>> net = DataNASBackbone(g, C=4)
        >>> net.out_channels, net.out_strides
        ((16, 32, 64), (4, 8, 16))
    """

    def __init__(
        self,
        genotype: GenotypeRef,
        *,
        space: SegDartsSpace | None = None,
        C: int = 16,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] | None = None,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        space = SegDartsSpace() if space is None else space
        g = resolve_genotype(genotype)
        space.validate(g)
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
        self.genotype: Genotype = g
        self.drop_path_prob = drop_path_prob
        self.drop_path_generator: torch.Generator | None = None
        stages, C_stem = self._setup(
            C, cells_per_stage, num_stages, in_channels, stem_multiplier, out_indices
        )
        self.cells = nn.ModuleList()
        C_pp, C_p, reduction_prev = C_stem, C_stem, False
        for ct, s in self._layout:
            reduction = ct == "reduce"
            cell = DartsCell(g.cells[ct], space.steps, C_pp, C_p, C * 2**s, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C * 2**s
        lens = {ct: len(c.concat) for ct, c in g.cells.items()}
        self._finish(_stage_channels(lens, C, stages, C_stem))

    def _cell_outputs(self, s: Tensor) -> Iterator[Tensor]:
        s0 = s1 = s
        p, gen = self.drop_path_prob, self.drop_path_generator
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, p, gen)
            yield s1

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Multi-scale features of ``x`` (N, C_in, H, W)."""
        stem = self.stem(x)
        return self._collect(stem, self._cell_outputs(stem))
