"""Bundled recurrent genotypes (package data) and a loader for names or JSON files.

``darts_v1`` and ``darts_v2`` are the DARTS PTB cells published in quark0/darts ``rnn/genotypes.py``
(``DARTS = DARTS_V2`` there), converted to the datanas JSON format: node 0 is the initial state ``s0``,
nodes 1..8 the intermediate nodes, and the DARTS entry ``(activation, predecessor)`` number ``i`` becomes the
edge ``(predecessor, i + 1, activation)``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from datanas_core.errors import GenotypeError
from datanas_core.genotype import Genotype

__all__ = ["BUNDLED_GENOTYPES", "load_genotype"]

#: Names of the bundled genotypes.
BUNDLED_GENOTYPES: tuple[str, ...] = ("darts_v1", "darts_v2")


def load_genotype(spec: str | os.PathLike[str]) -> Genotype:
    """A bundled genotype by name (``"darts_v2"``, also ``"darts"``) or a genotype JSON file.

    Raises:
        GenotypeError: neither a bundled name nor an existing JSON file, or a malformed document.
    """
    name = str(spec)
    key = name.lower().replace("-", "_")
    if key == "darts":
        key = "darts_v2"
    if key in BUNDLED_GENOTYPES:
        text = resources.files(__name__).joinpath(f"{key}.json").read_text(encoding="utf-8")
        return Genotype.from_json(text)
    path = Path(name).expanduser()
    if path.is_file():
        return Genotype.load(path)
    raise GenotypeError(
        f"genotype {name!r} is neither a bundled name ({', '.join(BUNDLED_GENOTYPES)}, darts) "
        "nor an existing JSON file"
    )
