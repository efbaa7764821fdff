"""Architecture regularisers: scalar penalties on the architecture distribution, added to the alpha loss.

A :class:`Regularizer` is called as ``reg(distribution, sample)`` and returns the **unweighted** scalar
penalty; the search loop multiplies it by ``reg.weight`` (so logs can show both). Every penalty is
differentiable w.r.t. the architecture logits. Registered in :data:`REGULARIZERS`:

================= =======================================================================================
name              penalty
================= =======================================================================================
adc               :class:`DistributionConstraint` (DATA's ADC): ``sum_cells mean_{e,k} |p - sg(code)|``
dirichlet_kl      :class:`DirichletKL` (DrNAS): ``sum_cells sum_e KL(Dir(beta_e) || Dir(anchor))``
l2                :class:`L2Penalty`: ``sum alpha^2`` over all logits
entropy           :class:`EntropyPenalty`: mean per-edge entropy of the probabilities
expected_cost     :class:`ExpectedCost`: ``sum_cells sum_{e,k} p_{e,k} cost_{e,k}`` (linear, log or hinge)
================= =======================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError
from datanas_core.estimators import RELU_EPS
from datanas_core.registry import Registry
from datanas_core.sample import ArchSample
from datanas_core.space.base import SearchSpace

__all__ = [
    "REGULARIZERS",
    "DirichletKL",
    "DistributionConstraint",
    "EntropyPenalty",
    "ExpectedCost",
    "L2Penalty",
    "Regularizer",
    "build_regularizer",
]

REGULARIZERS: Registry[type] = Registry("regularizer")


def _check_weight(weight: float) -> float:
    w = float(weight)
    if not math.isfinite(w) or w < 0:
        raise ConfigError(f"regularizer weight must be finite and >= 0, got {weight!r}")
    return w


class Regularizer:
    """Base class. ``__call__(distribution, sample=None)`` returns the unweighted scalar penalty.

    Args:
        weight: multiplier applied by the search loop (``loss = task_loss + reg.weight * reg(dist, sample)``).
    """

    name: ClassVar[str] = ""
    #: whether the penalty needs the sample of the current forward pass.
    needs_sample: bool = False

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = _check_weight(weight)

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        raise NotImplementedError

    def weighted(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        """``weight * self(distribution, sample)``."""
        return self.weight * self(distribution, sample)

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "weight": self.weight}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({opts})"


@REGULARIZERS.register("adc")
class DistributionConstraint(Regularizer):
    """DATA's Architecture Distribution Constraint: pull the probabilities towards the detached sampled code.

    ``sum over cell types of mean_{e,k} d(p_{e,k}, sg(t_{e,k}))`` with ``p`` the estimator's probabilities
    and ``t`` the target. The defaults reproduce the released DATA code (``--arch_reg``): L1 distance
    (``F.l1_loss``, mean over the E x K entries), target = the normalised EGS code of the same forward pass,
    weight 0.1, added to the alpha loss only. The TPAMI paper's definition of ADC could not be read
    (methods.md 4(c), 9.2), so the form is configurable: ``distance`` (``"l1"``, ``"l2"`` = mean squared
    difference, ``"kl"`` = mean over edges of ``KL(t_e || p_e)`` with ``t_e`` renormalised to sum 1),
    ``target`` (``"sample"``, ``"uniform"`` or an explicit ``{cell_type: [E, K]}`` mapping) and ``weight``.

    Args:
        weight: multiplier applied by the search loop (DATA: 0.1).
        distance: ``"l1"``, ``"l2"`` or ``"kl"``.
        normalize: ``None`` (use the estimator's probabilities, DATA's choice: relu- or softmax-normalised)
            or ``"softmax"`` / ``"relu"`` to normalise the logits here instead.
        target: ``"sample"``, ``"uniform"`` or a mapping of ``[E, K]`` tensors.
    """

    name: ClassVar[str] = "adc"

    def __init__(
        self,
        weight: float = 0.1,
        distance: str = "l1",
        normalize: str | None = None,
        target: str | Mapping[str, Tensor] = "sample",
    ) -> None:
        super().__init__(weight)
        if distance not in ("l1", "l2", "kl"):
            raise ConfigError(f"unknown ADC distance {distance!r}; valid values: l1, l2, kl")
        if normalize not in (None, "softmax", "relu"):
            raise ConfigError(f"unknown ADC normalize {normalize!r}; valid values: None, softmax, relu")
        if isinstance(target, str) and target not in ("sample", "uniform"):
            raise ConfigError(f"unknown ADC target {target!r}; valid values: sample, uniform, or a mapping")
        self.distance = distance
        self.normalize = normalize
        self.target = target
        self.needs_sample = target == "sample"

    def _probs(self, distribution: ArchitectureDistribution) -> dict[str, Tensor]:
        if self.normalize is None:
            return distribution.probs()
        out = {}
        for ct, a in distribution.logits.items():
            if self.normalize == "softmax":
                out[ct] = torch.softmax(a, -1)
            else:
                r = F.relu(a)
                out[ct] = r / (r.sum(-1, keepdim=True) + RELU_EPS)
        return out

    def _target(self, ct: str, p: Tensor, sample: ArchSample | None) -> Tensor:
        if isinstance(self.target, Mapping):
            if ct not in self.target:
                raise ConfigError(f"ADC target mapping has no entry for cell type {ct!r}")
            return torch.as_tensor(self.target[ct], dtype=p.dtype, device=p.device).detach()
        if self.target == "uniform":
            return torch.full_like(p, 1.0 / p.shape[-1])
        if sample is None or ct not in sample or sample[ct].code is None:
            raise ConfigError(
                "ADC with target='sample' needs the ArchSample of the current forward pass from a stochastic "
                f"estimator (cell type {ct!r} has no code); pass the sample or use target='uniform'"
            )
        return sample[ct].code.detach().to(p.dtype)

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        terms = []
        for ct, p in self._probs(distribution).items():
            t = self._target(ct, p, sample)
            if t.shape != p.shape:
                raise ConfigError(
                    f"ADC target for {ct!r} has shape {tuple(t.shape)}, probabilities {tuple(p.shape)}"
                )
            if self.distance == "l1":
                terms.append(F.l1_loss(p, t))
            elif self.distance == "l2":
                terms.append(F.mse_loss(p, t))
            else:
                t = t.clamp_min(0)
                t = t / t.sum(-1, keepdim=True).clamp_min(torch.finfo(t.dtype).tiny)
                kl = (torch.special.xlogy(t, t) - t * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(
                    -1
                )
                terms.append(kl.mean())
        return torch.stack(terms).sum()

    def config(self) -> dict[str, Any]:
        tgt = self.target if isinstance(self.target, str) else "mapping"
        return {
            "type": self.name,
            "weight": self.weight,
            "distance": self.distance,
            "normalize": self.normalize,
            "target": tgt,
        }


@REGULARIZERS.register("dirichlet_kl")
class DirichletKL(Regularizer):
    """DrNAS' KL regulariser ``sum_cells sum_e KL(Dir(beta_e) || Dir(anchor))``, ``beta = ELU(alpha) + 1``.

    Args:
        weight: multiplier (DrNAS ``reg_scale``; its help text says 1e-3 suits the L2 form, tune it for KL).
        anchor: concentration of the uniform anchor Dirichlet (DrNAS: 1).
    """

    name: ClassVar[str] = "dirichlet_kl"

    def __init__(self, weight: float = 1e-3, anchor: float = 1.0) -> None:
        super().__init__(weight)
        if not math.isfinite(anchor) or anchor <= 0:
            raise ConfigError(f"Dirichlet anchor concentration must be > 0, got {anchor!r}")
        self.anchor = float(anchor)

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        conc = getattr(distribution.estimator, "concentration", None)
        if not callable(conc):
            raise ConfigError(
                "dirichlet_kl needs a Dirichlet estimator; this distribution uses "
                f"{distribution.estimator.name!r}"
            )
        terms = []
        for a in distribution.logits.values():
            beta = conc(a)
            q = torch.distributions.Dirichlet(beta, validate_args=False)
            anchor = torch.distributions.Dirichlet(torch.full_like(beta, self.anchor), validate_args=False)
            terms.append(torch.distributions.kl_divergence(q, anchor).sum())
        return torch.stack(terms).sum()

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "weight": self.weight, "anchor": self.anchor}


@REGULARIZERS.register("l2")
class L2Penalty(Regularizer):
    """``sum alpha^2`` over every logit matrix (DrNAS' default ``reg_type='l2'`` is this as weight decay).

    Args:
        weight: multiplier (DrNAS: 1e-3 as weight decay; as an explicit loss term use weight/2 for the same
            gradient).
    """

    name: ClassVar[str] = "l2"

    def __init__(self, weight: float = 1e-3) -> None:
        super().__init__(weight)

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        return torch.stack([a.pow(2).sum() for a in distribution.logits.values()]).sum()


@REGULARIZERS.register("entropy")
class EntropyPenalty(Regularizer):
    """Mean per-edge entropy of the probabilities over all edges of all cell types (lower = more decided).

    Args:
        weight: multiplier (a negative effect, i.e. encouraging entropy, is not supported: weight >= 0).
    """

    name: ClassVar[str] = "entropy"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        ents = [-torch.special.xlogy(p, p).sum(-1) for p in distribution.probs().values()]
        return torch.cat(ents).mean()


@REGULARIZERS.register("expected_cost")
class ExpectedCost(Regularizer):
    """Expected resource cost of the sampled architecture, so any estimator can search under a budget.

    ``C = sum_cells sum_{e,k} p_{e,k} cost_{e,k}`` with ``p`` the probabilities (or, with ``use_sample``, the
    forward weights of the current sample). Forms: ``"linear"``: ``C / scale`` (``scale`` = budget if given,
    else 1); ``"log"``: ``log(C)`` (SNAS' log penalty); ``"hinge"``: ``relu(C / budget - 1)`` (zero under
    budget).

    Args:
        weight: multiplier.
        metric: ``"params"`` or ``"flops"`` (the space's :meth:`SearchSpace.edge_costs` table).
        budget: target cost (needed for ``"hinge"``), in the table's units.
        form: ``"linear"``, ``"log"`` or ``"hinge"``.
        costs: explicit ``{cell_type: [E, K]}`` cost table (default: ``space.edge_costs(metric)``).
        use_sample: use the sample's forward weights instead of the probabilities.
        space: the space whose table is used when ``costs`` is not given (default: the distribution's).
    """

    name: ClassVar[str] = "expected_cost"

    def __init__(
        self,
        weight: float = 1e-2,
        metric: str = "params",
        budget: float | None = None,
        form: str = "linear",
        costs: Mapping[str, Tensor] | None = None,
        use_sample: bool = False,
        space: SearchSpace | None = None,
    ) -> None:
        super().__init__(weight)
        if metric not in ("params", "flops"):
            raise ConfigError(f"unknown cost metric {metric!r}; valid values: params, flops")
        if form not in ("linear", "log", "hinge"):
            raise ConfigError(f"unknown expected-cost form {form!r}; valid values: linear, log, hinge")
        if budget is not None and (not math.isfinite(budget) or budget <= 0):
            raise ConfigError(f"budget must be > 0, got {budget!r}")
        if form == "hinge" and budget is None:
            raise ConfigError("expected_cost with form='hinge' needs a budget")
        self.metric = metric
        self.budget = None if budget is None else float(budget)
        self.form = form
        self.use_sample = bool(use_sample)
        self.needs_sample = self.use_sample
        self._costs = None if costs is None else {k: torch.as_tensor(v).detach() for k, v in costs.items()}
        self.space = space

    def costs(self, distribution: ArchitectureDistribution) -> dict[str, Tensor]:
        """The cost table used (explicit, or the space's ``edge_costs(metric)``)."""
        if self._costs is None:
            space = self.space if self.space is not None else distribution.space
            if space is None:
                raise ConfigError(
                    "expected_cost needs a cost table: pass costs={cell_type: [E, K]} or build the "
                    "distribution from a SearchSpace that implements edge_costs()"
                )
            self._costs = {k: torch.as_tensor(v).detach() for k, v in space.edge_costs(self.metric).items()}
        return self._costs

    def expected(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        """The expected cost ``C`` (before the form is applied)."""
        costs = self.costs(distribution)
        if self.use_sample:
            if sample is None:
                raise ConfigError("expected_cost with use_sample=True needs the current ArchSample")
            weights = {ct: sample[ct].weights for ct in distribution.cells}
        else:
            weights = distribution.probs()
        terms = []
        for ct, w in weights.items():
            if ct not in costs:
                raise ConfigError(f"cost table has no entry for cell type {ct!r}; it has {sorted(costs)}")
            c = costs[ct].to(device=w.device, dtype=w.dtype)
            if c.shape != w.shape:
                raise ConfigError(
                    f"cost table for {ct!r} has shape {tuple(c.shape)}, expected {tuple(w.shape)}"
                )
            terms.append((w * c).sum())
        return torch.stack(terms).sum()

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        c = self.expected(distribution, sample)
        if self.form == "linear":
            return c / (self.budget if self.budget is not None else 1.0)
        if self.form == "log":
            return torch.log(c.clamp_min(torch.finfo(c.dtype).tiny))
        return F.relu(c / self.budget - 1.0)  # type: ignore[operator]

    def config(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "weight": self.weight,
            "metric": self.metric,
            "budget": self.budget,
            "form": self.form,
            "use_sample": self.use_sample,
        }


def build_regularizer(spec: Regularizer | str | Mapping[str, Any]) -> Regularizer:
    """A :class:`Regularizer` from an instance, a name or ``{"type": name, **options}``.

    Raises:
        UnknownNameError: unknown regulariser name (lists the registered ones).
        ConfigError: unknown or invalid options.
    """
    if isinstance(spec, Regularizer):
        return spec
    reg = REGULARIZERS.build(spec)
    if not isinstance(reg, Regularizer):
        raise ConfigError(f"regularizer spec {spec!r} built {type(reg).__name__}, not a Regularizer")
    return reg
