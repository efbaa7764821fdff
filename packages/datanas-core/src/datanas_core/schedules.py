"""Epoch schedules for temperatures (tau) and the EGS ensemble size (M).

A schedule is a pure function of ``(epoch, total_epochs)``: nothing to checkpoint, and a resumed run gets the
same value as an uninterrupted one. Progress through the run is ``t = epoch / (total_epochs - 1)`` (clamped to
``[0, 1]``), so the end value is reached at the last epoch, as in GDAS' ``tau_max - (tau_max - tau_min) *
e / (E - 1)``. Pass ``endpoint=False`` to use ``t = epoch / total_epochs`` instead (the form of DATA's
``5 - 4 * epoch / 150``).

Schedules are written as a number (constant), a string ``"kind:arg:arg"`` (``"linear:5:1"``,
``"exp:10:0.1"``, ``"cosine:1:0.03"``, ``"const:2"``, ``"step:5,2,1:0.3,0.6"``), a mapping
``{"type": "linear", "start": 5, "end": 1}`` or a schedule object; :func:`parse_schedule` accepts them all.

Example:
    >>> parse_schedule("linear:5:1").value(0, 5), parse_schedule("linear:5:1").value(4, 5)
    (5.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from datanas_core.errors import ConfigError
from datanas_core.registry import Registry

__all__ = [
    "SCHEDULES",
    "BaseSchedule",
    "Constant",
    "Cosine",
    "Exponential",
    "IntSchedule",
    "Linear",
    "Schedule",
    "Step",
    "apply_step_schedules",
    "arch_learning_rate",
    "arch_step_position",
    "parse_int_schedule",
    "parse_schedule",
    "parse_temperature",
]


@runtime_checkable
class Schedule(Protocol):
    """Anything with ``value(epoch, total_epochs) -> float``."""

    def value(self, epoch: int, total_epochs: int) -> float: ...


SCHEDULES: Registry[type] = Registry("schedule")


def _progress(epoch: int, total_epochs: int, endpoint: bool) -> float:
    if total_epochs < 1:
        raise ConfigError(f"total_epochs must be >= 1, got {total_epochs}")
    denom = (total_epochs - 1) if endpoint else total_epochs
    if denom <= 0:
        return 0.0
    return min(max(epoch / denom, 0.0), 1.0)


def _finite(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"schedule {name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ConfigError(f"schedule {name} must be finite, got {v!r}")
    return f


class BaseSchedule:
    """Common helpers of the built-in schedules: ``__call__``, ``lower_bound`` and ``to_dict``."""

    kind: str = ""

    def value(self, epoch: int, total_epochs: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, epoch: int, total_epochs: int) -> float:
        return self.value(epoch, total_epochs)

    def lower_bound(self) -> float:
        """Smallest value the schedule takes over any run (used to validate positivity up front)."""
        raise NotImplementedError  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        """The ``{"type": ..., **kwargs}`` form accepted by :func:`parse_schedule`."""
        d = asdict(self)  # type: ignore[call-overload]
        return {"type": self.kind, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}}


@SCHEDULES.register("constant")
class Constant(BaseSchedule):
    """The same value every epoch."""

    kind = "constant"
    __slots__ = ("_v",)

    def __init__(self, value: float) -> None:
        self._v = _finite("value", value)

    def value(self, epoch: int, total_epochs: int) -> float:
        return self._v

    def lower_bound(self) -> float:
        return self._v

    def to_dict(self) -> dict[str, Any]:
        return {"type": "constant", "value": self._v}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constant) and other._v == self._v

    def __hash__(self) -> int:
        return hash(("constant", self._v))

    def __repr__(self) -> str:
        return f"Constant({self._v!r})"


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class Linear(BaseSchedule):
    """Linear interpolation ``start -> end`` over the run."""

    start: float
    end: float
    endpoint: bool = True

    kind = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _finite("start", self.start))
        object.__setattr__(self, "end", _finite("end", self.end))

    def value(self, epoch: int, total_epochs: int) -> float:
        t = _progress(epoch, total_epochs, self.endpoint)
        return self.start + (self.end - self.start) * t

    def lower_bound(self) -> float:
        return min(self.start, self.end)


@SCHEDULES.register("exponential")
@dataclass(frozen=True)
class Exponential(BaseSchedule):
    """Geometric interpolation ``start * (end / start) ** t``; both ends must be positive."""

    start: float
    end: float
    endpoint: bool = True

    kind = "exponential"

    def __post_init__(self) -> None:
        s, e = _finite("start", self.start), _finite("end", self.end)
        if s <= 0 or e <= 0:
            raise ConfigError(f"exponential schedule needs start > 0 and end > 0, got start={s}, end={e}")
        object.__setattr__(self, "start", s)
        object.__setattr__(self, "end", e)

    def value(self, epoch: int, total_epochs: int) -> float:
        t = _progress(epoch, total_epochs, self.endpoint)
        return self.start * (self.end / self.start) ** t

    def lower_bound(self) -> float:
        return min(self.start, self.end)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine(BaseSchedule):
    """Half-cosine from ``start`` to ``end``."""

    start: float
    end: float
    endpoint: bool = True

    kind = "cosine"

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _finite("start", self.start))
        object.__setattr__(self, "end", _finite("end", self.end))

    def value(self, epoch: int, total_epochs: int) -> float:
        t = _progress(epoch, total_epochs, self.endpoint)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))

    def lower_bound(self) -> float:
        return min(self.start, self.end)


@SCHEDULES.register("step")
@dataclass(frozen=True)
class Step(BaseSchedule):
    """Piecewise constant: ``values[i]`` from progress ``milestones[i-1]`` on (fractions in (0, 1]).

    Example:
        ``Step([2, 4, 7], [0.3, 0.6])``: M = 2 for the first 30 % of the epochs, then 4, then 7.
    """

    values: tuple[float, ...]
    milestones: tuple[float, ...] = field(default=())
    endpoint: bool = False

    kind = "step"

    def __post_init__(self) -> None:
        vals = tuple(_finite("value", v) for v in self.values)
        ms = tuple(_finite("milestone", m) for m in self.milestones)
        if len(vals) != len(ms) + 1:
            raise ConfigError(
                f"step schedule needs len(values) == len(milestones) + 1, got {len(vals)} values and "
                f"{len(ms)} milestones"
            )
        if any(not 0.0 < m <= 1.0 for m in ms) or list(ms) != sorted(ms):
            raise ConfigError(f"step milestones must be increasing fractions in (0, 1], got {list(ms)}")
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "milestones", ms)

    def value(self, epoch: int, total_epochs: int) -> float:
        t = _progress(epoch, total_epochs, self.endpoint)
        i = sum(1 for m in self.milestones if t >= m)
        return self.values[i]

    def lower_bound(self) -> float:
        return min(self.values)


SCHEDULES.register("const", Constant)
SCHEDULES.register("exp", Exponential)


def _parse_string(spec: str) -> BaseSchedule:
    parts = spec.strip().split(":")
    kind, args = parts[0].strip().lower(), [a.strip() for a in parts[1:]]
    cls = SCHEDULES.get(kind)
    try:
        if cls is Constant:
            (v,) = args
            return Constant(float(v))
        if cls is Step:
            vals, *rest = args
            ms = rest[0] if rest else ""
            return Step(
                tuple(float(x) for x in vals.split(",") if x),
                tuple(float(x) for x in ms.split(",") if x),
            )
        start, end = args
        return cls(float(start), float(end))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"cannot parse schedule {spec!r}: expected e.g. 'linear:5:1', 'exp:10:0.1', 'cosine:1:0.03', "
            f"'const:2' or 'step:2,4,7:0.3,0.6'"
        ) from None


def parse_schedule(spec: Schedule | float | int | str | Mapping[str, Any]) -> Schedule:
    """Turn a number, string, mapping or schedule object into a :class:`Schedule`.

    Raises:
        ConfigError: malformed spec. UnknownNameError: unknown schedule kind (lists the valid kinds).
    """
    if isinstance(spec, bool):
        raise ConfigError(f"a schedule cannot be a bool, got {spec!r}")
    if isinstance(spec, (int, float)):
        return Constant(float(spec))
    if isinstance(spec, str):
        try:
            return Constant(float(spec))
        except (ValueError, ConfigError):
            return _parse_string(spec)
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if spec.get("type") in ("constant", "const") and "value" in spec and len(spec) == 2:
            return Constant(spec["value"])
        try:
            return SCHEDULES.build(spec)
        except TypeError as exc:
            raise ConfigError(f"cannot build schedule from {spec!r}: {exc}") from None
    if isinstance(spec, Schedule):
        return spec
    raise ConfigError(
        f"cannot interpret {spec!r} as a schedule; use a number, 'linear:5:1', {{'type': 'linear', ...}} "
        f"or an object with value(epoch, total_epochs)"
    )


def parse_temperature(
    spec: Schedule | float | int | str | Mapping[str, Any], *, what: str = "tau"
) -> Schedule:
    """:func:`parse_schedule` plus a check that the temperature stays > 0 over the whole run.

    Raises:
        ConfigError: a temperature <= 0 anywhere in the schedule.
    """
    sched = parse_schedule(spec)
    if isinstance(sched, BaseSchedule) and not sched.lower_bound() > 0:
        raise ConfigError(
            f"{what} must be > 0 at every epoch, but schedule {sched.to_dict()} reaches {sched.lower_bound()}"
        )
    return sched


@dataclass(frozen=True)
class IntSchedule:
    """An integer-valued view of a schedule (values rounded half up), checked against ``minimum``.

    Used for the EGS ensemble size M.
    """

    inner: Schedule
    minimum: int = 1
    what: str = "M"

    def value(self, epoch: int, total_epochs: int) -> int:
        v = math.floor(float(self.inner.value(epoch, total_epochs)) + 0.5)
        if v < self.minimum:
            raise ConfigError(
                f"{self.what} must be >= {self.minimum}, but the schedule gives {v} "
                f"at epoch {epoch}/{total_epochs}"
            )
        return int(v)

    __call__ = value

    def to_dict(self) -> dict[str, Any]:
        inner = self.inner.to_dict() if isinstance(self.inner, BaseSchedule) else repr(self.inner)
        return {"int": inner, "minimum": self.minimum}


def parse_int_schedule(
    spec: Schedule | int | float | str | Mapping[str, Any] | Sequence[Any],
    *,
    minimum: int = 1,
    what: str = "M",
) -> IntSchedule:
    """Parse an integer schedule (e.g. the EGS ensemble size) and check it never goes below ``minimum``.

    Raises:
        ConfigError: a value below ``minimum`` (e.g. ``M=0``) anywhere in the schedule, or a non-integer
            constant.
    """
    if isinstance(spec, IntSchedule):
        inner: Schedule = spec.inner
    else:
        if isinstance(spec, float) and not spec.is_integer():
            raise ConfigError(f"{what} must be an integer, got {spec!r}")
        inner = parse_schedule(spec)  # type: ignore[arg-type]
    if isinstance(inner, BaseSchedule):
        lb = math.floor(inner.lower_bound() + 0.5)
        if lb < minimum:
            raise ConfigError(
                f"{what} must be >= {minimum} at every epoch, got {spec!r} (reaches {inner.lower_bound():g})"
            )
    return IntSchedule(inner, minimum, what)


# ---------------------------------------------------------------------------------------------------------
# per-architecture-step schedules (SearchConfig.schedule_unit="step", a_lr_schedule, a_lr_warmup, arch_travel)


def arch_step_position(config: Any, steps_per_epoch: int, global_step: int) -> tuple[int, int]:
    """``(k, S)``: the index of the architecture step about to run (0-based, counted from the end of the
    architecture warm-up, clamped to ``[0, S - 1]``) and the number ``S`` of architecture steps of the run
    (``(epochs - arch_warmup_epochs) * steps_per_epoch``, at least 1).

    Raises:
        ConfigError: ``steps_per_epoch < 1``.
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ConfigError(
            f"per-step schedules need the number of steps per epoch (>= 1), got {steps_per_epoch!r}; "
            "Searcher.fit reads it from the training loader, set searcher.steps_per_epoch when calling "
            "step() yourself"
        )
    warm = int(config.arch_warmup_epochs) * steps_per_epoch
    total = max(1, int(config.epochs) * steps_per_epoch - warm)
    k = min(max(0, int(global_step) - warm), total - 1)
    return k, total


def arch_learning_rate(config: Any, k: int, total: int, epoch: int | None = None) -> float:
    """The architecture learning rate of architecture step ``k`` of ``total``.

    ``arch_travel / total`` when ``config.arch_travel`` is set, else ``config.a_lr``; times the factor
    ``config.a_lr_schedule`` (at ``(k, total)``, or ``(epoch, epochs)`` with ``schedule_unit="epoch"``);
    times a linear ramp from ``1 / W`` to 1 over the first ``W = a_lr_warmup * total`` steps.
    """
    lr = float(config.arch_travel) / total if config.arch_travel is not None else float(config.a_lr)
    if config.a_lr_schedule is not None:
        sched = parse_schedule(config.a_lr_schedule)
        if config.schedule_unit == "step" or epoch is None:
            lr *= float(sched.value(k, total))
        else:
            lr *= float(sched.value(epoch, int(config.epochs)))
    warm = float(config.a_lr_warmup) * total
    if warm > 0:
        lr *= min(1.0, (k + 1) / warm)
    return lr


def apply_step_schedules(searcher: Any) -> dict[str, float]:
    """Set the estimator state (per-step ``tau`` / ``M`` with ``schedule_unit="step"``) and the architecture
    learning rate for the step ``searcher`` is about to take; returns ``{"a_lr", "arch_progress"}`` for the
    step logs.

    A pure function of ``searcher.global_step`` (and the config), so a resumed run gets the same values.

    Raises:
        ConfigError: ``searcher.steps_per_epoch`` is unknown.
    """
    cfg = searcher.config
    k, total = arch_step_position(cfg, getattr(searcher, "steps_per_epoch", None), searcher.global_step)  # type: ignore[arg-type]
    if cfg.schedule_unit == "step":
        searcher.distribution.set_epoch(k, total)
    lr = arch_learning_rate(cfg, k, total, epoch=int(searcher.epoch))
    for group in searcher.a_optimizer.param_groups:
        group["lr"] = lr
    return {"a_lr": lr, "arch_progress": k / max(1, total - 1)}
