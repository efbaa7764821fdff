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
from datanas_lm.cli_config import SEARCH_SIZES, SIZE_NAMES, TRAIN_SIZES

__all__ = ["PRESET_NAMES", "SEARCH_PRESETS", "TRAIN_PRESETS", "search_preset", "train_preset"]

#: Names accepted by ``--size``.
PRESET_NAMES: tuple[str, ...] = SIZE_NAMES

#: The search CLI's settings of each size, as mappings (the dataclasses of :data:`SEARCH_SIZES` are the source).
SEARCH_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType(s.to_dict()) for name, s in SEARCH_SIZES.items()}
)

#: The training CLIs' settings of each size, as mappings (from :data:`TRAIN_SIZES`).
TRAIN_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType(s.to_dict()) for name, s in TRAIN_SIZES.items()}
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
