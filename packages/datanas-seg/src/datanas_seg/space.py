"""The ``seg.darts`` search space: DARTS cells arranged as a multi-scale segmentation backbone.

The cells are exactly DARTS' (``normal`` and ``reduce`` cell types, 2 input nodes, 4 intermediate nodes, the 8
DARTS candidate ops; :class:`datanas_core.space.darts.DartsSpace` supplies the cell specs and validation), but
the networks differ: a stride-4 stem, then one stage per output stride (4, 8, 16 and optionally 32), each
stage after the first opening with a reduction cell, and the last cell of every stage emitting a feature map
(see :mod:`datanas_seg.backbone`).

Derived genotypes may keep any number of ``(input, op)`` pairs per node (DATA's ensemble derivation with
``M > 1`` needs it); ``strict=True`` restricts them to DARTS' 2 pairs per node. Genotypes of the ``darts`` /
``darts_ext`` spaces (e.g. published CIFAR cells) are accepted as they are: the cell graph is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.ops import out_size
from datanas_core.space.base import SPACES
from datanas_core.space.darts import DartsSpace
from datanas_core.space.networks import op_cost

__all__ = ["SEG_SPACE_NAME", "SegDartsSpace", "normalize_stages"]

#: Registry name of the segmentation space.
SEG_SPACE_NAME = "seg.darts"

_COMPATIBLE_SPACES = ("darts", "darts_ext", SEG_SPACE_NAME)


def normalize_stages(cells_per_stage: int | Sequence[int], num_stages: int) -> tuple[int, ...]:
    """Normal cells per stage as a tuple of length ``num_stages`` (an int is repeated).

    Raises:
        ConfigError: ``num_stages`` not 3 or 4, a length mismatch, a negative count, or no normal cell in the
            first stage (the stride-4 features come from it).
    """
    if num_stages not in (3, 4):
        raise ConfigError(
            f"num_stages must be 3 (output strides 4/8/16) or 4 (4/8/16/32), got {num_stages!r}"
        )
    if isinstance(cells_per_stage, int) and not isinstance(cells_per_stage, bool):
        stages = (cells_per_stage,) * num_stages
    else:
        stages = tuple(int(c) for c in cells_per_stage)
    if len(stages) != num_stages:
        raise ConfigError(f"cells_per_stage {stages} has {len(stages)} entries, num_stages is {num_stages}")
    if any(c < 0 for c in stages) or stages[0] < 1:
        raise ConfigError(
            f"cells_per_stage {stages}: counts must be >= 0 and the first stage needs at least one "
            "normal cell"
        )
    return stages


def cell_layout(stages: Sequence[int]) -> list[tuple[str, int]]:
    """``(cell_type, stage)`` of every cell in order: stage ``s > 0`` starts with a reduction cell."""
    out: list[tuple[str, int]] = []
    for s, n in enumerate(stages):
        if s > 0:
            out.append(("reduce", s))
        out.extend(("normal", s) for _ in range(n))
    return out


class SegDartsSpace(DartsSpace):
    """DARTS cells for segmentation backbones (space ``"seg.darts"``).

    Args:
        ops: candidate ops in column order (default DARTS' 8 ops).
        steps: intermediate nodes per cell.
        multiplier: how many of the last intermediate nodes form the cell output.
        strict: derived genotypes keep exactly 2 ``(input, op)`` pairs per node (classic DARTS); otherwise any
            number (DATA with ``M > 1``).

    Example:
        >>> space = SegDartsSpace()
        >>> net = space.build_supernet(C=4)
        >>> [f["reduction"] for f in net.feature_info]
        [4, 8, 16]
    """

    name = SEG_SPACE_NAME

    def __init__(
        self, ops: Sequence[str] | None = None, *, steps: int = 4, multiplier: int = 4, strict: bool = False
    ) -> None:
        super().__init__(ops, steps=steps, multiplier=multiplier, extended=not strict)
        self.name = SEG_SPACE_NAME

    def config(self) -> dict[str, Any]:
        return {**super().config(), "strict": self.strict}

    def _as_seg(self, genotype: Genotype) -> Genotype:
        if genotype.space in _COMPATIBLE_SPACES and genotype.space != self.name:
            return Genotype(self.name, genotype.cells, genotype.schema_version, genotype.meta)
        return genotype

    def validate(self, genotype: Genotype) -> None:
        """Check ``genotype`` (of space ``seg.darts``, ``darts`` or ``darts_ext``) against the space.

        Raises:
            IncompatibleGenotypeError: naming the cell type and the offending edge or node.
        """
        super().validate(self._as_seg(genotype))

    def build_supernet(  # type: ignore[override]
        self,
        C: int = 8,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] | None = None,
        pool_bn: bool = True,
    ) -> Any:
        """The weight-sharing backbone :class:`~datanas_seg.backbone.SegSupernetBackbone`."""
        from datanas_seg.backbone import SegSupernetBackbone

        return SegSupernetBackbone(
            self,
            C=C,
            cells_per_stage=cells_per_stage,
            num_stages=num_stages,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            out_indices=out_indices,
            pool_bn=pool_bn,
        )

    def build_derived(  # type: ignore[override]
        self,
        genotype: Genotype,
        C: int = 16,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        in_channels: int = 3,
        stem_multiplier: int = 2,
        out_indices: Sequence[int] | None = None,
        drop_path_prob: float = 0.0,
    ) -> Any:
        """The backbone :class:`~datanas_seg.backbone.DataNASBackbone` of ``genotype`` (validated first)."""
        from datanas_seg.backbone import DataNASBackbone

        return DataNASBackbone(
            genotype,
            space=self,
            C=C,
            cells_per_stage=cells_per_stage,
            num_stages=num_stages,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
            out_indices=out_indices,
            drop_path_prob=drop_path_prob,
        )

    def edge_costs(  # type: ignore[override]
        self,
        metric: str = "params",
        *,
        C: int = 8,
        cells_per_stage: int | Sequence[int] = 1,
        num_stages: int = 3,
        input_size: int = 64,
    ) -> dict[str, Tensor]:
        """``[E, K]`` cost of each op on each edge, summed over the cells of each type of the backbone.

        Costs are those of evaluation ops (affine BN) in a backbone of width ``C`` on ``input_size`` inputs
        (``"params"``: parameters, ``"flops"``: convolution multiply-adds). ``none`` costs 0.

        Raises:
            ConfigError: unknown ``metric``.
        """
        if metric not in ("params", "flops"):
            raise ConfigError(f"unknown cost metric {metric!r}; valid metrics: flops, params")
        stages = normalize_stages(cells_per_stage, num_stages)
        key = ("seg", metric, C, stages, input_size)
        if key not in self._cost_cache:
            cache: dict[tuple[Any, ...], float] = {}
            specs = self.cells()
            totals = {ct: torch.zeros(spec.num_edges, spec.num_ops) for ct, spec in specs.items()}
            size = out_size(out_size(input_size, 2), 2)
            for ct, s in cell_layout(stages):
                spec = specs[ct]
                C_curr = C * 2**s
                inner = out_size(size, 2) if spec.reduction else size
                for e, (src, _dst) in enumerate(spec.edges):
                    from_input = src < spec.num_inputs
                    stride = 2 if spec.reduction and from_input else 1
                    in_size = size if from_input else inner
                    for k, op in enumerate(spec.ops):
                        totals[ct][e, k] += op_cost(op, C_curr, C_curr, stride, in_size, metric, cache)
                size = inner
            self._cost_cache[key] = totals
        return {ct: t.clone() for ct, t in self._cost_cache[key].items()}


if SEG_SPACE_NAME not in SPACES:  # an entry-point loader may have registered it already
    SPACES.register(SEG_SPACE_NAME, SegDartsSpace)
