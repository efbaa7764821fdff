"""Fuzz the genotype and NB201 loaders: every input loads (and round-trips exactly) or raises GenotypeError.

    python tools/fuzz_loaders.py                       # 10,000 genotype documents, 2,000 NB201 strings
    python tools/fuzz_loaders.py --docs 500 --strings 100 --seed 3

Genotype documents are bytes: valid genotypes, mutated genotypes (wrong types, booleans for integers,
duplicate or input concat nodes, NaN in meta), random JSON, deep nesting, integers over 4,300 digits, invalid
UTF-8 and random bytes. NB201 strings are canonical strings with insertions, deletions and substitutions
(leading zeros, Unicode digits, whitespace, separators). Exit status 1 when any input raised another
exception type, or was accepted but did not round-trip to the same text (silent normalisation).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from typing import Any

from datanas_core import get_space
from datanas_core.errors import GenotypeError
from datanas_core.genotype import Genotype

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _valid_doc(rng: random.Random) -> dict[str, Any]:
    cells = {}
    for name in rng.sample(["normal", "reduce", "cell"], rng.randint(1, 3)):
        edges = sorted({(s, d, rng.choice(OPS[1:])) for d in range(2, 6) for s in rng.sample(range(d), 2)})
        cells[name] = {
            "edges": [list(e) for e in edges],
            "concat": sorted(rng.sample(range(2, 6), rng.randint(1, 4))),
        }
    return {"schema_version": 1, "space": rng.choice(["darts", "nb201"]), "cells": cells, "meta": {"seed": 1}}


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 7, 10**20, rng.randint(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1e308, float("nan"), float("inf")])
    if kind == 4:
        return rng.choice(["", "a", "normal", "sep_conv_3x3", "\u0661", "\x00"])
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["edges", "concat", "space", "cells", "meta", "x"]): _random_json(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def _mutate(rng: random.Random, doc: Any) -> Any:
    """Replace one random node of ``doc`` by a random value."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        k = rng.choice(list(doc))
        return {**doc, k: _mutate(rng, doc[k])}
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        i = rng.randrange(len(doc))
        return [*doc[:i], _mutate(rng, doc[i]), *doc[i + 1 :]]
    return rng.choice(
        [True, False, None, 0, -1, 2, "2", [], {}, 1.5, float("nan"), [2, 2], [0], _random_json(rng)]
    )


def genotype_input(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return json.dumps(_valid_doc(rng)).encode()
    if kind in (1, 2, 3, 4):
        doc = _valid_doc(rng)
        for _ in range(rng.randint(1, 3)):
            doc = _mutate(rng, doc)
        return json.dumps(doc).encode()
    if kind == 5:
        return json.dumps(_random_json(rng)).encode()
    if kind == 6:
        n = rng.choice([10, 1000, 5000, 100_000])
        return (rng.choice(["[", '{"a":']) * n).encode()
    if kind == 7:
        return b'{"schema_version": ' + b"9" * rng.choice([100, 4301, 10_000]) + b"}"
    if kind == 8:
        raw = bytearray(json.dumps(_valid_doc(rng)).encode())
        raw[rng.randrange(len(raw))] = rng.choice([0xFF, 0xC3, 0x80, 0xED])
        return bytes(raw)
    return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))


def nb201_input(rng: random.Random) -> str:
    it = iter(rng.choice(OPS) for _ in range(6))
    text = "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in range(1, 4))
    for _ in range(rng.randint(0, 3)):
        pos = rng.randrange(len(text) + 1)
        piece = rng.choice(
            ["0", "00", " ", "\t", "\n", "\u0661", "\uff11", "~", "|", "+", "x", "1", "-", "\u00a0"]
        )
        op = rng.randrange(3)
        if op == 0:
            text = text[:pos] + piece + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + piece + text[pos + 1 :]
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--strings", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    bad: list[str] = []
    for i in range(args.docs):
        data = genotype_input(rng)
        try:
            g = Genotype.from_json(data)
        except GenotypeError:
            outcomes["genotype: GenotypeError"] += 1
            continue
        except BaseException as exc:  # noqa: BLE001 - what the fuzzer looks for
            outcomes[f"genotype: {type(exc).__name__}"] += 1
            bad.append(f"doc {i}: {type(exc).__name__}: {str(exc)[:100]}")
            continue
        text = g.to_json()
        back = Genotype.from_json(text)
        if back != g or back.to_json() != text or "NaN" in text or "Infinity" in text:
            bad.append(f"doc {i}: does not round-trip exactly")
        outcomes["genotype: loaded"] += 1
    space = get_space("nb201")
    for i in range(args.strings):
        s = nb201_input(rng)
        try:
            g = space.from_string(s)
        except GenotypeError:
            outcomes["nb201: GenotypeError"] += 1
            continue
        except BaseException as exc:  # noqa: BLE001
            outcomes[f"nb201: {type(exc).__name__}"] += 1
            bad.append(f"string {i} {s!r}: {type(exc).__name__}: {exc}")
            continue
        if space.to_string(g) != s:
            bad.append(f"string {i} {s!r}: accepted and normalised to {space.to_string(g)!r}")
        outcomes["nb201: accepted"] += 1
    for k, v in sorted(outcomes.items()):
        sys.stdout.write(f"{k}: {v}\n")
    for line in bad[:20]:
        sys.stdout.write(f"FAIL {line}\n")
    sys.stdout.write(f"{len(bad)} failure(s) in {args.docs} documents and {args.strings} strings\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
