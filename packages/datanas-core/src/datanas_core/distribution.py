"""The architecture distribution: every architecture parameter of a search, and how it is sampled.

:class:`ArchitectureDistribution` owns one ``[E, K]`` logit matrix per cell type (``self.logits``, an
``nn.ParameterDict`` keyed by cell type, rows = ``CellSpec.edges``, columns = ``CellSpec.ops``) plus any extra
parameters its estimator needs (``self.extra``). The supernet owns none of them: its forward pass consumes
the :class:`~datanas_core.sample.ArchSample` returned by :meth:`ArchitectureDistribution.sample`.
``distribution.parameters()`` is the architecture optimiser's parameter set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core.errors import CheckpointError, ConfigError
from datanas_core.estimators import Estimator, build_estimator
from datanas_core.sample import ArchSample, CellSample
from datanas_core.space.base import CellSpec, SearchSpace

__all__ = ["EXECUTORS", "ArchitectureDistribution", "apply_executor"]

logger = logging.getLogger(__name__)

#: Names of the mixed-edge executors (see :func:`apply_executor`).
EXECUTORS = ("exact", "sparse")


def apply_executor(
    sample: CellSample, executor: str, available: Tensor | None = None, *, carriers: bool = True
) -> CellSample:
    """Set which op outputs a :class:`CellSample` asks the supernet to compute.

    * ``"exact"``: every (non-pruned) op is computed; ``grad_proxy=False``. Every weight ``w_k`` gets its true
      gradient ``<dL/dy, o_k(x)>``, also where ``w_k`` is 0 in value (straight-through samples), which is what
      DATA's EGS relies on.
    * ``"sparse"``: only ops with a non-zero weight are computed; ``grad_proxy=True``, so the supernet adds
      the other weights to the edge output as zero-valued scalars (GDAS). Forward values are identical to
      "exact" (those ops are multiplied by exact zeros there); the gradient of a zero-weight ``w_k`` becomes
      ``sum(dL/dy)`` (the sum over all elements of the edge output's gradient) instead of
      ``<dL/dy, o_k(x)>``: it no longer depends on what op ``k`` would have output, a cheaper and cruder
      signal. Non-zero weights get the same gradient under both executors, so soft estimators (softmax,
      SNAS, Dirichlet) behave identically under both, unless weights underflow to exactly 0.

    Args:
        sample: the estimator's sample.
        executor: ``"exact"`` or ``"sparse"``.
        available: bool ``[E, K]`` ops that exist (pruning mask), ``None`` for all.
        carriers: with ``"sparse"``, add the zero-valued gradient carriers (``False``: the computed ops
            alone, AutoDL's NASNet GDAS; the estimator's ``carriers`` option).
    """
    if executor == "exact":
        mask = torch.ones_like(sample.weights, dtype=torch.bool) if available is None else available
        proxy = False
    elif executor == "sparse":
        mask = sample.weights.detach() != 0
        if available is not None:
            mask = mask & available
        proxy = bool(carriers)
    else:
        raise ConfigError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    return CellSample(sample.weights, mask, sample.probs, sample.code, proxy, sample.temperature)


def _resolve_cells(
    space_or_cells: SearchSpace | Mapping[str, CellSpec] | Sequence[CellSpec] | CellSpec,
) -> tuple[SearchSpace | None, dict[str, CellSpec], str]:
    if isinstance(space_or_cells, SearchSpace):
        return space_or_cells, dict(space_or_cells.cells()), space_or_cells.name
    if isinstance(space_or_cells, CellSpec):
        return None, {space_or_cells.cell_type: space_or_cells}, ""
    if isinstance(space_or_cells, Mapping):
        cells = dict(space_or_cells)
    elif isinstance(space_or_cells, Sequence) and not isinstance(space_or_cells, str):
        cells = {}
        for c in space_or_cells:
            if not isinstance(c, CellSpec):
                raise ConfigError(f"expected CellSpec items, got {type(c).__name__}")
            if c.cell_type in cells:
                raise ConfigError(f"duplicate cell type {c.cell_type!r}")
            cells[c.cell_type] = c
    else:
        raise ConfigError(
            f"ArchitectureDistribution needs a SearchSpace or CellSpecs, got {type(space_or_cells).__name__}"
        )
    for k, c in cells.items():
        if not isinstance(c, CellSpec):
            raise ConfigError(f"cell {k!r}: expected a CellSpec, got {type(c).__name__}")
        if c.cell_type != k:
            raise ConfigError(f"cell spec keyed {k!r} has cell_type {c.cell_type!r}")
    return None, cells, ""


class ArchitectureDistribution(nn.Module):
    """All architecture parameters of a search and the estimator that samples from them.

    Args:
        space_or_cells: a :class:`SearchSpace`, a mapping ``cell_type -> CellSpec`` or a list of CellSpecs.
        estimator: an :class:`Estimator`, a registry name (``"egs"``) or ``{"type": "egs", "samples": 4}``.
        executor: ``"exact"`` or ``"sparse"`` (see :func:`apply_executor`); ``None`` takes the estimator's
            native one (``"sparse"`` for GDAS, ``"exact"`` otherwise).
        seed: seed of the logit initialisation (ignored if ``generator`` is given).
        generator: generator of the logit initialisation (default: ``seed``, else torch's global RNG).
        dtype: dtype of the logits.

    Attributes:
        logits: ``nn.ParameterDict`` cell type -> ``[E, K]`` parameter.
        extra: ``nn.ParameterDict`` of estimator-specific parameters (empty for the built-in estimators).
        cells: cell type -> :class:`CellSpec`.
        space: the search space, if one was given (used for cost tables).
        estimator: the :class:`Estimator`.
        executor: ``"exact"`` or ``"sparse"``.

    Example:
        >>> cell = CellSpec.dense("cell", 1, 3, ["none", "skip_connect", "conv"])
        >>> dist = ArchitectureDistribution([cell], {"type": "egs", "samples": 2}, seed=0)
        >>> arch = dist.sample(torch.Generator().manual_seed(1))
        >>> tuple(arch["cell"].weights.shape)
        (6, 3)
    """

    def __init__(
        self,
        space_or_cells: SearchSpace | Mapping[str, CellSpec] | Sequence[CellSpec] | CellSpec,
        estimator: Estimator | str | Mapping[str, Any] = "egs",
        executor: str | None = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        space, cells, space_name = _resolve_cells(space_or_cells)
        if not cells:
            raise ConfigError("ArchitectureDistribution needs at least one cell type")
        for ct in cells:
            if not ct or "." in ct:
                raise ConfigError(f"cell type names must be non-empty and contain no '.', got {ct!r}")
        self.space = space
        self.space_name = space_name
        self.cells: dict[str, CellSpec] = cells
        self.estimator: Estimator = build_estimator(estimator)
        executor = self.estimator.default_executor if executor is None else executor
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
        self.executor: str = executor
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.logits = nn.ParameterDict(
            {
                ct: nn.Parameter(
                    self.estimator.init_logits((spec.num_edges, spec.num_ops), generator, dtype=dtype)
                )
                for ct, spec in cells.items()
            }
        )
        self.extra = nn.ParameterDict(
            {k: nn.Parameter(v) for k, v in self.estimator.init_extra(cells, generator).items()}
        )

    # ------------------------------------------------------------------ schedules
    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Update the estimator's temperature / ensemble size (call at the start of every epoch)."""
        self.estimator.set_epoch(epoch, total_epochs)

    @property
    def temperature(self) -> float:
        return self.estimator.temperature

    @property
    def samples(self) -> int:
        """Current ensemble size M (1 for single-sample estimators)."""
        return self.estimator.samples

    # ------------------------------------------------------------------ views
    def _extra_kwargs(self) -> dict[str, Any]:
        """``{"extra": self.extra}`` for estimators whose deterministic view depends on their extra parameters
        (class attribute ``uses_extra = True``, e.g. EnTranNAS-DST's per-node thresholds); empty otherwise."""
        return {"extra": self.extra} if getattr(self.estimator, "uses_extra", False) else {}

    def probs(self) -> dict[str, Tensor]:
        """Deterministic ``[E, K]`` probabilities per cell type (differentiable)."""
        kw = self._extra_kwargs()
        return {ct: self.estimator.probs(self.logits[ct], spec, **kw) for ct, spec in self.cells.items()}

    def _available(self, spec: CellSpec) -> Tensor | None:
        return self.estimator.mask_of(spec, self.logits[spec.cell_type])

    def sample(
        self,
        generator: torch.Generator | None = None,
        *,
        epoch_state: Mapping[str, Any] | None = None,
        uniform: bool = False,
    ) -> ArchSample:
        """Draw one sample per cell type (shared by every cell of that type in one forward pass).

        Args:
            generator: source of randomness (``None``: torch's global RNG).
            epoch_state: optional ``{"tau": ..., "samples": ...}`` override of the current schedule values.
            uniform: draw with every logit at zero (uniform op probabilities, no gradient to the logits):
                the estimator, temperature, masks and extra parameters are unchanged. See
                ``SearchConfig.weight_sampling``.
        """
        cells = {}
        for ct, spec in self.cells.items():
            logits = torch.zeros_like(self.logits[ct]).detach() if uniform else self.logits[ct]
            s = self.estimator.sample(
                logits, spec, generator=generator, epoch_state=epoch_state, extra=self.extra
            )
            cells[ct] = apply_executor(
                s, self.executor, self._available(spec), carriers=getattr(self.estimator, "carriers", True)
            )
        return ArchSample(cells, hard=bool(self.estimator.hard))

    def mode(self) -> ArchSample:
        """The deterministic sample: probabilities as (differentiable) weights."""
        cells = {}
        kw = self._extra_kwargs()
        for ct, spec in self.cells.items():
            s = self.estimator.mode(self.logits[ct], spec, **kw)
            cells[ct] = apply_executor(
                s, self.executor, self._available(spec), carriers=getattr(self.estimator, "carriers", True)
            )
        return ArchSample(cells, hard=False)

    def entropy(self) -> Tensor:
        """Sum over cell types and edges of the per-edge categorical entropy of :meth:`probs`."""
        return torch.stack([-torch.special.xlogy(p, p).sum() for p in self.probs().values()]).sum()

    def edge_logits(self) -> dict[str, Tensor]:
        """``{"normal/0->2": logits row, ...}``: rows keyed by stable edge names (views, differentiable)."""
        return {
            spec.edge_key(r): self.logits[ct][r]
            for ct, spec in self.cells.items()
            for r in range(spec.num_edges)
        }

    def edge_probs(self) -> dict[str, Tensor]:
        """Like :meth:`edge_logits`, for :meth:`probs`."""
        probs = self.probs()
        return {
            spec.edge_key(r): probs[ct][r] for ct, spec in self.cells.items() for r in range(spec.num_edges)
        }

    def to_table(self, *, digits: int = 3) -> str:
        """A Markdown table per cell type: one row per edge, one column per op, the probabilities."""
        out: list[str] = []
        with torch.no_grad():
            probs = self.probs()
        for ct, spec in self.cells.items():
            p = probs[ct].detach().cpu().tolist()
            out.append(f"**{ct}** (estimator {self.estimator.name}, tau={self.temperature:g})")
            out.append("")
            out.append("| edge | " + " | ".join(spec.ops) + " |")
            out.append("|---|" + "---|" * spec.num_ops)
            for r in range(spec.num_edges):
                best = max(range(spec.num_ops), key=lambda k: (p[r][k], -k))
                cols = [
                    (f"**{v:.{digits}f}**" if k == best else f"{v:.{digits}f}") for k, v in enumerate(p[r])
                ]
                out.append(f"| {spec.edge_key(r)} | " + " | ".join(cols) + " |")
            out.append("")
        return "\n".join(out).rstrip() + "\n"

    # ------------------------------------------------------------------ pruning
    def set_mask(self, cell_type: str, mask: Tensor | None) -> None:
        """Restrict ``cell_type`` to the ops where ``mask`` is True (DrNAS pruning); ``None`` clears it."""
        if cell_type not in self.cells:
            raise ConfigError(f"unknown cell type {cell_type!r}; cell types: {', '.join(self.cells)}")
        spec = self.cells[cell_type]
        if mask is not None and tuple(torch.as_tensor(mask).shape) != (spec.num_edges, spec.num_ops):
            raise ConfigError(
                f"mask for {cell_type!r} must have shape [{spec.num_edges}, {spec.num_ops}], "
                f"got {tuple(torch.as_tensor(mask).shape)}"
            )
        self.estimator.set_mask(cell_type, mask)

    # ------------------------------------------------------------------ state
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture optimiser's parameters (same as ``parameters()``)."""
        return list(self.parameters())

    def config(self) -> dict[str, Any]:
        """Identifying configuration (for run manifests and resume checks)."""
        return {
            "space": self.space_name,
            "cells": {ct: {"edges": s.num_edges, "ops": list(s.ops)} for ct, s in self.cells.items()},
            "estimator": self.estimator.config(),
            "executor": self.executor,
        }

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator.state_dict(),
            "estimator_name": self.estimator.name,
            "executor": self.executor,
            "cells": {ct: [s.num_edges, s.num_ops] for ct, s in self.cells.items()},
        }

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, Mapping) or "estimator" not in state:
            raise CheckpointError("architecture-distribution state has no estimator state")
        name = state.get("estimator_name")
        if name != self.estimator.name:
            raise CheckpointError(
                f"checkpoint was made with estimator {name!r}; this distribution uses {self.estimator.name!r}"
            )
        shapes = {ct: [s.num_edges, s.num_ops] for ct, s in self.cells.items()}
        if "cells" in state and {k: list(v) for k, v in state["cells"].items()} != shapes:
            raise CheckpointError(
                f"checkpoint cells {state['cells']} do not match this distribution's {shapes}"
            )
        if state.get("executor", self.executor) != self.executor:
            logger.warning(
                "checkpoint used executor %r, this distribution uses %r", state.get("executor"), self.executor
            )
        self.estimator.load_state_dict(state["estimator"])

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}, executor={self.executor!r}, space={self.space_name!r}"
