"""Capture and restore every random-number generator a search touches.

Covered: Python's ``random``, NumPy's legacy global generator (when NumPy is installed), torch's CPU
generator, every CUDA device's generator (when CUDA is initialised) and any number of named
``torch.Generator`` objects (the searcher's architecture-sampling generator, ...). States are stored as
tensors, lists and ints only, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["capture_rng_state", "restore_rng_state", "seed_everything"]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy (when installed) and torch (CPU and CUDA) with ``seed``.

    Meant for CLIs and scripts (it sets process-wide state); library code takes generators instead.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    torch.manual_seed(seed)


def _py_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _np_state() -> dict[str, Any] | None:
    try:
        import numpy as np
    except ImportError:
        return None
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """A snapshot of all global RNGs plus the given named generators."""
    state: dict[str, Any] = {"python": _py_state(), "numpy": _np_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state["generators"] = {name: g.get_state() for name, g in (generators or {}).items()}
    return state


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore a snapshot taken by :func:`capture_rng_state`.

    Generators named in the snapshot but not passed are ignored (with a debug message); CUDA states are
    restored for as many devices as both the snapshot and this machine have.
    """
    py = state.get("python")
    if py is not None:
        random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    npst = state.get("numpy")
    if npst is not None:
        try:
            import numpy as np

            keys = npst["keys"]
            keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
            np.random.set_state(
                (
                    npst["name"],
                    keys.astype(np.uint32),
                    npst["pos"],
                    npst["has_gauss"],
                    npst["cached_gaussian"],
                )
            )
        except ImportError:
            logger.debug("checkpoint holds a NumPy RNG state but NumPy is not installed")
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i], i)
    saved = state.get("generators") or {}
    for name, g in (generators or {}).items():
        if name in saved:
            g.set_state(saved[name])
        else:
            logger.debug("no saved state for generator %r", name)
