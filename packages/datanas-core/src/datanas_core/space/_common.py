"""Pieces shared by the supernets and derived networks of the DARTS and NB201 spaces and their DrNAS and
EnTranNAS variants: the CIFAR stem and classifier head, the timm-style forward API, the checks and splitting
of architecture samples, and the mixed-op edges and node sums of the search cells.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from datanas_core.errors import SearchSpaceError
from datanas_core.ops import out_size
from datanas_core.sample import ArchSample, CellSample
from datanas_core.space.base import CellSpec
from datanas_core.space.mixed import MixedOp, PreparedCellSample
from datanas_core.space.networks import CellNetworkMixin

__all__ = [
    "CellNetwork",
    "DerivedNetMixin",
    "SuperNetMixin",
    "build_search_edges",
    "missing_cell_types",
    "mixed_node_sum",
    "prepare_cell_sample",
    "run_cell",
    "zero_node",
]


class CellNetwork(CellNetworkMixin):
    """:class:`CellNetworkMixin` plus the builders of the CIFAR-style stem and the classifier head."""

    def _init_stem(self, in_channels: int, C: int) -> None:
        """``self.stem`` (3x3 conv to ``C`` channels, BN) and ``self.feature_info`` with the stem's entry."""
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.feature_info = [{"num_chs": C, "reduction": 1, "module": "stem"}]

    def _init_head(self, C: int, num_classes: int) -> None:
        """Global average pooling and a linear classifier on ``C`` features (identity if ``num_classes`` is 0)."""
        self.num_features = C
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes) if num_classes > 0 else nn.Identity()


class SuperNetMixin(CellNetwork):
    """The forward API of a supernet: every call takes the architecture sample ``arch`` after the input."""

    def forward_features(self, x: Tensor, arch: ArchSample) -> Tensor:
        """Output of the last cell (after the network's final norm, if any)."""
        return self._features(x, arch)

    def forward(self, x: Tensor, arch: ArchSample) -> Tensor:
        """Logits of the supernet under the architecture sample ``arch``."""
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
        """Stem, cell (and block) outputs in ``feature_info`` order, timm-style."""
        return self._intermediates(x, (arch,), indices, stop_early, output_fmt, intermediates_only)

    def weight_parameters(self) -> list[nn.Parameter]:
        """All parameters (architecture parameters never live in the supernet)."""
        return list(self.parameters())  # type: ignore[attr-defined]


class DerivedNetMixin(CellNetwork):
    """The feature API of a derived (evaluation) network: calls take the input only."""

    def forward_features(self, x: Tensor) -> Tensor:
        """Output of the last cell (after the network's final norm, if any)."""
        return self._features(x)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stem, cell (and block) outputs in ``feature_info`` order, timm-style.

        Returns:
            ``(final_features, intermediates)``, or only the intermediates with ``intermediates_only``.
        """
        return self._intermediates(x, (), indices, stop_early, output_fmt, intermediates_only)


def missing_cell_types(
    arch: ArchSample | Mapping[str, Any], needed: Sequence[str], owner: str = "the supernet"
) -> SearchSpaceError:
    """The error raised when ``arch`` lacks a cell type that ``owner`` needs."""
    return SearchSpaceError(f"arch sample has cell types {sorted(arch)}, {owner} needs {list(needed)}")


def prepare_cell_sample(sample: CellSample, spec: CellSpec) -> PreparedCellSample:
    """Split the sample of the cell type of ``spec`` (shape checks included)."""
    return PreparedCellSample.from_sample(
        sample, spec.ops, spec.num_edges, where=f"cell type {spec.cell_type!r}"
    )


def build_search_edges(
    spec: CellSpec, C: int, build: Callable[..., nn.Module] = MixedOp.build, **options: Any
) -> nn.ModuleList:
    """One mixed op per edge of ``spec`` (``build(ops, C, C, stride, affine=False, **options)``).

    The edges that leave an input node of a reduction cell have stride 2, the others stride 1.
    """
    return nn.ModuleList(
        build(spec.ops, C, C, 2 if spec.reduction and src < spec.num_inputs else 1, affine=False, **options)
        for src, _dst in spec.edges
    )


def mixed_node_sum(
    edges: nn.ModuleList,
    in_edges: Sequence[tuple[int, int]],
    states: Sequence[Tensor],
    prep: PreparedCellSample,
    shared: dict[Any, Any] | None = None,
) -> Tensor | None:
    """Sum of the mixed-op edges ``(edge row, source node)`` into one node; ``None`` if all are skipped.

    ``shared``: a dict that lives for one cell forward, in which the lean edges leaving one node share what
    depends only on it (``relu(x)``; passed to edges whose forward is :meth:`MixedOp.forward`); ``None``:
    nothing shared across edges."""
    acc: Tensor | None = None
    for e, src in in_edges:
        if prep.skip(e):
            continue
        px = prep.proxy[e]
        edge = edges[e]
        # only MixedOp's own forward takes ``shared`` (subclasses such as DrNAS' partial-channel edge do not)
        extra = {"shared": shared} if shared is not None and type(edge).forward is MixedOp.forward else {}
        y = edge(
            states[src],
            prep.rows[e],
            prep.run[e],
            px is not None,
            proxy=px,
            zero=prep.zero_of(e),
            arch_grad=prep.arch_grad,
            fused=prep.lean,
            **extra,
        )
        acc = y if acc is None else acc + y
    return acc


def zero_node(ref: Tensor, C: int, stride: int) -> Tensor:
    """Zeros with ``C`` channels at the spatial size of ``ref`` after ``stride`` (a node without inputs)."""
    return ref.new_zeros(ref.shape[0], C, out_size(ref.shape[2], stride), out_size(ref.shape[3], stride))


def run_cell(net: nn.Module, cell: nn.Module, *args: Any) -> Tensor:
    """``cell(*args)``, checkpointed when ``net.checkpoint_cells`` is set and gradients are being recorded.

    With checkpointing only the cell's inputs are kept; its activations are recomputed in backward (one
    more forward pass of the cell, same gradients and random stream). The recomputation is a second forward
    in training mode, so the BatchNorm running statistics of the cell are updated twice per step.
    """
    if getattr(net, "checkpoint_cells", False) and torch.is_grad_enabled():
        return checkpoint(cell, *args, use_reentrant=False)
    return cell(*args)
