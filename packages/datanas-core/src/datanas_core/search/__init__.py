"""The bilevel search loop: configuration, task protocol and searcher.

Names load on first access (PEP 562) so that ``datanas_core.search.config`` (and ``--help`` of every CLI)
imports no torch.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datanas_core.search.config import PRESETS, SearchConfig
    from datanas_core.search.factory import build_searcher
    from datanas_core.search.searcher import Searcher, SearchResult, arch_from_genotype
    from datanas_core.search.task import SearchTask, split_loss

_LAZY = {
    "PRESETS": "datanas_core.search.config",
    "SearchConfig": "datanas_core.search.config",
    "build_searcher": "datanas_core.search.factory",
    "Searcher": "datanas_core.search.searcher",
    "SearchResult": "datanas_core.search.searcher",
    "arch_from_genotype": "datanas_core.search.searcher",
    "SearchTask": "datanas_core.search.task",
    "split_loss": "datanas_core.search.task",
}

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


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_core.search' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _CallableSearchModule(_ModuleType):
    """``datanas_core.search`` is the search subpackage and, called, searches your own model:
    ``datanas_core.search(model, train_data, val_data, loss=..., preset="data", epochs=...)`` runs
    :func:`datanas_core.api.search`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from datanas_core.api import search as _search

        return _search(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableSearchModule
