"""Estimators: how architecture logits become the forward weights of one cell type.

An :class:`Estimator` turns a ``[E, K]`` logit matrix (row ``e`` = edge ``spec.edges[e]``, column ``k`` = op
``spec.ops[k]``) into a :class:`~datanas_core.sample.CellSample`: differentiable forward ``weights``, the
``mask`` of op outputs to compute, the deterministic ``probs`` and the detached realised ``code``. Estimators
hold no parameters (those live in :class:`~datanas_core.distribution.ArchitectureDistribution`); their only
state is the epoch state (temperature ``tau``, ensemble size ``M``), a pure function of the epoch through
:mod:`datanas_core.schedules`, plus optional per-cell-type pruning masks.

Registered in :data:`ESTIMATORS`:

========== ===================================================== ============== ======================
name       forward weights                                       native mask    method
========== ===================================================== ============== ======================
softmax    ``softmax(alpha / tau)``                              all ops        DARTS (EnTranNAS tau)
snas       ``softmax((log_softmax(alpha) + g) / tau)`` (soft)    all ops        SNAS
gdas       one-hot(argmax) + s - sg(s), one op                   selected op    GDAS
egs        OR (max) of M hard ST samples, renormalised           all ops        DATA
dirichlet  ``Dirichlet(ELU(alpha) + 1).rsample()``               non-pruned     DrNAS
gumbel     generic :class:`GumbelFamily` (all flags exposed)     configurable   --
========== ===================================================== ============== ======================

All Gumbel-type estimators are presets of :class:`GumbelFamily` (methods.md 8.3). Gumbel noise is drawn as
``-log(-log(u + 1e-10) + 1e-10)`` with ``u ~ U[0, 1)`` from the caller's :class:`torch.Generator` (drawn on
the generator's device and moved to the logits' device, so a CPU generator reproduces the same draws for CUDA
logits).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from datanas_core.errors import ConfigError, NumericalError
from datanas_core.registry import Registry
from datanas_core.sample import CellSample
from datanas_core.schedules import (
    IntSchedule,
    Schedule,
    parse_int_schedule,
    parse_temperature,
)
from datanas_core.space.base import CellSpec

__all__ = [
    "ESTIMATORS",
    "ConcreteEstimator",
    "DirichletEstimator",
    "EGSEstimator",
    "Estimator",
    "GDASEstimator",
    "GumbelFamily",
    "SoftmaxEstimator",
    "build_estimator",
    "gumbel_noise",
]

logger = logging.getLogger(__name__)

ESTIMATORS: Registry[type] = Registry("estimator")

#: eps inside the Gumbel transform and the log of relu-normalised probabilities (DATA's ``gumbelmodule``).
LOG_EPS = 1e-10
#: eps of DATA's relu normalisation ``relu(a) / (sum relu(a) + 1e-7)``.
RELU_EPS = 1e-7
#: eps of DATA's code renormalisation ``z / (sum z + 1e-9)``.
CODE_EPS = 1e-9

_NORMALIZE = ("softmax", "relu")
_GRANULARITY = ("edge", "node", "node_edge_mean")
_COMBINE = ("max", "prob_or")
_CODE_NORM = ("none", "sum", "non_none")


def _choice(what: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid values: {', '.join(valid)}")
    return str(value)


def _uniform(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> Tensor:
    if generator is None:
        return torch.rand(tuple(shape), device=device, dtype=dtype)
    u = torch.rand(tuple(shape), generator=generator, device=generator.device, dtype=dtype)
    return u.to(device)


def gumbel_noise(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard Gumbel noise ``-log(-log(u + 1e-10) + 1e-10)``, always finite.

    Args:
        shape: output shape.
        generator: source of randomness (``None``: torch's global RNG).
        device: device of the result (the draw happens on the generator's device).
        dtype: floating dtype.
    """
    u = _uniform(shape, generator, torch.device(device), dtype)
    return -torch.log(-torch.log(u + LOG_EPS) + LOG_EPS)


@dataclass(frozen=True)
class _Units:
    """Index layout of node-granularity sampling for one cell spec on one device."""

    rows: Tensor  # [U, D] edge rows of each node's in-edges (padded with 0)
    valid: Tensor  # [U, D] bool
    unit_of_row: Tensor  # [E]
    slot_of_row: Tensor  # [E]


class Estimator:
    """Base class: logits ``[E, K]`` -> :class:`CellSample` for one cell type.

    Subclasses implement :meth:`probs` and :meth:`sample`. The epoch state (``tau``, ``samples``) is set by
    :meth:`set_epoch` from the schedules and is the only mutable state besides pruning masks.

    Args:
        tau: temperature schedule (number, ``"linear:5:1"``, mapping or schedule object); must stay > 0.
        init_mean: mean of the Gaussian initialisation of the logits.
        init_std: standard deviation of the Gaussian initialisation of the logits.

    Attributes:
        name: registry name.
        stochastic: whether :meth:`sample` draws random numbers.
        hard: whether the sampled codes are discrete (the ArchSample's ``hard`` flag).
        default_executor: ``"exact"`` (compute every op) or ``"sparse"`` (compute non-zero weights only).
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    hard: ClassVar[bool] = False
    default_executor: ClassVar[str] = "exact"

    def __init__(
        self,
        *,
        tau: Schedule | float | str | Mapping[str, Any] = 1.0,
        init_mean: float = 0.0,
        init_std: float = 1e-3,
    ) -> None:
        self.tau_schedule: Schedule = parse_temperature(tau)
        self.samples_schedule: IntSchedule = parse_int_schedule(1)
        if not math.isfinite(init_mean) or not math.isfinite(init_std) or init_std < 0:
            raise ConfigError(f"init_mean must be finite and init_std >= 0, got {init_mean}, {init_std}")
        self.init_mean = float(init_mean)
        self.init_std = float(init_std)
        self._masks: dict[str, Tensor] = {}
        self._state: dict[str, Any] = {}
        self._config: dict[str, Any] = {"tau": _spec_of(tau), "init_mean": init_mean, "init_std": init_std}
        self.set_epoch(0, 1)

    # ------------------------------------------------------------------ epoch state
    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Update the temperature and ensemble size for ``epoch`` (0-based) of ``total_epochs``.

        Raises:
            ConfigError: bad epoch numbers, a temperature <= 0 or an ensemble size < 1.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"epoch must be an int >= 0, got {epoch!r}")
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ConfigError(f"total_epochs must be an int >= 1, got {total_epochs!r}")
        tau = float(self.tau_schedule.value(epoch, total_epochs))
        if not (math.isfinite(tau) and tau > 0):
            raise ConfigError(
                f"temperature must be > 0, the schedule gives {tau} at epoch {epoch}/{total_epochs}"
            )
        samples = int(self.samples_schedule.value(epoch, total_epochs))
        self._state = {"epoch": epoch, "total_epochs": total_epochs, "tau": tau, "samples": samples}

    @property
    def temperature(self) -> float:
        """Current temperature."""
        return float(self._state["tau"])

    @property
    def samples(self) -> int:
        """Current ensemble size M (1 for single-sample estimators)."""
        return int(self._state["samples"])

    @property
    def epoch_state(self) -> dict[str, Any]:
        return dict(self._state)

    def state_dict(self) -> dict[str, Any]:
        """Current epoch state and pruning masks (plain Python + bool tensors)."""
        return {
            "name": self.name,
            **self._state,
            "masks": {k: v.detach().cpu().clone() for k, v in self._masks.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (values are taken verbatim)."""
        from datanas_core.errors import CheckpointError

        if state.get("name", self.name) != self.name:
            raise CheckpointError(f"estimator state is for {state.get('name')!r}, not {self.name!r}")
        missing = [k for k in ("epoch", "total_epochs", "tau", "samples") if k not in state]
        if missing:
            raise CheckpointError(f"estimator state lacks {missing}; keys present: {sorted(state)}")
        self.set_epoch(int(state["epoch"]), int(state["total_epochs"]))
        tau, samples = float(state["tau"]), int(state["samples"])
        if not (math.isfinite(tau) and tau > 0) or samples < 1:
            raise CheckpointError(f"invalid estimator state tau={tau}, samples={samples}")
        self._state.update(tau=tau, samples=samples)
        self._masks = {k: torch.as_tensor(v, dtype=torch.bool) for k, v in state.get("masks", {}).items()}

    def config(self) -> dict[str, Any]:
        """``{"type": name, **options}``: enough to rebuild this estimator with :func:`build_estimator`."""
        return {"type": self.name, **self._config}

    def _resolve_state(self, epoch_state: Mapping[str, Any] | None) -> tuple[float, int]:
        tau, samples = self.temperature, self.samples
        if epoch_state is not None:
            tau = float(epoch_state.get("tau", tau))
            samples = int(epoch_state.get("samples", samples))
            if not (math.isfinite(tau) and tau > 0):
                raise ConfigError(f"temperature must be > 0, got tau={tau}")
            if samples < 1:
                raise ConfigError(f"the ensemble size M must be >= 1, got {samples}")
        return tau, samples

    # ------------------------------------------------------------------ masks
    def set_mask(self, cell_type: str, mask: Tensor | None) -> None:
        """Restrict ``cell_type`` to the ops where ``mask`` (bool ``[E, K]``) is True (DrNAS pruning).

        Masked-out ops get probability and weight 0 and are never sampled. ``None`` removes the mask.

        Raises:
            ConfigError: a row of the mask keeps no op.
        """
        if mask is None:
            self._masks.pop(cell_type, None)
            return
        m = torch.as_tensor(mask).to(torch.bool).detach()
        if m.dim() != 2:
            raise ConfigError(f"mask for {cell_type!r} must be [E, K], got shape {tuple(m.shape)}")
        if not bool(m.any(dim=-1).all()):
            bad = torch.nonzero(~m.any(dim=-1)).flatten().tolist()
            raise ConfigError(f"mask for {cell_type!r} keeps no op on edge row(s) {bad}")
        self._masks[cell_type] = m.cpu()

    def mask_of(self, spec: CellSpec | None, like: Tensor) -> Tensor | None:
        """The pruning mask of ``spec``'s cell type on ``like``'s device, or ``None``."""
        if spec is None or spec.cell_type not in self._masks:
            return None
        m = self._masks[spec.cell_type]
        if tuple(m.shape) != tuple(like.shape):
            raise ConfigError(
                f"mask for {spec.cell_type!r} has shape {tuple(m.shape)}, logits have {tuple(like.shape)}"
            )
        return m.to(like.device)

    # ------------------------------------------------------------------ interface
    def init_logits(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Initial logits ``init_mean + init_std * N(0, 1)`` (on the generator's device, default CPU)."""
        device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return self.init_mean + self.init_std * z

    def init_extra(
        self, cells: Mapping[str, CellSpec], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Extra architecture parameters this estimator needs (none by default; hook for thresholds,
        latents)."""
        return {}

    def probs(self, logits: Tensor, spec: CellSpec | None = None) -> Tensor:
        """Deterministic ``[E, K]`` probabilities (rows sum to 1)."""
        raise NotImplementedError

    def sample(
        self,
        logits: Tensor,
        spec: CellSpec,
        *,
        generator: torch.Generator | None = None,
        epoch_state: Mapping[str, Any] | None = None,
        extra: Mapping[str, Tensor] | None = None,
    ) -> CellSample:
        """Draw the forward weights of one cell type.

        Args:
            logits: ``[E, K]`` architecture parameters of the cell type.
            spec: the cell's spec (edge order, op names, cell type).
            generator: source of randomness (``None``: torch's global RNG).
            epoch_state: optional override of ``{"tau": ..., "samples": ...}`` (default: the current state).
            extra: extra architecture parameters (see :meth:`init_extra`).
        """
        raise NotImplementedError

    def mode(self, logits: Tensor, spec: CellSpec) -> CellSample:
        """The deterministic sample: the probabilities themselves as weights."""
        p = self.probs(logits, spec)
        self.check_finite(p, spec)
        m = self.mask_of(spec, logits)
        mask = torch.ones_like(p, dtype=torch.bool) if m is None else m
        return CellSample(p, mask, p.detach(), p.detach(), False, self.temperature)

    # ------------------------------------------------------------------ helpers
    def check_logits(self, logits: Tensor, spec: CellSpec) -> None:
        if logits.dim() != 2 or tuple(logits.shape) != (spec.num_edges, spec.num_ops):
            raise ConfigError(
                f"logits for cell type {spec.cell_type!r} must have shape [{spec.num_edges}, {spec.num_ops}] "
                f"(edges x ops), got {tuple(logits.shape)}"
            )

    @staticmethod
    def check_finite(p: Tensor, spec: CellSpec | None, what: str = "probabilities") -> None:
        """Raise :class:`NumericalError` naming the cell type and edges if ``p`` has NaN/inf."""
        finite = torch.isfinite(p)
        if bool(finite.all()):
            return
        ct = spec.cell_type if spec is not None else "?"
        rows = torch.nonzero(~finite.all(dim=-1)).flatten().tolist()
        names = [spec.edge_key(r) for r in rows] if spec is not None else [str(r) for r in rows]
        raise NumericalError(
            f"non-finite architecture {what} in cell type {ct!r} on edge(s) {', '.join(names[:8])}"
            f"{' ...' if len(names) > 8 else ''}; the architecture logits or their optimiser diverged"
        )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({opts})"


def _spec_of(v: Any) -> Any:
    to_dict = getattr(v, "to_dict", None)
    return to_dict() if callable(to_dict) else v


class GumbelFamily(Estimator):
    """Softmax / Concrete / hard straight-through / ensemble Gumbel estimators in one class.

    Per decision unit (an edge, or with ``granularity="node"`` all (in-edge, op) pairs of a node) with
    probabilities ``q`` and temperature ``tau``, draw ``M`` samples ``s_m = softmax((log q + g_m) / tau)``
    (``g_m = 0`` if ``noise=False``); with ``hard=True`` take ``h_m = onehot(argmax s_m) + s_m - sg(s_m)``
    (value exactly one-hot, gradient of ``s_m``), else ``h_m = s_m``. Combine the ``M`` samples with
    ``combine`` (``"max"``: element-wise max, gradient to the sample attaining it; ``"prob_or"``:
    ``1 - prod_m (1 - h_m)``, same forward value on hard samples) and renormalise with ``code_norm``
    (``"none"``, ``"sum"``: ``z / (sum z + 1e-9)``, ``"non_none"``: ``z / (sum_{k != none} z + 1e-9)``).

    Args:
        tau: temperature schedule (> 0 at every epoch).
        samples: ensemble size M, an int or integer schedule (>= 1). ``M`` is an alias.
        M: alias of ``samples``.
        hard: straight-through one-hot samples instead of soft Concrete samples.
        noise: add Gumbel noise (``False`` with ``hard=False`` is the deterministic softmax relaxation).
        normalize: ``"softmax"`` (``q = softmax(alpha)``) or ``"relu"`` (``q = relu(alpha) / (sum + 1e-7)``).
        granularity: ``"edge"`` (one categorical per edge), ``"node"`` (DATA's multi-node sampler,
            ``gumbel_sample_weight_multi_node``: one categorical per node over all its (in-edge, op) pairs,
            ``q = relu(alpha) / (sum_node relu(alpha) + 1e-7)`` over the node's flattened logits for
            ``normalize="relu"``, ``softmax`` of the flattened logits for ``"softmax"``; an edge whose logits
            are larger overall gets more mass) or ``"node_edge_mean"`` (a datanas variant, the former
            ``"node"``: the per-edge probability rows of the node divided by their total, so every in-edge
            gets the same mass ``1/d``; the convention of DATA's node-level *derivation*). Codes are
            renormalised over the node in both node modes.
        combine: ``"max"`` or ``"prob_or"``.
        code_norm: ``"none"``, ``"sum"`` or ``"non_none"``.
        select_only: compute only the selected ops (native mask = non-zero weights, gradient carriers for
            the rest: the GDAS executor) instead of every op.
        carriers: with ``select_only`` (or the sparse executor), add the non-selected ops' weights to the
            edge output as zero-valued gradient carriers (AutoDL's NB201 GDAS). ``False``: the sampled op
            alone, ``h_k* o_k*(x)`` (AutoDL's NASNet/DARTS-space GDAS); the other logits then get gradient
            only through the softmax of ``h_k*``.
        resample_nonfinite: redraw the noise if the soft sample is not finite (GDAS); costs one host sync.
        probs_use_tau: :meth:`probs` returns ``softmax(alpha / tau)`` (softmax relaxation) instead of ``q``.
        init_mean: mean of the logit initialisation.
        init_std: standard deviation of the logit initialisation.
    """

    name: ClassVar[str] = "gumbel"

    def __init__(
        self,
        *,
        tau: Schedule | float | str | Mapping[str, Any] = 1.0,
        samples: IntSchedule | int | str | Mapping[str, Any] | None = None,
        M: IntSchedule | int | str | Mapping[str, Any] | None = None,
        hard: bool = True,
        noise: bool = True,
        normalize: str = "softmax",
        granularity: str = "edge",
        combine: str = "max",
        code_norm: str = "none",
        select_only: bool = False,
        carriers: bool = True,
        resample_nonfinite: bool = False,
        probs_use_tau: bool = False,
        init_mean: float = 0.0,
        init_std: float = 1e-3,
    ) -> None:
        if samples is not None and M is not None and _spec_of(samples) != _spec_of(M):
            raise ConfigError(
                f"give the ensemble size once: samples={samples!r} and its alias M={M!r} differ"
            )
        m_spec = samples if samples is not None else (M if M is not None else 1)
        self._hard = bool(hard)
        self._noise = bool(noise)
        self.normalize = _choice("normalize", normalize, _NORMALIZE)
        self.granularity = _choice("granularity", granularity, _GRANULARITY)
        self.combine = _choice("combine", combine, _COMBINE)
        self.code_norm = _choice("code_norm", code_norm, _CODE_NORM)
        self.select_only = bool(select_only)
        self.carriers = bool(carriers)
        self.resample_nonfinite = bool(resample_nonfinite)
        self.probs_use_tau = bool(probs_use_tau)
        self._units_cache: dict[tuple[CellSpec, str], _Units] = {}
        self._none_cache: dict[tuple[CellSpec, str], Tensor] = {}
        samples_schedule = parse_int_schedule(m_spec, minimum=1, what="the ensemble size M")
        super().__init__(tau=tau, init_mean=init_mean, init_std=init_std)
        self.samples_schedule = samples_schedule
        self.set_epoch(0, 1)
        self._config.update(
            samples=_spec_of(m_spec),
            hard=self._hard,
            noise=self._noise,
            normalize=self.normalize,
            granularity=self.granularity,
            combine=self.combine,
            code_norm=self.code_norm,
            select_only=self.select_only,
            carriers=self.carriers,
            resample_nonfinite=self.resample_nonfinite,
            probs_use_tau=self.probs_use_tau,
        )

    # the ClassVar flags of the base class become per-instance here
    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self._noise

    @property
    def hard(self) -> bool:  # type: ignore[override]
        return self._hard

    @property
    def default_executor(self) -> str:  # type: ignore[override]
        return "sparse" if self.select_only else "exact"

    # ------------------------------------------------------------------ probabilities
    def probs(self, logits: Tensor, spec: CellSpec | None = None) -> Tensor:
        mask = self.mask_of(spec, logits)
        if self.normalize == "relu":
            r = F.relu(logits)
            if mask is None:
                return r / (r.sum(-1, keepdim=True) + RELU_EPS)
            p = (r * mask) / ((r * mask).sum(-1, keepdim=True) + RELU_EPS)
            # A row that keeps one op (a progressive decision, a fully pruned edge) has probability exactly
            # 1 on it, as with softmax: relu(a) / (relu(a) + 1e-7) would still pass a tiny gradient that
            # Adam scales up to lr-sized steps, and the op's logit could drift below 0 (probability 0: the
            # decided edge would vanish from the supernet and the derived cell).
            one = mask.sum(-1, keepdim=True) == 1
            return torch.where(one, mask.to(p.dtype), p)
        a = logits / self.temperature if self.probs_use_tau else logits
        if mask is not None:
            a = a.masked_fill(~mask, float("-inf"))
        return torch.softmax(a, dim=-1)

    def _log_q(self, logits: Tensor, p: Tensor, mask: Tensor | None) -> Tensor:
        """Per-edge log-probabilities that the Gumbel perturbation is added to."""
        if self.normalize == "relu":
            lq = torch.log(p + LOG_EPS)
            return lq if mask is None else lq.masked_fill(~mask, float("-inf"))
        a = logits if mask is None else logits.masked_fill(~mask, float("-inf"))
        return torch.log_softmax(a, dim=-1)

    # ------------------------------------------------------------------ layouts
    def _none_mask(self, spec: CellSpec, device: torch.device) -> Tensor:
        key = (spec, str(device))
        if key not in self._none_cache:
            self._none_cache[key] = torch.tensor(
                [op == "none" for op in spec.ops], dtype=torch.bool, device=device
            )
        return self._none_cache[key]

    def _units(self, spec: CellSpec, device: torch.device) -> _Units:
        key = (spec, str(device))
        if key not in self._units_cache:
            by_dst: dict[int, list[int]] = {n: [] for n in spec.nodes}
            for r, (_, dst) in enumerate(spec.edges):
                if dst in by_dst:
                    by_dst[dst].append(r)
            groups = [g for g in by_dst.values() if g]
            covered = sorted(r for g in groups for r in g)
            if covered != list(range(spec.num_edges)):
                raise ConfigError(
                    f"node granularity needs every edge of {spec.cell_type!r} to end at an intermediate node"
                )
            d = max(len(g) for g in groups)
            rows = torch.zeros(len(groups), d, dtype=torch.long)
            valid = torch.zeros(len(groups), d, dtype=torch.bool)
            unit_of_row = torch.zeros(spec.num_edges, dtype=torch.long)
            slot_of_row = torch.zeros(spec.num_edges, dtype=torch.long)
            for u, g in enumerate(groups):
                for s, r in enumerate(g):
                    rows[u, s], valid[u, s] = r, True
                    unit_of_row[r], slot_of_row[r] = u, s
            self._units_cache[key] = _Units(
                rows.to(device), valid.to(device), unit_of_row.to(device), slot_of_row.to(device)
            )
        return self._units_cache[key]

    def _node_log_q(self, logits: Tensor, p: Tensor, u: _Units, impossible: Tensor) -> Tensor:
        """``[U, D*K]`` log-probabilities of the node-level categorical (``-inf``: impossible)."""
        tiny = torch.finfo(logits.dtype).tiny
        if self.granularity == "node_edge_mean":
            q = p[u.rows] * u.valid.unsqueeze(-1)  # [U, D, K]
            q = q / q.sum(dim=(1, 2), keepdim=True).clamp_min(tiny)
            # clamp (softmax): log(0) would make the gradient of padded/pruned entries NaN
            lq = torch.log(q + LOG_EPS) if self.normalize == "relu" else torch.log(q.clamp_min(tiny))
            return lq.masked_fill(impossible, float("-inf")).flatten(1)
        a = logits[u.rows]  # [U, D, K]: the node's in-edge logits, flattened per node below
        if self.normalize == "relu":
            # DATA: relu(alpha) over the flattened node, divided by (sum + 1e-7), log(q + 1e-10)
            r = F.relu(a).masked_fill(impossible, 0.0)
            q = r / (r.sum(dim=(1, 2), keepdim=True) + RELU_EPS)
            lq = torch.log(q + LOG_EPS)
            return lq.masked_fill(impossible, float("-inf")).flatten(1)
        lq = torch.log_softmax(a.masked_fill(impossible, float("-inf")).flatten(1), dim=-1)
        return lq.masked_fill(impossible.flatten(1), float("-inf"))

    # ------------------------------------------------------------------ sampling core
    def _draw(
        self,
        logq: Tensor,
        none: Tensor,
        tau: float,
        samples: int,
        generator: torch.Generator | None,
        spec: CellSpec,
    ) -> Tensor:
        """``logq: [U, N]`` (``-inf`` = impossible) -> normalised differentiable code ``[U, N]``."""
        shape = (samples, *logq.shape)
        for attempt in range(10 if self.resample_nonfinite else 1):
            if self._noise:
                g = gumbel_noise(shape, generator=generator, device=logq.device, dtype=logq.dtype)
                y = (logq + g) / tau
            else:
                y = (logq / tau).expand(shape)
            s = torch.softmax(y, dim=-1)
            if not self.resample_nonfinite or bool(torch.isfinite(s).all()):
                break
            logger.debug("non-finite Gumbel sample in %s (attempt %d); resampling", spec.cell_type, attempt)
        else:
            raise NumericalError(
                f"Gumbel-softmax sample for cell type {spec.cell_type!r} stayed non-finite after 10 draws "
                f"(tau={tau})"
            )
        if self._hard:
            one = F.one_hot(y.argmax(dim=-1), logq.shape[-1]).to(s.dtype)
            h = one + (s - s.detach())  # value exactly one-hot, gradient of s
        else:
            h = s
        if samples == 1:
            z = h[0]
        elif self.combine == "max":
            z = h.max(dim=0).values
        else:
            z = 1.0 - torch.prod(1.0 - h, dim=0)
        if self.code_norm == "sum":
            return z / (z.sum(-1, keepdim=True) + CODE_EPS)
        if self.code_norm == "non_none":
            denom = (z * (~none).to(z.dtype)).sum(-1, keepdim=True)
            # DATA divides by (sum + 1e-9); when a draw picks only `none` that is 1e-9 and the gradient of
            # the other ops is multiplied by 1e9. Divide by 1 instead in that case (forward value unchanged:
            # the edge output is the none op's zero either way).
            denom = torch.where(denom.detach() > 0, denom + CODE_EPS, torch.ones_like(denom))
            return z / denom
        return z

    def sample(
        self,
        logits: Tensor,
        spec: CellSpec,
        *,
        generator: torch.Generator | None = None,
        epoch_state: Mapping[str, Any] | None = None,
        extra: Mapping[str, Tensor] | None = None,
    ) -> CellSample:
        self.check_logits(logits, spec)
        tau, samples = self._resolve_state(epoch_state)
        mask = self.mask_of(spec, logits)
        p = self.probs(logits, spec)
        self.check_finite(p, spec)
        logq = self._log_q(logits, p, mask)
        none = self._none_mask(spec, logits.device)
        if self.granularity == "edge":
            w = self._draw(logq, none, tau, samples, generator, spec)
        else:
            u = self._units(spec, logits.device)
            impossible = ~u.valid.unsqueeze(-1).expand(*u.rows.shape, logits.shape[-1])
            if mask is not None:
                impossible = impossible | ~mask[u.rows]
            lq = self._node_log_q(logits, p, u, impossible)
            n_u, d, k = impossible.shape
            none_u = (none.expand(d, k) & u.valid.unsqueeze(-1)).flatten(1)  # [U, D*K]
            wz = self._draw(lq, none_u, tau, samples, generator, spec).view(n_u, d, k)
            w = wz[u.unit_of_row, u.slot_of_row]
        if self.select_only:
            nat_mask = w.detach() != 0
            proxy = self.carriers
        else:
            nat_mask = torch.ones_like(w, dtype=torch.bool) if mask is None else mask
            proxy = False
        code = w.detach() if self._noise else None
        return CellSample(w, nat_mask, p, code, proxy, tau)


@ESTIMATORS.register("softmax")
class SoftmaxEstimator(GumbelFamily):
    """DARTS' continuous relaxation: weights ``softmax(alpha / tau)``, every op computed, no noise.

    Args:
        tau: temperature schedule (1 = DARTS; EnTranNAS uses a temperature).
        init_std: logits start at ``init_std * N(0, 1)`` (DARTS: 1e-3).
    """

    name: ClassVar[str] = "softmax"

    def __init__(
        self, *, tau: Schedule | float | str | Mapping[str, Any] = 1.0, init_std: float = 1e-3
    ) -> None:
        super().__init__(
            tau=tau,
            hard=False,
            noise=False,
            normalize="softmax",
            probs_use_tau=True,
            init_mean=0.0,
            init_std=init_std,
        )
        self._config = {"tau": _spec_of(tau), "init_std": init_std}


@ESTIMATORS.register("snas")
class ConcreteEstimator(GumbelFamily):
    """SNAS' soft concrete sample ``softmax((log_softmax(alpha) + g) / tau)``; every op computed.

    SNAS parametrises ``log alpha`` directly; since softmax is shift invariant,
    ``softmax((log alpha + g)/tau)`` equals the form above, and :meth:`probs` is ``softmax(alpha)``.

    Args:
        tau: temperature schedule; default linear 1 -> 0.03 over the run (SNAS).
        init_mean: logits start at ``N(init_mean, init_std)``; SNAS: N(1, 0.01).
        init_std: see ``init_mean``.
    """

    name: ClassVar[str] = "snas"

    def __init__(
        self,
        *,
        tau: Schedule | float | str | Mapping[str, Any] = "linear:1:0.03",
        init_mean: float = 1.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(
            tau=tau, hard=False, noise=True, normalize="softmax", init_mean=init_mean, init_std=init_std
        )
        self._config = {"tau": _spec_of(tau), "init_mean": init_mean, "init_std": init_std}


@ESTIMATORS.register("gdas")
class GDASEstimator(GumbelFamily):
    """GDAS: one hard straight-through Gumbel sample per edge, only the sampled op computed.

    ``h = onehot(argmax s) + s - sg(s)`` with ``s = softmax((log_softmax(alpha) + g) / tau)``. The native
    executor is sparse: ``mask`` is the one-hot and ``grad_proxy=True``, so the other ops' weights are added
    as zero-valued scalars and their logits still receive gradient. Non-finite soft samples are redrawn.

    Carriers: AutoDL's NB201 GDAS cell adds them (``carriers=True``, default); its NASNet (DARTS-space) GDAS
    cell runs ``h_k* o_k*(x)`` alone (``carriers=False``; the ``gdas`` preset picks this in DARTS spaces).

    Args:
        tau: temperature schedule; default linear 10 -> 0.1 over the run (AutoDL's GDAS).
        init_std: logits start at ``init_std * N(0, 1)``.
        carriers: add the non-selected ops' weights as zero-valued gradient carriers.
    """

    name: ClassVar[str] = "gdas"

    def __init__(
        self,
        *,
        tau: Schedule | float | str | Mapping[str, Any] = "linear:10:0.1",
        init_std: float = 1e-3,
        carriers: bool = True,
    ) -> None:
        super().__init__(
            tau=tau,
            hard=True,
            noise=True,
            normalize="softmax",
            select_only=True,
            carriers=carriers,
            resample_nonfinite=True,
            init_std=init_std,
        )
        self._config = {"tau": _spec_of(tau), "init_std": init_std, "carriers": self.carriers}


@ESTIMATORS.register("egs")
class EGSEstimator(GumbelFamily):
    """DATA's Ensemble Gumbel-Softmax: the OR of M hard straight-through Gumbel samples, renormalised.

    Per edge (or per node), draw M one-hot straight-through samples from ``p``, combine them by element-wise
    max (OR in value: between 1 and M ops on) and renormalise. Every op is computed (native executor
    "exact"), so ops whose weight is 0 still pass ``<dL/dy, o_k(x)>`` to the straight-through path.

    Normalisation (``normalize``):

    * ``"relu"`` (DATA default): ``p = relu(alpha) / (sum relu(alpha) + 1e-7)``, logits start at
      ``1 + 1e-3 N(0, 1)``; code ``z / (sum z + 1e-9)`` (rows sum to 1).
    * ``"softmax"``: ``p = softmax(alpha)``, logits start at ``1e-3 N(0, 1)``; code divided by the sum of its
      non-``none`` entries plus 1e-9 (non-``none`` entries sum to 1). Deviation: if a draw hits only
      ``none``, DATA's denominator is 1e-9 and blows the other ops' gradient up by 1e9; here it is 1 then.

    Temperature: DATA's code computes ``tau = 5 - 4 * epoch / 150`` but never passes the epoch, so the
    released runs used ``tau = 1`` throughout (methods.md 4(d), 4(h)). The default here is the *intended*
    schedule, linear 5 -> 1 over the run's epochs (reaching 1 at the last epoch; the search loop must call
    ``set_epoch``); pass ``tau=1.0`` to reproduce the released behaviour. On hard samples tau changes only the
    gradients, not the forward values.

    Combination: ``combine="max"`` is DATA's (the gradient of each coordinate goes to the one sample that
    attains the max); ``combine="prob_or"`` uses ``1 - prod_m (1 - h_m)``, which has the same forward value
    and spreads the gradient over the samples. The latter is a guess (methods.md 8.9), not in the paper or
    the code.

    Args:
        samples: ensemble size M (int or integer schedule, >= 1); constant 2 by default (DATA's
            ``--sample_times`` default; the released cells use M = 4 and 7). ``M`` is an alias.
        M: alias of ``samples``.
        tau: temperature schedule (> 0); see above.
        normalize: ``"relu"`` or ``"softmax"``.
        granularity: ``"edge"`` (DATA default), ``"node"`` (DATA's ``gumbel_sample_weight_multi_node``: one
            draw per node from ``relu(alpha)`` over all its (in-edge, op) pairs, normalised jointly) or
            ``"node_edge_mean"`` (datanas variant: every in-edge gets mass ``1/d``); see
            :class:`GumbelFamily`.
        combine: ``"max"`` or ``"prob_or"``.
        init_std: standard deviation of the logit initialisation (mean 1 for relu, 0 for softmax).
    """

    name: ClassVar[str] = "egs"

    def __init__(
        self,
        *,
        samples: IntSchedule | int | str | Mapping[str, Any] | None = None,
        M: IntSchedule | int | str | Mapping[str, Any] | None = None,
        tau: Schedule | float | str | Mapping[str, Any] = "linear:5:1",
        normalize: str = "relu",
        granularity: str = "edge",
        combine: str = "max",
        init_std: float = 1e-3,
    ) -> None:
        normalize = _choice("normalize", normalize, _NORMALIZE)
        if samples is None and M is None:
            samples = 2
        super().__init__(
            tau=tau,
            samples=samples,
            M=M,
            hard=True,
            noise=True,
            normalize=normalize,
            granularity=granularity,
            combine=combine,
            code_norm="sum" if normalize == "relu" else "non_none",
            init_mean=1.0 if normalize == "relu" else 0.0,
            init_std=init_std,
        )
        self._config = {
            "samples": self._config["samples"],
            "tau": _spec_of(tau),
            "normalize": normalize,
            "granularity": self.granularity,
            "combine": self.combine,
            "init_std": init_std,
        }


def _dirichlet_rsample(beta: Tensor, generator: torch.Generator | None) -> Tensor:
    """Pathwise Dirichlet sample; reproducible from ``generator`` (torch's sampler takes no generator).

    A seed is drawn from ``generator`` and the sample is taken inside :func:`torch.random.fork_rng` with the
    device's default generator seeded by it, so the global RNG state is left untouched.
    """
    dist = torch.distributions.Dirichlet(beta, validate_args=False)
    if generator is None:
        return dist.rsample()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    dev = beta.device
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[idx]):
            torch.cuda.default_generators[idx].manual_seed(seed)
            return dist.rsample()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        if dev.type == "cpu":
            return dist.rsample()
        cpu = torch.distributions.Dirichlet(beta.to("cpu"), validate_args=False)
        return cpu.rsample().to(dev)


@ESTIMATORS.register("dirichlet")
class DirichletEstimator(Estimator):
    """DrNAS: ``theta = Dirichlet(ELU(alpha) + 1).rsample()`` per edge (pathwise gradient).

    With a pruning mask (:meth:`set_mask`), ``theta <- theta * mask / sum(theta * mask)`` (sample over all K,
    zero the pruned ops, renormalise) and only the kept ops are computed.

    Args:
        probs_view: what :meth:`probs` returns: ``"softmax"`` (``softmax(alpha)`` masked, what DrNAS derives
            genotypes from; default) or ``"mean"`` (the Dirichlet mean ``beta / sum beta``). Per-edge argmax
            is the same for both; rankings across edges can differ.
        init_std: logits start at ``init_std * N(0, 1)`` (DrNAS: 1e-3, so beta ~ 1).
    """

    name: ClassVar[str] = "dirichlet"
    stochastic: ClassVar[bool] = True
    hard: ClassVar[bool] = False

    def __init__(self, *, probs_view: str = "softmax", init_std: float = 1e-3) -> None:
        super().__init__(tau=1.0, init_mean=0.0, init_std=init_std)
        self.probs_view = _choice("probs_view", probs_view, ("softmax", "mean"))
        self._config = {"probs_view": self.probs_view, "init_std": init_std}

    @staticmethod
    def concentration(logits: Tensor) -> Tensor:
        """``beta = ELU(alpha) + 1`` (> 0)."""
        return F.elu(logits) + 1.0

    def probs(self, logits: Tensor, spec: CellSpec | None = None) -> Tensor:
        mask = self.mask_of(spec, logits)
        if self.probs_view == "softmax":
            a = logits if mask is None else logits.masked_fill(~mask, float("-inf"))
            return torch.softmax(a, dim=-1)
        beta = self.concentration(logits)
        if mask is not None:
            beta = beta * mask
        return beta / beta.sum(-1, keepdim=True)

    def sample(
        self,
        logits: Tensor,
        spec: CellSpec,
        *,
        generator: torch.Generator | None = None,
        epoch_state: Mapping[str, Any] | None = None,
        extra: Mapping[str, Tensor] | None = None,
    ) -> CellSample:
        self.check_logits(logits, spec)
        self.check_finite(logits, spec, what="logits")
        p = self.probs(logits, spec)
        theta = _dirichlet_rsample(self.concentration(logits), generator)
        mask = self.mask_of(spec, logits)
        if mask is not None:
            theta = theta * mask
            theta = theta / theta.sum(-1, keepdim=True)
            nat_mask = mask
        else:
            nat_mask = torch.ones_like(theta, dtype=torch.bool)
        self.check_finite(theta, spec, what="Dirichlet sample")
        return CellSample(theta, nat_mask, p, theta.detach(), False, 1.0)


ESTIMATORS.register("gumbel", GumbelFamily)


def build_estimator(spec: Estimator | str | Mapping[str, Any]) -> Estimator:
    """An :class:`Estimator` from an instance, a registry name or ``{"type": name, **options}``.

    Raises:
        UnknownNameError: unknown estimator name (lists the registered ones).
        ConfigError: unknown or invalid options.
    """
    if isinstance(spec, Estimator):
        return spec
    est = ESTIMATORS.build(spec)
    if not isinstance(est, Estimator):
        raise ConfigError(f"estimator spec {spec!r} built {type(est).__name__}, not an Estimator")
    return est
