"""Named configurations of the LM CLIs: CPU defaults that finish on two cores, and DARTS' full scale.

``cpu`` (the default) is sized so that ``python -m datanas_lm.search --data ptb`` finishes in well under 20
minutes on two CPU cores: small embedding/hidden sizes, BPTT 35, and a contiguous subset of the PTB
training tokens per epoch (the perplexities are therefore far from the published ones; the configuration
is for checking the pipeline and comparing cells at equal budget). It also runs torch with one CPU thread:
the small matrices gain little from intra-op threads, and on a busy two-core machine oversubscribed
OpenMP threads made a search step 5-20 times slower (measured); ``--threads N`` overrides it.

``darts-full`` is the configuration of DARTS' PTB experiments (quark0/darts ``rnn/train_search.py`` and
``rnn/train.py``; methods.md §1.4 and §2(d)): search with embedding = hidden = 300, batch 256, 50 epochs;
re-training with 850/850, batch 64, up to 8000 epochs with the NT-ASGD switch. It needs a GPU (a search
takes about a GPU-day with the second-order step; the re-training several GPU-days).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from datanas_core.errors import ConfigError

__all__ = ["PRESET_NAMES", "SEARCH_PRESETS", "TRAIN_PRESETS", "search_preset", "train_preset"]

#: Names accepted by ``--size``.
PRESET_NAMES: tuple[str, ...] = ("cpu", "darts-full")

SEARCH_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "cpu": MappingProxyType(
            {
                "threads": 1,
                "emsize": 64,
                "nhid": 64,
                "batch_size": 32,
                "eval_batch_size": 10,
                "bptt": 35,
                "epochs": 4,
                "train_tokens": 60_000,
                "val_tokens": None,
                "eval_tokens": 7_000,
                "dropout": 0.1,
                "dropouth": 0.05,
                "dropoutx": 0.1,
                "dropouti": 0.05,
                "dropoute": 0.0,
                "wdrop": 0.0,
                "w_lr": 20.0,
                "w_weight_decay": 5e-7,
                "grad_clip": 0.25,
                "a_lr": 3e-3,
                "alpha": 0.0,
                "beta": 1e-3,
            }
        ),
        "darts-full": MappingProxyType(
            {
                "threads": None,
                "emsize": 300,
                "nhid": 300,
                "batch_size": 256,
                "eval_batch_size": 10,
                "bptt": 35,
                "epochs": 50,
                "train_tokens": None,
                "val_tokens": None,
                "eval_tokens": None,
                "dropout": 0.75,
                "dropouth": 0.25,
                "dropoutx": 0.75,
                "dropouti": 0.2,
                "dropoute": 0.0,
                "wdrop": 0.0,
                "w_lr": 20.0,
                "w_weight_decay": 5e-7,
                "grad_clip": 0.25,
                "a_lr": 3e-3,
                "alpha": 0.0,
                "beta": 1e-3,
            }
        ),
    }
)

TRAIN_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "cpu": MappingProxyType(
            {
                "threads": 1,
                "emsize": 64,
                "nhid": 64,
                "batch_size": 16,
                "eval_batch_size": 10,
                "test_batch_size": 10,
                "bptt": 35,
                "epochs": 3,
                "train_tokens": 60_000,
                "eval_tokens": 7_000,
                "lr": 20.0,
                "weight_decay": 8e-7,
                "clip": 0.25,
                "dropout": 0.1,
                "dropouth": 0.05,
                "dropoutx": 0.1,
                "dropouti": 0.05,
                "dropoute": 0.0,
                "wdrop": 0.0,
                "alpha": 0.0,
                "beta": 1e-3,
                "nonmono": 5,
            }
        ),
        "darts-full": MappingProxyType(
            {
                "threads": None,
                "emsize": 850,
                "nhid": 850,
                "batch_size": 64,
                "eval_batch_size": 10,
                "test_batch_size": 1,
                "bptt": 35,
                "epochs": 8000,
                "train_tokens": None,
                "eval_tokens": None,
                "lr": 20.0,
                "weight_decay": 8e-7,
                "clip": 0.25,
                "dropout": 0.75,
                "dropouth": 0.25,
                "dropoutx": 0.75,
                "dropouti": 0.2,
                "dropoute": 0.1,
                "wdrop": 0.0,
                "alpha": 0.0,
                "beta": 1e-3,
                "nonmono": 5,
            }
        ),
    }
)


def _get(table: Mapping[str, Mapping[str, Any]], name: str) -> dict[str, Any]:
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESET_NAMES)}")
    return dict(table[name])


def search_preset(name: str) -> dict[str, Any]:
    """A copy of the search CLI defaults of preset ``name``."""
    return _get(SEARCH_PRESETS, name)


def train_preset(name: str) -> dict[str, Any]:
    """A copy of the training CLI defaults of preset ``name``."""
    return _get(TRAIN_PRESETS, name)
