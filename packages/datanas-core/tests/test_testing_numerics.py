"""``datanas_core.testing.assert_rel_close``: the equivalence check the float64 tests rely on must fail when it
should."""

from __future__ import annotations

import pytest
import torch

from datanas_core.testing import assert_rel_close


def test_passes_within_the_relative_tolerance() -> None:
    a = torch.tensor([1000.0, 1e-6], dtype=torch.float64)
    assert_rel_close(a + 1e-8, a)  # 1e-11 relative to the largest entry
    assert_rel_close(torch.zeros(3), torch.zeros(3))
    assert_rel_close(torch.empty(0), torch.empty(0))


def test_fails_beyond_the_tolerance_and_names_the_error() -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(AssertionError, match=r"grad w: relative error 5e-10 > 1e-10"):
        assert_rel_close(a + torch.tensor([0.0, 1e-9], dtype=torch.float64), a, what="grad w")
    assert_rel_close(a + 1e-9, a, tol=1e-8)


def test_fails_on_nan_and_on_shape() -> None:
    a = torch.ones(2)
    with pytest.raises(AssertionError, match="relative error"):
        assert_rel_close(torch.tensor([1.0, float("nan")]), a)
    with pytest.raises(AssertionError, match=r"shape \(3,\) != expected \(2,\)"):
        assert_rel_close(torch.ones(3), a)
