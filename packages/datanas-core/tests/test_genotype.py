from __future__ import annotations

import json

import pytest

from datanas_core.errors import GenotypeError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.testing import ToySpace


def _g() -> Genotype:
    return Genotype(
        "toy", {"cell": CellGenotype([(0, 1, "lin_a"), (0, 2, "lin_b"), (1, 2, "lin_a")], (1, 2))}
    )


def test_json_round_trip_and_canonical_order(tmp_path) -> None:
    g = _g()
    assert Genotype.from_json(g.to_json()) == g
    shuffled = Genotype(
        "toy", {"cell": CellGenotype([(1, 2, "lin_a"), (0, 2, "lin_b"), (0, 1, "lin_a")], (1, 2))}
    )
    assert shuffled == g and hash(shuffled) == hash(g)
    path = g.save(tmp_path / "sub" / "g.json")
    assert Genotype.load(path) == g
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_meta_does_not_affect_equality() -> None:
    assert _g().with_meta(source="x") == _g()
    assert Genotype.from_json(_g().with_meta(source="x").to_json()).meta == {"source": "x"}


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"space": "toy"}, r"\$\.cells"),
        ({"space": "", "cells": {"c": {}}}, r"\$\.space"),
        (
            {"space": "toy", "cells": {"cell": {"edges": [[0, 1]], "concat": [1]}}},
            r"\$\.cells\.cell\.edges\[0\]",
        ),
        ({"space": "toy", "cells": {"cell": {"edges": [[2, 1, "lin_a"]], "concat": [1]}}}, r"src < dst"),
        ({"space": "toy", "cells": {"cell": {"edges": [], "concat": []}}}, r"concat"),
        (
            {"schema_version": 99, "space": "toy", "cells": {"cell": {"edges": [], "concat": [1]}}},
            "schema_version",
        ),
    ],
)
def test_malformed_documents_name_the_json_path(doc: dict, path: str) -> None:
    with pytest.raises(GenotypeError, match=path):
        Genotype.from_dict(doc)


def test_invalid_json_text() -> None:
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.from_json("{nope")


def test_validate_against_space_names_the_edge() -> None:
    space = ToySpace()
    space.validate(_g())
    bad_op = Genotype("toy", {"cell": CellGenotype([(0, 1, "conv9")], (1,))})
    with pytest.raises(IncompatibleGenotypeError, match=r"edge \(0, 1, 'conv9'\).*valid ops: lin_a, lin_b"):
        space.validate(bad_op)
    bad_edge = Genotype("toy", {"cell": CellGenotype([(0, 1, "lin_a"), (1, 5, "lin_a")], (1,))})
    with pytest.raises(IncompatibleGenotypeError, match=r"\(1, 5\) is not an edge"):
        space.validate(bad_edge)
    wrong_space = Genotype("darts", _g().cells)
    with pytest.raises(IncompatibleGenotypeError, match="is for space 'darts', not 'toy'"):
        space.validate(wrong_space)
    dangling = Genotype("toy", {"cell": CellGenotype([(0, 1, "lin_a")], (1, 2))})
    with pytest.raises(IncompatibleGenotypeError, match="node 2 is part of the cell output but has no input"):
        space.validate(dangling)


def test_from_pairs_matches_darts_layout() -> None:
    g = Genotype.from_pairs("darts", {"normal": ([("sep_conv_3x3", 0), ("skip_connect", 1)], [2])})
    assert g.cells["normal"].edges == (EdgeChoice(0, 2, "sep_conv_3x3"), EdgeChoice(1, 2, "skip_connect"))
    assert json.loads(g.to_json())["cells"]["normal"]["concat"] == [2]
