"""Hostile input to the genotype and NB201 loaders: only GenotypeError, nothing silently normalised.

Property-based (hypothesis) with bounded example counts so the default suite stays fast; the long fuzz runs
(10,000 documents / 2,000 strings) are ``tools/fuzz_loaders.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="property tests need hypothesis (tools/setup.sh installs it)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from datanas_core import get_space
from datanas_core.errors import GenotypeError, IncompatibleGenotypeError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _strict_json(text: str) -> Any:
    """json.loads that refuses NaN/Infinity (standard JSON)."""

    def bad(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=bad)


def _assert_round_trip(g: Genotype) -> None:
    text = g.to_json()
    _strict_json(text)
    back = Genotype.from_json(text)
    assert back == g
    assert back.to_json() == text


# ------------------------------------------------------------------------------------------------ strategies
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=12,
)
_node = st.integers(min_value=-1, max_value=7) | st.booleans() | st.just("2") | st.none()
_edge = st.lists(_node | st.sampled_from(_OPS) | st.just(""), min_size=0, max_size=4) | _json
_cell = (
    st.fixed_dictionaries(
        {"edges": st.lists(_edge, max_size=5) | _json, "concat": st.lists(_node, max_size=5) | _json}
    )
    | _json
)
_doc = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.sampled_from([1, 2, 0, True, "1", 1.0, None]),
        "space": st.sampled_from(["darts", "nb201", "", 3]),
        "cells": st.dictionaries(st.sampled_from(["normal", "reduce", "cell"]), _cell, max_size=3) | _json,
        "meta": st.dictionaries(st.text(max_size=5), _json, max_size=3) | _json,
    },
)


@st.composite
def _genotypes(draw: Any) -> Genotype:
    cells = {}
    for name in draw(
        st.lists(st.sampled_from(["normal", "reduce", "cell"]), min_size=1, max_size=3, unique=True)
    ):
        edges = draw(
            st.lists(
                st.tuples(st.integers(0, 6), st.integers(1, 7), st.sampled_from(_OPS[1:])).filter(
                    lambda e: e[0] < e[1]
                ),
                max_size=6,
                unique=True,
            )
        )
        concat = draw(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True))
        cells[name] = CellGenotype(tuple(EdgeChoice(*e) for e in edges), tuple(concat))
    meta = draw(st.dictionaries(st.text(max_size=5), _json_leaf.filter(_finite), max_size=3))
    return Genotype(draw(st.sampled_from(["darts", "nb201", "x"])), cells, meta=meta)


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


# ----------------------------------------------------------------------------------------------- genotypes
@FAST
@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_genotype_error(data: bytes) -> None:
    try:
        g = Genotype.from_json(data)
    except GenotypeError:
        return
    _assert_round_trip(g)


@FAST
@given(_doc | _json)
def test_any_json_document_loads_or_raises_genotype_error(doc: Any) -> None:
    try:
        g = Genotype.from_json(json.dumps(doc))
    except GenotypeError:
        return
    _assert_round_trip(g)


@FAST
@given(_genotypes())
def test_valid_genotypes_round_trip_exactly(g: Genotype) -> None:
    _assert_round_trip(g)
    assert Genotype.from_dict(g.to_dict()).to_dict() == g.to_dict()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"space": "darts", "cells": {}}\xff\xfe', "not UTF-8.*offset"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"schema_version": ' + b"7" * 5000 + b"}", "not a genotype"),
        (
            b'{"schema_version": true, "space": "x", "cells": {"c": {"edges": [], "concat": [1]}}}',
            "schema_version",
        ),
        (b'{"space": "x", "cells": {"c": {"edges": [], "concat": [false]}}}', "concat"),
        (b'{"space": "x", "cells": {"c": {"edges": [], "concat": [2, 2]}}}', "names a node twice"),
        (
            b'{"space": "x", "cells": {"c": {"edges": [[0, 1, "a"], [0, 1, "a"]], "concat": [1]}}}',
            "duplicate",
        ),
        (
            b'{"space": "x", "cells": {"c": {"edges": [], "concat": [1]}}, "meta": '
            + b'{"a":' * 40
            + b"1"
            + b"}" * 41,
            "meta",
        ),
    ],
)
def test_hostile_genotype_files_raise_genotype_error_naming_the_problem(
    tmp_path: Path, content: bytes, match: str
) -> None:
    p = tmp_path / "g.json"
    p.write_bytes(content)
    with pytest.raises(GenotypeError, match=match) as info:
        Genotype.load(p)
    assert "g.json" in str(info.value)
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, GenotypeError)


def test_unreadable_genotype_path_is_a_genotype_error(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="does not exist"):
        Genotype.load(tmp_path)
    with pytest.raises(GenotypeError, match="does not exist"):
        Genotype.load(tmp_path / "missing.json")


def test_to_json_never_writes_bare_nan() -> None:
    g = Genotype(
        "x",
        {"c": CellGenotype((EdgeChoice(0, 1, "a"),), (1,))},
        meta={"loss": float("nan"), "v": [float("inf")]},
    )
    doc = _strict_json(g.to_json())
    assert doc["meta"] == {"loss": None, "v": [None]}
    assert Genotype.from_json(g.to_json()) == g


def test_space_validation_rejects_reduce_concat_of_an_input_and_duplicates() -> None:
    space = get_space("darts")
    normal = CellGenotype(
        tuple(EdgeChoice(s, d, "sep_conv_3x3") for d in range(2, 6) for s in (0, 1)), (2, 3, 4, 5)
    )
    ok = Genotype("darts", {"normal": normal, "reduce": normal})
    space.validate(ok)
    bad_reduce = CellGenotype(normal.edges, (0, 2, 3, 4, 5))
    with pytest.raises(
        IncompatibleGenotypeError, match=r"concat node 0 is a cell input.*valid: nodes 2\.\.5"
    ):
        space.validate(Genotype("darts", {"normal": normal, "reduce": bad_reduce}))
    dup = CellGenotype(normal.edges, (2, 3, 3))
    with pytest.raises(IncompatibleGenotypeError, match="twice"):
        space.validate(Genotype("darts", {"normal": dup, "reduce": normal}))


# ---------------------------------------------------------------------------------------------------- NB201
_NB201 = get_space("nb201")
_CANON = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@st.composite
def _nb201_strings(draw: Any) -> str:
    """Canonical strings and small mutations of them (digits, whitespace, Unicode digits, separators)."""
    ops = [draw(st.sampled_from(_OPS)) for _ in range(6)]
    it = iter(ops)
    text = "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in range(1, 4))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 2))
        if kind == 0:
            text = (
                text[:pos]
                + draw(st.sampled_from(["0", " ", "\t", "\u0661", "\uff11", "~", "|", "+", "x", "\n"]))
                + text[pos:]
            )
        elif kind == 1:
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + draw(st.characters()) + text[pos + 1 :]
    return text


@FAST
@given(_nb201_strings() | st.text(max_size=60))
def test_nb201_parse_is_strict_and_never_normalises(text: str) -> None:
    try:
        g = _NB201.from_string(text)
    except GenotypeError:
        return
    assert _NB201.to_string(g) == text


@FAST
@given(st.lists(st.sampled_from(_OPS), min_size=6, max_size=6))
def test_nb201_valid_strings_round_trip(ops: list[str]) -> None:
    it = iter(ops)
    text = "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in range(1, 4))
    g = _NB201.from_string(text)
    assert _NB201.to_string(g) == text
    _assert_round_trip(g)


@pytest.mark.parametrize(
    "text",
    [
        _CANON.replace("~0", "~00", 1),
        _CANON.replace("~1", "~\u0661", 1),
        _CANON.replace("~2", "~\uff12", 1),
        " " + _CANON,
        _CANON + "\n",
        _CANON.replace("|+|", "| + |", 1),
        _CANON.replace("|nor_conv_3x3~0|nor_conv_3x3~1|", "|nor_conv_3x3~1|nor_conv_3x3~0|", 1),
        _CANON.replace("~0", "~+0", 1),
        _CANON.replace("~0", "~-0", 1),
        _CANON.replace("~0", "~0_", 1),
    ],
)
def test_nb201_non_canonical_strings_are_refused(text: str) -> None:
    with pytest.raises(GenotypeError):
        _NB201.from_string(text)
    assert _NB201.to_string(_NB201.from_string(_CANON)) == _CANON
