"""Helpers for testing datanas and code built on it: a tiny search space and task that run in milliseconds,
:func:`check_search_space`, the conformance check for new search spaces, and :func:`assert_rel_close`, the
float64 equivalence check of the tests.

Nothing here imports pytest, so the module is importable from library code and other packages' tests.
"""

from __future__ import annotations

from datanas_core.testing.contracts import ContractError, SpaceReport, check_search_space
from datanas_core.testing.numerics import assert_rel_close
from datanas_core.testing.toy import ToySpace, ToyTask, toy_batches

__all__ = [
    "ContractError",
    "SpaceReport",
    "ToySpace",
    "ToyTask",
    "assert_rel_close",
    "check_search_space",
    "toy_batches",
]
