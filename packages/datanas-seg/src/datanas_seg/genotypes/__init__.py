"""Bundled genotypes of the ``seg.darts`` space, and resolution of genotype references.

A genotype reference is a :class:`~datanas_core.genotype.Genotype`, a genotype document (mapping), the name
of a bundled genotype (``<name>.json`` in this folder), a path to a genotype JSON file or a search run
directory (its ``genotype.json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from datanas_core.genotype import Genotype

__all__ = ["bundled_genotypes", "resolve_genotype"]

GenotypeRef = Genotype | Mapping[str, Any] | str | os.PathLike[str]


def bundled_genotypes() -> list[str]:
    """Names of the genotypes shipped with datanas-seg."""
    root = resources.files(__name__)
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def resolve_genotype(ref: GenotypeRef) -> Genotype:
    """Turn a genotype reference into a :class:`Genotype`.

    Args:
        ref: a Genotype, a genotype document, a bundled name (see :func:`bundled_genotypes`), a JSON path or a
            search run directory.

    Raises:
        GenotypeError: the name is neither bundled nor an existing file (the message lists bundled names), or
            the document is malformed.
    """
    from datanas_core.cli_options import resolve_genotype as core_resolve

    def loader(name: str) -> Any:
        return lambda: Genotype.from_json(
            resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
        )

    return core_resolve(
        ref, bundled={n: loader(n) for n in bundled_genotypes()}, nb201=False, run_dirs_only=True
    )
