"""Search configuration: one frozen, validated dataclass with named presets for each method."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from datanas_core.errors import ConfigError

__all__ = ["PRESETS", "SearchConfig"]

_ORDERS = ("first", "second", "single_level")
_STEP_ORDERS = ("arch_first", "weight_first")
_EXECUTORS = ("exact", "sparse")
_WEIGHT_SAMPLING = ("distribution", "uniform")
_W_OPTIMIZERS = ("sgd", "adam", "adamw")


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
        executor: ``"exact"`` runs every op of a mixed edge (zero-weight ops still pass straight-through
            gradients); ``"sparse"`` runs only ops with non-zero weight and adds zero-valued gradient
            carriers.
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
    """

    epochs: int = 50
    estimator: str = "egs"
    estimator_options: Mapping[str, Any] = field(default_factory=lambda: {"samples": 2})
    executor: Literal["exact", "sparse"] = "exact"
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
        if self.executor not in _EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(_EXECUTORS)}; got {self.executor!r}")
        if self.weight_sampling not in _WEIGHT_SAMPLING:
            raise ConfigError(
                f"weight_sampling must be one of {', '.join(_WEIGHT_SAMPLING)}; got {self.weight_sampling!r}"
            )
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["regularizers"] = [dict(r) for r in self.regularizers]
        d["a_betas"] = list(self.a_betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
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
    def preset(cls, name: str, **overrides: Any) -> SearchConfig:
        """The published defaults of a method (methods.md), optionally overridden.

        Names: ``data`` (DATA, EGS M=2 + ADC), ``data_m4``, ``data_m7``, ``darts`` (first order), ``darts2``
        (second order), ``gdas``, ``snas``, ``drnas``.
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
        base = dict(PRESETS[name])
        base.update(overrides)
        return cls.from_dict(base)


PRESETS: dict[str, dict[str, Any]] = {
    "data": {
        "epochs": 100,
        "estimator": "egs",
        "estimator_options": {"samples": 2},
        "rule": "data",
        "a_weight_decay": 0.0,
        "regularizers": ({"type": "adc", "weight": 0.1},),
    },
    "data_m4": {
        "epochs": 100,
        "estimator": "egs",
        "estimator_options": {"samples": 4},
        "rule": "data",
        "a_weight_decay": 0.0,
        "regularizers": ({"type": "adc", "weight": 0.1},),
    },
    "data_m7": {
        "epochs": 100,
        "estimator": "egs",
        "estimator_options": {"samples": 7},
        "rule": "data",
        "a_weight_decay": 0.0,
        "regularizers": ({"type": "adc", "weight": 0.1},),
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
    "drnas": {
        "epochs": 50,
        "estimator": "dirichlet",
        "estimator_options": {},
        "regularizers": (),
        "rule": "topk_edges",
        "w_lr": 0.1,
        "w_lr_min": 0.0,
        "a_lr": 6e-4,
        "arch_warmup_epochs": 10,
    },
}
