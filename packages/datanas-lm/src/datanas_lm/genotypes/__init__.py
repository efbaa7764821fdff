"""Bundled recurrent genotypes (package data) and a loader for names or JSON files.

``darts_v1`` and ``darts_v2`` are the DARTS PTB cells published in quark0/darts ``rnn/genotypes.py``
(``DARTS = DARTS_V2`` there), converted to the datanas JSON format: node 0 is the initial state ``s0``,
nodes 1..8 the intermediate nodes, and the DARTS entry ``(activation, predecessor)`` number ``i`` becomes the
edge ``(predecessor, i + 1, activation)``.
"""

from __future__ import annotations

import os
from importlib import resources

from datanas_core.genotype import Genotype

__all__ = ["BUNDLED_GENOTYPES", "load_genotype"]

#: Names of the bundled genotypes.
BUNDLED_GENOTYPES: tuple[str, ...] = ("darts_v1", "darts_v2")


def load_genotype(spec: str | os.PathLike[str]) -> Genotype:
    """A bundled genotype by name (``"darts_v2"``, also ``"darts"``), a genotype JSON file or a search run
    directory (:func:`datanas_core.cli_options.resolve_genotype`).

    Raises:
        GenotypeError: neither a bundled name nor an existing JSON file, or a malformed document.
    """
    from datanas_core.cli_options import resolve_genotype

    def loader(key: str) -> Genotype:
        return Genotype.from_json(
            resources.files(__name__).joinpath(f"{key}.json").read_text(encoding="utf-8")
        )

    bundled = {k: (lambda k=k: loader(k)) for k in BUNDLED_GENOTYPES}
    bundled["darts"] = bundled["darts_v2"]
    return resolve_genotype(spec, bundled=bundled, nb201=False)
