"""The bilevel search loop: configuration, task protocol and searcher."""

from __future__ import annotations

from datanas_core.search.config import PRESETS, SearchConfig
from datanas_core.search.factory import build_searcher
from datanas_core.search.searcher import Searcher, SearchResult, arch_from_genotype
from datanas_core.search.task import SearchTask, split_loss

__all__ = [
    "PRESETS",
    "SearchConfig",
    "SearchResult",
    "SearchTask",
    "Searcher",
    "arch_from_genotype",
    "build_searcher",
    "split_loss",
]
