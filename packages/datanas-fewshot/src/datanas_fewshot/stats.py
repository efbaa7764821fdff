"""Confidence intervals for episode accuracies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from datanas_core.errors import ConfigError, DataError

__all__ = ["MeanCI", "mean_confidence_interval"]


@dataclass(frozen=True)
class MeanCI:
    """A mean with the half-width of its confidence interval: ``mean ± half_width``."""

    mean: float
    half_width: float
    n: int
    confidence: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __str__(self) -> str:
        pct = f"{100 * self.mean:.2f} ± {100 * self.half_width:.2f} %"
        return f"{pct} ({self.n} episodes, {self.confidence:.0%} CI)"

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci": self.half_width, "n": self.n, "confidence": self.confidence}


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence half-width ``t_{(1+c)/2, n-1} * s / sqrt(n)`` (``s``: sample std, ddof
    1).

    For ``n >= 600`` episodes this is the ``1.96 * std / sqrt(n)`` reported in few-shot papers.

    Raises:
        DataError: fewer than two values or non-finite values.
        ConfigError: ``confidence`` outside ``(0, 1)``.
    """
    from scipy.stats import t as student_t

    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    vals = [float(v) for v in values]
    n = len(vals)
    if n < 2:
        raise DataError(f"a confidence interval needs at least 2 values, got {n}")
    if not all(math.isfinite(v) for v in vals):
        raise DataError("values contain NaN or infinite entries")
    mean = sum(vals) / n
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    half = float(student_t.ppf((1 + confidence) / 2, n - 1)) * math.sqrt(var / n)
    return MeanCI(mean, half, n, confidence)
