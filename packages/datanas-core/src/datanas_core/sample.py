"""What one forward pass of a supernet consumes: per-cell-type architecture samples."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["ArchSample", "CellSample"]


@dataclass
class CellSample:
    """Forward weights for one cell type (shared by every cell of that type in one forward pass).

    Attributes:
        weights: ``[E, K]`` multipliers of each candidate op on each edge (soft, hard or straight-through).
            Differentiable w.r.t. the architecture parameters.
        mask: ``[E, K]`` bool, the op outputs that must be computed. Ops outside the mask have weight exactly 0
            in value; if ``grad_proxy`` is set their weights are still added to the edge output as zero-valued
            scalars so that their logits receive the GDAS-style straight-through gradient.
        probs: ``[E, K]`` deterministic probabilities (for regularisers, logging and derivation).
        code: ``[E, K]`` detached realised code (the normalised EGS/Gumbel sample) or ``None`` for deterministic
            relaxations.
        grad_proxy: add zero-valued gradient carriers for ops outside the mask (sparse executor).
        temperature: the temperature used to draw this sample (for logging).
        plain_exact: run every active op with a full autograd graph, also those whose weight is exactly 0
            (the reference exact executor). By default such ops run forward-only, which gives the same
            gradients at a fraction of the cost (see :mod:`datanas_core.space.mixed`).
    """

    weights: Tensor
    mask: Tensor
    probs: Tensor
    code: Tensor | None = None
    grad_proxy: bool = False
    temperature: float = 1.0
    _active: list[list[int]] | None = field(default=None, repr=False)
    plain_exact: bool = False

    @property
    def active(self) -> list[list[int]]:
        """Per edge, the indices of the ops to execute (computed once, one host sync)."""
        if self._active is None:
            rows = self.mask.detach().to("cpu").tolist()
            self._active = [[k for k, on in enumerate(r) if on] for r in rows]
        return self._active

    def detach(self) -> CellSample:
        return CellSample(
            self.weights.detach(),
            self.mask,
            self.probs.detach(),
            None if self.code is None else self.code.detach(),
            self.grad_proxy,
            self.temperature,
            self._active,
            self.plain_exact,
        )

    def with_plain_exact(self, plain: bool = True) -> CellSample:
        """The same sample with :attr:`plain_exact` set to ``plain`` (tensors shared)."""
        return CellSample(
            self.weights,
            self.mask,
            self.probs,
            self.code,
            self.grad_proxy,
            self.temperature,
            self._active,
            plain,
        )


class ArchSample(Mapping[str, CellSample]):
    """An immutable mapping ``cell_type -> CellSample`` for one forward pass.

    Attributes:
        hard: whether every weight row is a (normalised) discrete code.
        node_units: for node-granularity samples, unused by executors; kept for logging.
    """

    def __init__(self, cells: Mapping[str, CellSample], *, hard: bool = False) -> None:
        self._cells = dict(cells)
        self.hard = hard

    def __getitem__(self, key: str) -> CellSample:
        return self._cells[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)

    def __repr__(self) -> str:
        shapes = {k: tuple(v.weights.shape) for k, v in self._cells.items()}
        return f"ArchSample(hard={self.hard}, cells={shapes})"

    def detach(self) -> ArchSample:
        return ArchSample({k: v.detach() for k, v in self._cells.items()}, hard=self.hard)

    def plain_exact(self, plain: bool = True) -> ArchSample:
        """The same sample on the plain (reference) exact path: every active op runs with autograd."""
        return ArchSample({k: v.with_plain_exact(plain) for k, v in self._cells.items()}, hard=self.hard)

    @staticmethod
    def fixed(codes: Mapping[str, Tensor]) -> ArchSample:
        """A non-differentiable sample from given ``[E, K]`` weight matrices (e.g. a derived code)."""
        cells = {}
        for k, w in codes.items():
            w = w.detach()
            cells[k] = CellSample(weights=w, mask=w != 0, probs=w, code=w, grad_proxy=False)
        return ArchSample(cells, hard=True)

    def to(self, device: torch.device | str) -> ArchSample:
        return ArchSample(
            {
                k: CellSample(
                    v.weights.to(device),
                    v.mask.to(device),
                    v.probs.to(device),
                    None if v.code is None else v.code.to(device),
                    v.grad_proxy,
                    v.temperature,
                    v._active,
                    v.plain_exact,
                )
                for k, v in self._cells.items()
            },
            hard=self.hard,
        )
