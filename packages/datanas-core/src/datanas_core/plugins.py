"""Discovery of search spaces that other packages advertise through the ``datanas.spaces`` entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from datanas_core.errors import UnknownNameError
from datanas_core.space.base import SPACES, SearchSpace

__all__ = ["ENTRY_POINT_GROUP", "get_space"]

logger = logging.getLogger(__name__)

#: Entry-point group a domain package uses to advertise its spaces (``"lm.darts_rnn" = "datanas_lm.space:RNNSpace"``).
ENTRY_POINT_GROUP = "datanas.spaces"


def get_space(name: str, **options: Any) -> SearchSpace:
    """Build the search space registered as ``name``.

    Spaces of packages that are installed but not imported yet are found through their entry points: only
    the requested entry point is loaded.

    Raises:
        UnknownNameError: no space of that name; the message lists every registered and advertised name.
    """
    if name not in SPACES:
        advertised = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if name in advertised:
            obj = advertised[name].load()
            if name not in SPACES:
                SPACES.register(name, obj)
        else:
            valid = sorted(set(SPACES.names()) | set(advertised))
            raise UnknownNameError(
                f"unknown search space {name!r}; valid search space names: {', '.join(valid)}"
            )
    return SPACES.build({"type": name, **options})
