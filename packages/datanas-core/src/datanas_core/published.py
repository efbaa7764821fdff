"""Published cells shipped as package data (``datanas_core/genotypes/*.json``).

Each file is a :class:`~datanas_core.genotype.Genotype` document whose ``meta`` records the source repository,
file and commit it was transcribed from, the paper, and the numbers the authors report. Cells:

* DARTS space: ``DARTS_V1``, ``DARTS_V2``, ``GDAS``, ``PC_DARTS``, ``DrNAS``, ``SNAS`` (mild), ``E2NAS``,
  ``E2NAS_C``;
* extended DARTS space (variable in-degree): ``DATA_M4``, ``DATA_M7``;
* NAS-Bench-201: ``NB201_BEST``.

Example:
    >>> g = load_published("DARTS_V2")
    >>> g.space
    'darts'
"""

from __future__ import annotations

import difflib
from importlib import resources
from typing import TYPE_CHECKING

from datanas_core.errors import UnknownNameError
from datanas_core.genotype import Genotype

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["load_published", "published_names"]

_PACKAGE = "datanas_core"
_FOLDER = "genotypes"


def _folder() -> Traversable:
    return resources.files(_PACKAGE).joinpath(_FOLDER)


def published_names() -> list[str]:
    """Names of the shipped cells, sorted."""
    return sorted(p.name[: -len(".json")] for p in _folder().iterdir() if p.name.endswith(".json"))


def load_published(name: str, *, validate: bool = True) -> Genotype:
    """Load a shipped cell by name.

    Args:
        name: one of :func:`published_names` (case-insensitive).
        validate: check the cell against its search space (built with default options).

    Raises:
        UnknownNameError: ``name`` is not shipped; the message lists the shipped names.
        IncompatibleGenotypeError: the cell does not fit its space (only with ``validate``).
    """
    names = published_names()
    by_lower = {n.lower(): n for n in names}
    key = by_lower.get(str(name).lower())
    if key is None:
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown published cell {name!r}; published cells: {', '.join(names)}.{hint}")
    genotype = Genotype.from_json(_folder().joinpath(f"{key}.json").read_text(encoding="utf-8"))
    if validate:
        from datanas_core.space import darts, nb201  # noqa: F401  (registers the core spaces)
        from datanas_core.space.base import SPACES

        SPACES.build(genotype.space).validate(genotype)
    return genotype
