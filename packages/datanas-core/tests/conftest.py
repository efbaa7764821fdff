"""Fixtures shared by datanas-core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test (tiny convolutions run far faster single-threaded on a busy 2-core
    machine; reductions then also run in one order)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
