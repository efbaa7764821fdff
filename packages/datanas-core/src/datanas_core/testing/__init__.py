"""Helpers for testing datanas and code built on it: a tiny search space and task that run in milliseconds.

Nothing here imports pytest, so the module is importable from library code and other packages' tests.
"""

from __future__ import annotations

from datanas_core.testing.toy import ToySpace, ToyTask, toy_batches

__all__ = ["ToySpace", "ToyTask", "toy_batches"]
