"""Numerical equivalence checks: the project's standard for "a new implementation computes the same thing"
(gradients of a fast executor against the reference, in float64)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["assert_rel_close"]


def assert_rel_close(actual: Tensor, expected: Tensor, tol: float = 1e-10, *, what: str = "") -> None:
    """Assert ``max |actual - expected| <= tol * max |expected|`` (a relative error, scaled by the largest
    entry, so tiny entries of a large tensor do not fail on rounding).

    Raises:
        AssertionError: the shapes differ or the relative error exceeds ``tol``; the message names the error
            (and ``what``).
    """
    label = f"{what}: " if what else ""
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    scale = max(float(expected.detach().abs().max()) if expected.numel() else 0.0, 1e-300)
    err = float((actual.detach() - expected.detach()).abs().max()) if expected.numel() else 0.0
    if not err <= tol * scale:  # NaN fails too
        raise AssertionError(f"{label}relative error {err / scale:.3g} > {tol:g}")
