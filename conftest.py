"""Repository-wide pytest setup.

Tests use tiny networks, for which torch's intra-op thread pool costs more than it saves; on the 2-core CI
machine (and under parallel load) a single thread is several times faster and makes timings stable.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # tooling tests run without torch
        return
    torch.set_num_threads(1)
