"""One entry point that builds the right searcher for a configuration (plain bilevel search or a method that
needs more wiring, such as E2NAS' complementation and exploration)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from datanas_core.search.config import SearchConfig
from datanas_core.search.searcher import Searcher
from datanas_core.search.task import SearchTask
from datanas_core.space.base import SearchSpace

__all__ = ["build_searcher"]

logger = logging.getLogger(__name__)


def build_searcher(
    space: SearchSpace,
    task: SearchTask,
    config: SearchConfig,
    *,
    supernet_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    device: Any = None,
    method_options: Mapping[str, Any] | None = None,
    stages: Any = None,
) -> Searcher:
    """A :class:`Searcher` for ``config``; domain CLIs call this instead of the constructor.

    - ``estimator="e2nas"``: :func:`datanas_core.e2nas.e2nas_searcher` (complementation ``lam``, exploration
      ``novelty_weight``/``r`` from ``method_options``).
    - ``stages`` (e.g. ``"25:6:7,25:4:4"``): DrNAS progressive search
      (:class:`datanas_core.drnas.ProgressiveSearcher`: partial channels, pruning, widening per stage).
    - anything else: ``Searcher(space, task, config, ...)``.

    Every entry of ``config.approximations`` (e.g. EGS on the sparse executor) is logged as a warning; the
    run directory records them with the config (``search_config.approximations``).
    """
    opts = dict(method_options or {})
    for note in config.approximations:
        logger.warning("approximation: %s", note)
    if stages is not None and not (isinstance(stages, str) and not stages.strip()):
        from datanas_core.drnas import ProgressiveSearcher

        return ProgressiveSearcher(
            space,
            task,
            config,
            stages=stages,
            supernet_kwargs=supernet_kwargs,
            callbacks=callbacks,
            device=device,
        )
    if config.estimator == "e2nas":
        from datanas_core.e2nas import e2nas_searcher

        return e2nas_searcher(
            space, task, config, supernet_kwargs=supernet_kwargs, callbacks=callbacks, device=device, **opts
        )
    return Searcher(space, task, config, supernet_kwargs=supernet_kwargs, callbacks=callbacks, device=device)
