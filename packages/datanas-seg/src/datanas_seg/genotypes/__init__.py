"""Bundled genotypes of the ``seg.darts`` space, and resolution of genotype references.

A genotype reference is a :class:`~datanas_core.genotype.Genotype`, a genotype document (mapping), the name
of a bundled genotype (``<name>.json`` in this folder), a path to a genotype JSON file or a search run
directory (its ``genotype.json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from datanas_core.errors import GenotypeError
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
    if isinstance(ref, Genotype):
        return ref
    if isinstance(ref, Mapping):
        return Genotype.from_dict(ref)
    if isinstance(ref, (str, os.PathLike)):
        text = os.fspath(ref)
        bundled = bundled_genotypes()
        if text in bundled:
            res = resources.files(__name__).joinpath(f"{text}.json")
            return Genotype.from_json(res.read_text(encoding="utf-8"))
        p = Path(text).expanduser()
        if p.is_file():
            return Genotype.load(p)
        from datanas_core.runtime.report import find_run_dir

        run_dir = find_run_dir(p)  # a search run directory: its genotype.json
        if run_dir is not None:
            return Genotype.load(run_dir / "genotype.json")
        raise GenotypeError(
            f"genotype {text!r} is neither a bundled genotype, an existing JSON file nor a search run directory "
            "with a genotype.json; bundled genotypes: "
            f"{', '.join(bundled) or '(none)'}"
        )
    raise GenotypeError(
        f"expected a Genotype, a genotype document, a bundled name or a JSON path, got {type(ref).__name__}"
    )
