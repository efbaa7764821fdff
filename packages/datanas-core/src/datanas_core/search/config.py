"""Search configuration: one frozen, validated dataclass with named presets for each method.

A preset is a method's published recipe (:data:`PRESETS`, described by :data:`PRESET_SPECS`). Each preset
states the search spaces it supports and the derivation rule it uses in each kind of space (NB201: one op per
edge; DARTS: the method's own rule; the RNN space: one predecessor per node): pass the space to
:meth:`SearchConfig.preset` (or call :func:`preset_config`) and an unsupported pair raises a
:class:`~datanas_core.errors.ConfigError` naming the supported spaces.

Support matrix (space kinds, see :func:`space_kind`):

==================== ============ ============= ================== ===================================
preset               darts        darts_ext     nb201              rnn (lm.darts_rnn)
==================== ============ ============= ================== ===================================
data, data_m4/m7,    --           data          argmax_edge        data
data_short
darts, darts2        topk_edges   topk_edges    argmax_edge        topk_edges k=1
gdas                 topk_pairs   topk_pairs    argmax_edge        topk_edges k=1
                     (no carriers) (no carriers) (carriers)
snas                 --           all_edges_arg argmax_edge        topk_edges k=1
drnas                topk_edges   topk_edges    argmax_edge (the   topk_edges k=1
                                                NB201 recipe)
drnas_progressive    drnas_darts  --            drnas_nb201 only   --
                     only
entrannas            --           entrannas_darts entrannas_nb201  --
                                  only          only
e2nas                --           --            nb201, drnas_nb201 --
==================== ============ ============= ================== ===================================

``darts`` is the strict DARTS space (exactly 2 inputs per node); DATA's and SNAS' cells have any number of
inputs per node and need an extended space (``darts_ext``, ``seg.darts``). The EnTranNAS spaces are only
searched by ``entrannas``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from datanas_core.errors import ConfigError

__all__ = [
    "BUDGET_AWARE_SCHEDULE",
    "PRESETS",
    "PRESET_SPECS",
    "PresetSpec",
    "SearchConfig",
    "is_decision_window",
    "preset_config",
    "preset_method_fields",
    "preset_stages",
    "space_kind",
    "supported_spaces",
]

logger = logging.getLogger(__name__)


def is_decision_window(window: Any) -> bool:
    """Whether ``window`` is a valid :attr:`SearchConfig.progressive_decisions` window: two numbers ``(start,
    end)`` with ``0 <= start < end <= 1`` (the one check of the field and of ``--progressive-decisions``)."""
    return (
        isinstance(window, (tuple, list))
        and len(window) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in window)
        and 0.0 <= float(window[0]) < float(window[1]) <= 1.0
    )


#: The budget-aware architecture schedule (SearchConfig fields): per-step schedules, architecture lr = 24 /
#: the number of architecture steps under a cosine decay to 0, so a search of a few hundred architecture
#: steps moves the logits as far as a long one (docs/results/short-budget). The default of the vision and LM
#: search CLIs without ``--preset``, and what the undecided-search verdict suggests.
BUDGET_AWARE_SCHEDULE: Mapping[str, Any] = MappingProxyType(
    {"schedule_unit": "step", "arch_travel": 24.0, "a_lr_schedule": "cosine:1:0"}
)

_ORDERS = ("first", "second", "single_level")
_STEP_ORDERS = ("arch_first", "weight_first")
_EXECUTORS = ("exact", "sparse")
_SCHEDULE_UNITS = ("epoch", "step")
#: Estimators whose straight-through gradient of zero-weight ops needs every op computed (native "exact").
_HARD_EXACT = ("egs",)
_WEIGHT_SAMPLING = ("distribution", "uniform")
_W_OPTIMIZERS = ("sgd", "adam", "adamw")
_PRECISIONS = ("fp32", "bf16")
#: ``torch.compile`` modes of the supernet forward ("reduce-overhead" is its CUDA-graph mode); "off": eager.
_COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
#: How progressive decisions choose the next edge and its op (see :mod:`datanas_core.search.decisions`).
_DECISION_CRITERIA = ("margin", "fix", "remove")


def _native_executor(estimator: str, options: Mapping[str, Any]) -> str:
    """The estimator's own executor, read from its class without building it (E2NAS loads a VAE)."""
    from datanas_core.estimators import ESTIMATORS, GumbelFamily

    try:
        cls = ESTIMATORS.get(estimator)
    except Exception:  # noqa: BLE001 - unknown names are reported when the searcher builds the estimator
        return "exact"
    if isinstance(cls, type) and issubclass(cls, GumbelFamily):
        return "sparse" if (estimator == "gdas" or bool(options.get("select_only", False))) else "exact"
    native = getattr(cls, "default_executor", "exact")
    return native if isinstance(native, str) else "exact"


def _is_hard(estimator: str, options: Mapping[str, Any]) -> bool:
    """Whether the estimator's samples are straight-through one-hot codes (exact gradients matter)."""
    if estimator in _HARD_EXACT:
        return True
    return estimator == "gumbel" and bool(options.get("hard", True)) and bool(options.get("noise", True))


@dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of a bilevel architecture search.

    Defaults follow DATA's released search script (methods.md §4d): EGS with M=2 and ADC (L1, weight 0.1),
    SGD 0.025 cosine to 0.001 with momentum 0.9 and weight decay 3e-4, Adam 3e-4 with betas (0.5, 0.999) on
    the architecture, first order, the architecture step before the weight step. Use
    :meth:`SearchConfig.preset` for the other methods' defaults.

    Attributes:
        epochs: search epochs.
        estimator: estimator name (see ``datanas_core.ESTIMATORS``).
        estimator_options: keyword options of the estimator (e.g. ``{"samples": 4, "tau": "linear:5:1"}``).
        executor: ``None`` (default): the estimator's native executor (``"exact"`` for EGS, DARTS, SNAS,
            DrNAS; ``"sparse"`` for GDAS and E2NAS). ``"exact"`` runs every op of a mixed edge (zero-weight
            ops still pass straight-through gradients); ``"sparse"`` runs only ops with non-zero weight and
            adds zero-valued gradient carriers. ``"sparse"`` with EGS is an *approximation* of DATA's
            estimator (the carriers replace the straight-through gradient of zero-weight ops); it is allowed
            but listed in :attr:`approximations` (logged, and written to the run's config and manifest).
        regularizers: regulariser specs, each ``{"type": name, "weight": w, **options}``.
        rule: derivation rule name, or ``None`` for the space's default; ``rule_options`` its options.
        order: ``"first"`` (first-order DARTS), ``"second"`` (unrolled, finite-difference Hessian-vector
            product), ``"single_level"`` (SNAS: weights and architecture from one training loss).
        step_order: ``"arch_first"`` (DARTS, DATA, DrNAS) or ``"weight_first"`` (GDAS, E2NAS).
        arch_warmup_epochs: epochs at the start during which the architecture is not updated.
        weight_sampling: where the weight step's architecture comes from. ``"distribution"`` (every method's
            published setting): the current architecture distribution. ``"uniform"``: the same estimator
            with all logits at zero (uniform op probabilities; temperature, samples, masks and extra
            parameters as usual), so every op's weights keep being trained however the distribution has
            moved - the fair path sampling of single-path one-shot NAS (SPOS, FairNAS), which removes the
            rich-get-richer loop that lets parameter-free ops win short sampled searches. The architecture
            step always uses the distribution. Not for ``order="single_level"``. Estimators whose
            probabilities do not come from the logits (``e2nas`` decodes them from its latent) are unaffected.
        w_optimizer: the supernet weights' optimiser: ``"sgd"`` (every method's published setting; uses
            ``w_momentum`` and ``w_nesterov``), ``"adam"`` or ``"adamw"`` (default betas; useful for
            objectives that train slowly with SGD in short searches, e.g. unsupervised pair losses).
            ``w_weight_decay`` applies to all three. ``order="second"`` needs ``"sgd"`` (the unrolled step
            replays an SGD update).
        w_*: weight optimiser settings and cosine schedule; ``grad_clip`` clips the weight gradient norm.
        a_*: architecture optimiser (Adam); ``a_grad_clip`` clips the architecture gradient norm.
        unrolled_eps: finite-difference step scale of the second-order hypergradient (DARTS: 0.01).
        seed: seeds weight init, the architecture generator and the data order.
        schedule_unit: what the estimator's temperature / ensemble-size schedules (``estimator_options``
            ``tau``, ``samples``) and ``a_lr_schedule`` progress over. ``"epoch"`` (every method's published
            setting): ``(epoch, epochs)``. ``"step"``: the architecture steps actually taken,
            ``(arch_step, arch_steps)`` with ``arch_step`` counted from the end of the warm-up, so a schedule
            reaches its end value at the last step whatever the budget (300 or 40,000 steps) and changes
            every step instead of every epoch. Needs the number of steps per epoch (``Searcher.fit`` reads
            it from the loader; set ``searcher.steps_per_epoch`` when calling ``step`` yourself).
        a_lr_schedule: optional schedule of a *factor* on the architecture learning rate (e.g.
            ``"cosine:1:0.1"``), over the unit of ``schedule_unit``; ``None``: constant 1.
        a_lr_warmup: fraction of the architecture steps over which the architecture learning rate ramps
            linearly from 0 to its value (a soft warm-up: the weights train while the architecture barely
            moves); 0 = off.
        arch_travel: budget-aware architecture learning rate. Adam moves a logit by at most about ``lr``
            per step, so a search of ``S`` architecture steps moves the logits at most ``S * a_lr`` and a
            short search at a published ``a_lr`` ends undecided. With ``arch_travel`` set, the architecture
            learning rate is ``arch_travel / S`` (``S``: architecture steps of this run), so short and long
            searches move the logits equally far; ``a_lr`` is then ignored. DATA's published run (100 epochs
            of 391 steps at 3e-4) travels about 12. ``None``: use ``a_lr``.
        progressive_decisions: ``(start, end)`` fractions of the architecture steps: between them the edges
            are decided one at a time, the most certain first (largest top-op probability margin), each fixed
            to its top op; after ``end`` only the chosen cell's weights train, so the derived cell is final
            (SGAS-style sequential greedy decisions, :mod:`datanas_core.search.decisions`). With a rule that
            keeps k inputs per node (``topk_edges``, ``topk_pairs``) a node's other edges are fixed to
            ``none`` once it holds k decided ones, so the derived cell is exactly the decided edges. Not part of any
            published recipe of the DATA family; ``None`` (default): off.
        decision_criterion: how progressive decisions pick the next edge and its op. ``"margin"`` (default):
            the largest top-1 probability margin, fixed to its top op. ``"fix"``: the supernet's mean task
            loss with the edge fixed to each allowed op (the other edges sampled from the distribution); the
            edge whose best op leads its runner-up by the largest loss gap is fixed to that op. ``"remove"``
            (DARTS-PT, Wang et al. 2021): the loss increase when each op is removed from the edge; the op whose
            removal hurts most is the edge's op, the edge with the largest gap to its second op goes first.
            The measured criteria cost ``candidates x decision_samples x decision_batches`` forwards per
            decision, need a ``progressive_decisions`` window, and are refused in keep-k cells with a ``none``
            op (DARTS-like ``topk_edges``/``topk_pairs``); an option, not part of DATA's published method.
        decision_batches: held-out batches (the first of the architecture split) that a measured criterion
            averages over.
        decision_samples: architecture samples per candidate that a measured criterion averages over.
        precision: ``"fp32"`` (default) or ``"bf16"``: the supernet forward and the task loss of the weight and
            architecture steps run under ``torch.autocast(dtype=torch.bfloat16)`` on the supernet's device
            type. Sampling, regularisers, architecture parameters and their gradients, and both optimiser
            steps stay float32. bf16 is an *approximation* of the float32 search, listed in
            :attr:`approximations`. May change on resume (it changes the arithmetic, not the estimator).
        compile: ``torch.compile`` mode of the supernet forward: ``"off"`` (default, eager), ``"default"``,
            ``"reduce-overhead"`` (CUDA graphs) or ``"max-autotune"``. Applied once, lazily, at the first
            step. Executor/estimator pairs whose forward depends on the sample's values (the sparse executor;
            zero-weight ops of straight-through samples such as EGS) and compilation failures fall back to
            eager with one logged warning; ``Searcher.execution`` records what ran. Not an approximation
            (same computation, rounding order aside). May change on resume.
    """

    epochs: int = 50
    estimator: str = "egs"
    estimator_options: Mapping[str, Any] = field(default_factory=lambda: {"samples": 2})
    executor: Literal["exact", "sparse"] | None = None
    regularizers: tuple[Mapping[str, Any], ...] = ({"type": "adc", "weight": 0.1},)
    rule: str | None = None
    rule_options: Mapping[str, Any] = field(default_factory=dict)
    order: Literal["first", "second", "single_level"] = "first"
    step_order: Literal["arch_first", "weight_first"] = "arch_first"
    arch_warmup_epochs: int = 0
    weight_sampling: Literal["distribution", "uniform"] = "distribution"
    w_optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_nesterov: bool = False
    w_weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    a_lr: float = 3e-4
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 1e-3
    a_grad_clip: float | None = None
    unrolled_eps: float = 0.01
    seed: int = 0
    schedule_unit: Literal["epoch", "step"] = "epoch"
    a_lr_schedule: Any = None
    a_lr_warmup: float = 0.0
    arch_travel: float | None = None
    progressive_decisions: tuple[float, float] | None = None
    decision_criterion: Literal["margin", "fix", "remove"] = "margin"
    decision_batches: int = 8
    decision_samples: int = 2
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"

    def __post_init__(self) -> None:
        object.__setattr__(self, "estimator_options", dict(self.estimator_options))
        object.__setattr__(self, "rule_options", dict(self.rule_options))
        object.__setattr__(self, "regularizers", tuple(dict(r) for r in self.regularizers))
        object.__setattr__(self, "a_betas", tuple(float(b) for b in self.a_betas))
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.order not in _ORDERS:
            raise ConfigError(f"order must be one of {', '.join(_ORDERS)}; got {self.order!r}")
        if self.step_order not in _STEP_ORDERS:
            raise ConfigError(f"step_order must be one of {', '.join(_STEP_ORDERS)}; got {self.step_order!r}")
        if self.executor is not None and self.executor not in _EXECUTORS:
            raise ConfigError(
                f"executor must be one of {', '.join(_EXECUTORS)} or None (native); got {self.executor!r}"
            )
        if self.schedule_unit not in _SCHEDULE_UNITS:
            raise ConfigError(
                f"schedule_unit must be one of {', '.join(_SCHEDULE_UNITS)}; got {self.schedule_unit!r}"
            )
        if not (isinstance(self.a_lr_warmup, (int, float)) and 0.0 <= self.a_lr_warmup < 1.0):
            raise ConfigError(f"a_lr_warmup must be a fraction in [0, 1), got {self.a_lr_warmup!r}")
        if self.arch_travel is not None and not (
            isinstance(self.arch_travel, (int, float)) and self.arch_travel > 0
        ):
            raise ConfigError(f"arch_travel must be > 0 or None, got {self.arch_travel!r}")
        if self.progressive_decisions is not None:
            window = self.progressive_decisions
            if not is_decision_window(window):
                raise ConfigError(
                    "progressive_decisions must be (start, end) fractions of the architecture steps with "
                    f"0 <= start < end <= 1, or None; got {window!r}"
                )
            object.__setattr__(self, "progressive_decisions", (float(window[0]), float(window[1])))
        if self.decision_criterion not in _DECISION_CRITERIA:
            raise ConfigError(
                f"decision_criterion must be one of {', '.join(_DECISION_CRITERIA)}; got "
                f"{self.decision_criterion!r}"
            )
        for name in ("decision_batches", "decision_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.decision_criterion != "margin" and self.progressive_decisions is None:
            raise ConfigError(
                f"decision_criterion={self.decision_criterion!r} chooses how progressive decisions decide, but "
                "progressive_decisions is off; set a window (e.g. progressive_decisions=(0.1, 0.7), "
                "--progressive-decisions 0.1 0.7) or keep decision_criterion='margin'"
            )
        if self.a_lr_schedule is not None:
            from datanas_core.schedules import BaseSchedule, parse_schedule

            sched = parse_schedule(self.a_lr_schedule)
            if isinstance(sched, BaseSchedule):
                if not sched.lower_bound() >= 0:
                    raise ConfigError(
                        f"a_lr_schedule is a factor on the architecture learning rate and must stay >= 0; "
                        f"{self.a_lr_schedule!r} reaches {sched.lower_bound()}"
                    )
                object.__setattr__(self, "a_lr_schedule", sched.to_dict())
        if self.weight_sampling not in _WEIGHT_SAMPLING:
            raise ConfigError(
                f"weight_sampling must be one of {', '.join(_WEIGHT_SAMPLING)}; got {self.weight_sampling!r}"
            )
        if self.precision not in _PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(_PRECISIONS)}; got {self.precision!r}")
        if self.compile not in _COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(_COMPILE_MODES)}; got {self.compile!r}")
        if self.w_optimizer not in _W_OPTIMIZERS:
            raise ConfigError(
                f"w_optimizer must be one of {', '.join(_W_OPTIMIZERS)}; got {self.w_optimizer!r}"
            )
        if self.w_optimizer != "sgd" and self.order == "second":
            raise ConfigError(
                f"order='second' needs w_optimizer='sgd' (the unrolled step replays an SGD update); got "
                f"{self.w_optimizer!r}"
            )
        if self.weight_sampling == "uniform" and self.order == "single_level":
            raise ConfigError(
                "weight_sampling='uniform' needs a bilevel order (first or second): a single-level step "
                "trains weights and architecture from one sample"
            )
        for name in ("w_lr", "a_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"{name} must be > 0, got {v!r}")
        for name in ("w_lr_min", "w_weight_decay", "a_weight_decay", "arch_warmup_epochs"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ConfigError(f"{name} must be >= 0, got {v!r}")
        if not 0 <= self.w_momentum < 1:
            raise ConfigError(f"w_momentum must be in [0, 1), got {self.w_momentum!r}")
        for name in ("grad_clip", "a_grad_clip"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 or None, got {v!r}")
        if len(self.a_betas) != 2 or not all(0 <= b < 1 for b in self.a_betas):
            raise ConfigError(f"a_betas must be two numbers in [0, 1), got {self.a_betas!r}")
        if not self.unrolled_eps > 0:
            raise ConfigError(f"unrolled_eps must be > 0, got {self.unrolled_eps!r}")
        for r in self.regularizers:
            if "type" not in r:
                raise ConfigError(f"regularizer spec {r!r} needs a 'type' key")
        if self.order == "second" and self.step_order != "arch_first":
            raise ConfigError("order='second' needs step_order='arch_first' (the unrolled step looks ahead)")

    @property
    def native_executor(self) -> str:
        """The executor the estimator was published with (what ``executor=None`` runs)."""
        return _native_executor(self.estimator, self.estimator_options)

    @property
    def resolved_executor(self) -> str:
        """The executor this configuration runs: ``executor``, or the native one when ``None``."""
        return self.executor if self.executor is not None else self.native_executor

    @property
    def uses_step_schedules(self) -> bool:
        """Whether the searcher updates the estimator state / architecture lr every step."""
        return (
            self.schedule_unit == "step"
            or self.a_lr_schedule is not None
            or self.a_lr_warmup > 0
            or self.arch_travel is not None
        )

    @property
    def compile_blocker(self) -> str | None:
        """Why this executor/estimator pair's supernet forward is not compiled (``None``: it may be).

        The sparse executor runs only the ops of non-zero weight, and the exact executor runs the zero-weight
        ops of straight-through samples (EGS, hard Gumbel) forward-only: both choose what to compute from the
        sampled values every step, data-dependent control flow that would make ``torch.compile`` re-trace
        nearly every step. Those pairs run eagerly (``Searcher`` logs this once).
        """
        if self.resolved_executor == "sparse":
            return (
                f"the sparse executor ({self.estimator}) runs only the sampled ops, chosen from the sample's "
                "values every step (data-dependent control flow)"
            )
        if _is_hard(self.estimator, self.estimator_options):
            return (
                f"the exact executor runs {self.estimator}'s zero-weight ops forward-only, chosen from the "
                "sample's values every step (data-dependent control flow)"
            )
        return None

    @property
    def approximations(self) -> list[str]:
        """Deviations of this configuration from the estimator's published form (empty: faithful).

        ``executor="sparse"`` with EGS (or a hard, non-selecting Gumbel estimator) is the one flagged
        today: the sparse executor replaces the straight-through gradient ``<dL/dy, o_k(x)>`` of every
        zero-weight op by a zero-valued gradient carrier (``sum(dL/dy)``), measured at 0.59 cosine to the
        exact gradient with half its norm on NB201. ``precision="bf16"`` is the other: the supernet forward and
        loss run in bfloat16 under autocast instead of float32.
        """
        out = []
        if (
            self.resolved_executor == "sparse"
            and self.native_executor == "exact"
            and _is_hard(self.estimator, self.estimator_options)
        ):
            out.append(
                f"sparse executor: {self.estimator} is computed with gradient carriers instead of the exact "
                "straight-through gradient of zero-weight ops (an approximation of the published estimator; "
                "use executor='exact' for the faithful one)"
            )
        if self.precision == "bf16":
            out.append(
                "bf16 precision: the supernet forward and loss run in bfloat16 under torch.autocast (an "
                "approximation of the float32 search; sampling, architecture parameters, their gradients and the "
                "optimiser steps stay float32; use precision='fp32' for the faithful one)"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data, plus ``approximations`` (read-only, dropped by :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["regularizers"] = [dict(r) for r in self.regularizers]
        d["a_betas"] = list(self.a_betas)
        if self.progressive_decisions is not None:
            d["progressive_decisions"] = list(self.progressive_decisions)
        d["approximations"] = self.approximations
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "approximations"}  # derived, written by to_dict
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown SearchConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}"
            )
        kw = dict(d)
        if "regularizers" in kw:
            kw["regularizers"] = tuple(kw["regularizers"])
        if "a_betas" in kw:
            kw["a_betas"] = tuple(kw["a_betas"])
        return cls(**kw)

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, space: Any = None, **overrides: Any) -> SearchConfig:
        """The published recipe of a method (methods.md), optionally for a space and overridden.

        Names: see :data:`PRESET_SPECS` (``data``, ``data_m4``, ``data_m7``, ``data_short``, ``darts``,
        ``darts2``, ``gdas``, ``snas``, ``drnas``, ``drnas_progressive``, ``entrannas``, ``e2nas``).
        With ``space`` (a :class:`~datanas_core.space.base.SearchSpace` or its registry name) the pair is
        checked and the space-dependent settings are applied (derivation rule, GDAS' carriers, DrNAS'
        NB201 recipe); see :func:`preset_config`.

        Raises:
            ConfigError: unknown preset, or a space the preset does not support (the message names the
                supported spaces).
        """
        return preset_config(name, space, **overrides)


_DATA: dict[str, Any] = {
    "epochs": 100,
    "estimator": "egs",
    "estimator_options": {"samples": 2},
    "rule": "data",
    "a_weight_decay": 0.0,
    "regularizers": ({"type": "adc", "weight": 0.1},),
}

#: DrNAS' optimisation settings, shared by the one-shot and the progressive preset (the stages of the latter
#: come from :func:`preset_stages`).
_DRNAS: dict[str, Any] = {
    "epochs": 50,
    "estimator": "dirichlet",
    "estimator_options": {},
    "regularizers": (),
    "rule": "topk_edges",
    "w_lr": 0.1,
    "w_lr_min": 0.0,
    "a_lr": 6e-4,
    "arch_warmup_epochs": 10,
}

PRESETS: dict[str, dict[str, Any]] = {
    "data": dict(_DATA),
    "data_m4": {**_DATA, "estimator_options": {"samples": 4}},
    "data_m7": {**_DATA, "estimator_options": {"samples": 7}},
    # not a published recipe: DATA (M=2, ADC, exact EGS) with every schedule expressed per architecture step
    # and a budget-aware architecture learning rate (travel 24 under a cosine decay to 0 after a 20 % linear
    # ramp), so searches of a few hundred steps end decided and stable; uniform weight sampling keeps every
    # op's weights trained (docs/results/short-budget)
    "data_short": {
        **_DATA,
        "schedule_unit": "step",
        "arch_travel": 24.0,
        "a_lr_warmup": 0.2,
        "a_lr_schedule": "cosine:1:0",
        "weight_sampling": "uniform",
    },
    # not a published recipe: DATA's estimator (EGS M=4, exact straight-through gradient, ADC 0.1) for short
    # budgets with SGAS-style progressive edge decisions (SearchConfig.progressive_decisions): after 3
    # weights-only epochs, the architecture lr travels 0.84 in total (3e-3 per step over the 280 architecture
    # steps of the NB201 study's budget) under a cosine decay, tau/M schedules per architecture step, and the
    # edges are fixed one at a time between 30 % and 70 % of the architecture steps, most certain first, so
    # the cell is final for the last 30 %. Deciding later than the first window (0.1, 0.7) lets the
    # architecture gradient accumulate about 3x more steps before the first decision; NB201 study
    # (docs/results/nb201-study, "Deciding later"), ten seeds: see the study README for the numbers
    "data_decide": {
        **_DATA,
        "epochs": 10,
        "estimator_options": {"samples": 4},
        "a_weight_decay": 1e-3,
        "arch_warmup_epochs": 3,
        "schedule_unit": "step",
        "arch_travel": 0.84,
        "a_lr_schedule": "cosine:1:0",
        "w_lr": 0.1,
        "progressive_decisions": (0.3, 0.7),
    },
    "darts": {
        "epochs": 50,
        "estimator": "softmax",
        "estimator_options": {},
        "regularizers": (),
        "rule": "topk_edges",
    },
    "darts2": {
        "epochs": 50,
        "estimator": "softmax",
        "estimator_options": {},
        "regularizers": (),
        "rule": "topk_edges",
        "order": "second",
    },
    "gdas": {
        "epochs": 250,
        "estimator": "gdas",
        "estimator_options": {},
        "regularizers": (),
        "executor": "sparse",
        "rule": "topk_pairs",
        "step_order": "weight_first",
        "w_nesterov": True,
        "w_weight_decay": 5e-4,
    },
    "snas": {
        "epochs": 150,
        "estimator": "snas",
        "estimator_options": {},
        "regularizers": (),
        "order": "single_level",
        "rule": "all_edges_argmax",
        "a_grad_clip": 10.0,
    },
    "drnas": dict(_DRNAS),
    # DrNAS' progressive recipes (drnas/presets.py: darts_cifar in drnas_darts, nb201_progressive in
    # drnas_nb201); the stages come from preset_stages()
    "drnas_progressive": dict(_DRNAS),
    # EnTranNAS (methods.md 5): DARTS' optimisation (its own values were not published), softmax engine
    # cells; the space's transit rule derives the cell (rule None)
    "entrannas": {
        "epochs": 50,
        "estimator": "softmax",
        "estimator_options": {},
        "regularizers": (),
        "rule": None,
    },
    # E2NAS (methods.md 7d); build_searcher wires complementation and exploration
    "e2nas": {
        "epochs": 250,
        "estimator": "e2nas",
        "estimator_options": {},
        "regularizers": (),
        "rule": "argmax_edge",
        "step_order": "weight_first",
        "w_nesterov": True,
        "w_weight_decay": 5e-4,
    },
}
"""Each preset's :class:`SearchConfig` fields before the space-dependent settings of :data:`PRESET_SPECS`."""

_NB201_ARGMAX = {"rule": "argmax_edge", "rule_options": {}}
_RNN_ONE = {"rule": "topk_edges", "rule_options": {"k": 1}}
# DrNAS' NB201 recipe (201-space/train_search.py, drnas/presets.py "nb201")
_DRNAS_NB201 = {
    **_NB201_ARGMAX,
    "epochs": 100,
    "arch_warmup_epochs": 0,
    "w_lr": 0.025,
    "w_lr_min": 0.001,
    "a_lr": 3e-4,
}


@dataclass(frozen=True)
class PresetSpec:
    """Where a preset applies and what it changes per kind of space.

    Attributes:
        name: the preset's name (a key of :data:`PRESETS`).
        method: the method it reproduces.
        kinds: supported space kinds (:func:`space_kind`) -> the settings for that kind (derivation rule,
            estimator options, recipe changes) applied over :data:`PRESETS`.
        spaces: if set, only these space registry names (e.g. the EnTranNAS spaces).
        published: whether this is a published recipe (``False``: a documented datanas recipe).
        notes: what the preset is and where its values come from.
    """

    name: str
    method: str
    kinds: Mapping[str, Mapping[str, Any]]
    spaces: tuple[str, ...] | None = None
    published: bool = True
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", MappingProxyType({k: dict(v) for k, v in self.kinds.items()}))

    def supports(self, space: Any) -> bool:
        name = _space_name(space)
        if self.spaces is not None:
            return name in self.spaces
        if name.startswith("entrannas_"):
            return False
        return space_kind(space) in self.kinds

    def describe_support(self) -> str:
        if self.spaces is not None:
            return ", ".join(self.spaces)
        kinds = []
        for k in self.kinds:
            kinds.append(_KIND_TEXT.get(k, k))
        return "; ".join(kinds)


_KIND_TEXT = {
    "darts": "the strict DARTS space (darts, drnas_darts)",
    "darts_ext": "extended DARTS spaces (darts_ext, seg.darts, ...)",
    "nb201": "NAS-Bench-201 spaces (nb201, drnas_nb201)",
    "rnn": "the RNN space (lm.darts_rnn)",
}

_DATA_KINDS: dict[str, dict[str, Any]] = {
    "darts_ext": {"rule": "data"},
    "nb201": dict(_NB201_ARGMAX),
    "rnn": {"rule": "data"},
}
_DARTS_KINDS: dict[str, dict[str, Any]] = {
    "darts": {"rule": "topk_edges"},
    "darts_ext": {"rule": "topk_edges"},
    "nb201": dict(_NB201_ARGMAX),
    "rnn": dict(_RNN_ONE),
}

PRESET_SPECS: Mapping[str, PresetSpec] = MappingProxyType(
    {
        "data": PresetSpec("data", "DATA", _DATA_KINDS, notes="DATA's released search: EGS M=2, ADC 0.1"),
        "data_m4": PresetSpec("data_m4", "DATA", _DATA_KINDS, notes="DATA with M=4 (released cell)"),
        "data_m7": PresetSpec("data_m7", "DATA", _DATA_KINDS, notes="DATA with M=7 (released cell)"),
        "data_short": PresetSpec(
            "data_short",
            "DATA",
            _DATA_KINDS,
            published=False,
            notes="DATA for short budgets (not published): tau/M per architecture step, arch lr = 24 / arch "
            "steps with a 20% linear ramp and a cosine decay to 0, uniform weight sampling; see "
            "docs/results/short-budget",
        ),
        "data_decide": PresetSpec(
            "data_decide",
            "DATA",
            _DATA_KINDS,
            published=False,
            notes="DATA for short budgets with progressive edge decisions (not published): EGS M=4, 3 "
            "weights-only epochs, arch lr = 0.84 / arch steps under a cosine decay, the most certain edge fixed "
            "to its top op one at a time between 10% and 70% of the architecture steps (the cell is final for "
            "the last 30%); NB201 study setting egs_m4_decide",
        ),
        "darts": PresetSpec("darts", "DARTS", _DARTS_KINDS, notes="first-order DARTS"),
        "darts2": PresetSpec("darts2", "DARTS", _DARTS_KINDS, notes="second-order DARTS"),
        "gdas": PresetSpec(
            "gdas",
            "GDAS",
            {
                # AutoDL's NASNet GDAS runs only the sampled op and adds no gradient carriers
                "darts": {"rule": "topk_pairs", "estimator_options": {"carriers": False}},
                "darts_ext": {"rule": "topk_pairs", "estimator_options": {"carriers": False}},
                # AutoDL's NB201 GDAS adds the non-selected weights as zero-valued carriers
                "nb201": {**_NB201_ARGMAX, "estimator_options": {"carriers": True}},
                "rnn": dict(_RNN_ONE),
            },
            notes="GDAS as in AutoDL-Projects (carriers in NB201, none in the DARTS space)",
        ),
        "snas": PresetSpec(
            "snas",
            "SNAS",
            {"darts_ext": {"rule": "all_edges_argmax"}, "nb201": dict(_NB201_ARGMAX), "rnn": dict(_RNN_ONE)},
            notes="SNAS: single level, soft concrete samples; keeps every edge (extended space)",
        ),
        "drnas": PresetSpec(
            "drnas",
            "DrNAS",
            {
                "darts": {"rule": "topk_edges"},
                "darts_ext": {"rule": "topk_edges"},
                "nb201": dict(_DRNAS_NB201),
                "rnn": dict(_RNN_ONE),
            },
            notes="DrNAS without progressive stages (DARTS recipe; NB201: 201-space/train_search.py)",
        ),
        "drnas_progressive": PresetSpec(
            "drnas_progressive",
            "DrNAS",
            {
                "darts": {"rule": "topk_edges"},
                "nb201": {**_NB201_ARGMAX, "epochs": 100, "w_lr": 0.025, "w_lr_min": 0.001, "a_lr": 3e-4},
            },
            spaces=("drnas_darts", "drnas_nb201"),
            notes="DrNAS' progressive recipes (partial channels, op pruning per stage): darts_cifar in "
            "drnas_darts, nb201_progressive in drnas_nb201",
        ),
        "entrannas": PresetSpec(
            "entrannas",
            "EnTranNAS",
            {"darts_ext": {"rule": None}, "nb201": {"rule": None}},
            spaces=("entrannas_darts", "entrannas_nb201"),
            notes="EnTranNAS engine/transit search with the space's transit rule",
        ),
        "e2nas": PresetSpec(
            "e2nas",
            "E2NAS",
            {"nb201": dict(_NB201_ARGMAX)},
            spaces=("nb201", "drnas_nb201"),
            notes="E2NAS with the bundled NB201 cell VAE (other spaces need a pretrained VAE)",
        ),
    }
)
"""The spaces each preset supports and its per-space settings."""


def _space_name(space: Any) -> str:
    """The registry name of a space (``drnas_darts`` although its genotypes say ``darts``)."""
    if isinstance(space, str):
        return space
    from datanas_core.space.base import SPACES

    for n in SPACES.names():
        try:
            if SPACES.get(n) is type(space):
                return n
        except Exception:  # noqa: BLE001 - a broken plugin entry is not this space
            continue
    return str(getattr(space, "name", "") or type(space).__name__)


def _resolve_space(space: Any) -> Any:
    if isinstance(space, str):
        from datanas_core.plugins import get_space

        return get_space(space)
    return space


def space_kind(space: Any) -> str:
    """The kind of a search space for the presets: ``"nb201"`` (one op per edge, every edge kept),
    ``"rnn"`` (one predecessor per node: the space's default rule is ``topk_edges`` with ``k=1``),
    ``"darts"`` (cells with exactly 2 inputs per node, ``strict``) or ``"darts_ext"`` (any number)."""
    space = _resolve_space(space)
    rule = getattr(space, "default_rule", "topk_edges")
    opts = dict(getattr(space, "default_rule_options", None) or {})
    if rule in ("argmax_edge", "entrannas_nb201") or getattr(space, "name", "") == "nb201":
        return "nb201"
    if rule == "topk_edges" and opts.get("k") == 1:
        return "rnn"
    if bool(getattr(space, "strict", False)):
        return "darts"
    return "darts_ext"


def supported_spaces(name: str) -> str:
    """A sentence naming the spaces preset ``name`` supports."""
    return _spec(name).describe_support()


def _spec(name: str) -> PresetSpec:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESET_SPECS[name]


def preset_config(name: str, space: Any = None, **overrides: Any) -> SearchConfig:
    """The :class:`SearchConfig` of preset ``name`` for ``space`` (a space or its registry name), with
    ``overrides`` applied last.

    Without ``space`` the preset's base settings (:data:`PRESETS`) are returned unchecked. With a space:
    the pair is checked and the settings of the space's kind are applied (derivation rule and its options,
    estimator options such as GDAS' ``carriers``, DrNAS' NB201 recipe). When ``overrides`` change
    ``epochs`` but not ``arch_warmup_epochs``, the preset's warm-up is scaled to the same share of the run
    (DrNAS: 10 of 50 epochs -> 2 of 10), so a short run still updates the architecture.

    Raises:
        ConfigError: unknown preset, or a space the preset does not support.
    """
    spec = _spec(name)
    base = dict(PRESETS[name])
    if space is not None:
        sp = _resolve_space(space)
        if not spec.supports(sp):
            supporting = sorted(n for n, s in PRESET_SPECS.items() if _safe_supports(s, sp))
            raise ConfigError(
                f"preset {name!r} ({spec.method}) does not support the space {_space_name(sp)!r} "
                f"(kind {space_kind(sp)!r}); it supports {spec.describe_support()}"
                + (f". Presets for this space: {', '.join(supporting)}" if supporting else "")
            )
        extra = dict(spec.kinds[space_kind(sp)])
        if "estimator_options" in extra:
            extra["estimator_options"] = {
                **dict(base.get("estimator_options", {})),
                **extra["estimator_options"],
            }
        base.update(extra)
    warmup = int(base.get("arch_warmup_epochs", 0) or 0)
    if warmup and "epochs" in overrides and "arch_warmup_epochs" not in overrides:
        # keep the recipe's shape: the warm-up is the same share of a shorter (or longer) run
        base["arch_warmup_epochs"] = (warmup * int(overrides["epochs"])) // int(base.get("epochs", 1) or 1)
    base.update(overrides)
    return SearchConfig.from_dict(base)


def _safe_supports(spec: PresetSpec, space: Any) -> bool:
    try:
        return spec.supports(space)
    except Exception:  # noqa: BLE001 - a space that cannot be classified supports nothing
        return False


def preset_stages(name: str, space: Any, epochs: int) -> str | None:
    """The DrNAS progressive stages of preset ``name`` in ``space`` scaled to ``epochs`` (a ``--stages``
    string), or ``None`` for presets without stages.

    Raises:
        ConfigError: fewer epochs than stages.
    """
    if name != "drnas_progressive":
        return None
    from datanas_core.drnas.presets import get_preset

    recipe = "nb201_progressive" if space_kind(space) == "nb201" else "darts_cifar"
    return get_preset(recipe, epochs=epochs).stages_text


#: The fields of a preset that make up the *method* (as opposed to the optimisation budget and learning
#: rates, which domain CLIs with their own tuned optimisation keep): see :func:`preset_method_fields`.
METHOD_FIELDS = (
    "estimator",
    "estimator_options",
    "executor",
    "regularizers",
    "rule",
    "rule_options",
    "order",
    "step_order",
    "a_grad_clip",
    "schedule_unit",
    "a_lr_schedule",
    "a_lr_warmup",
    "arch_travel",
    "progressive_decisions",
    "decision_criterion",
    "decision_batches",
    "decision_samples",
    "weight_sampling",
)


def preset_method_fields(name: str, space: Any) -> dict[str, Any]:
    """The method part of preset ``name`` for ``space`` (estimator and its options, executor, regularisers,
    derivation rule, gradient order, step order, per-step schedules), checked against the space.

    For domain CLIs whose optimisation settings (weight optimiser, learning rates, epochs) are tuned for
    their data and stay theirs: ``SearchConfig(**domain_settings, **preset_method_fields(name, space))``.

    Raises:
        ConfigError: unknown preset, or a space it does not support.
    """
    d = preset_config(name, space).to_dict()
    return {k: d[k] for k in METHOD_FIELDS}
