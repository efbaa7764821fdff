"""Genotypes: the discrete architectures a search produces, as versioned, validated JSON.

A genotype lists, for every cell type of a space, the kept ``(src, dst, op)`` triples and the nodes whose
outputs form the cell output (``concat``). Node numbering is global inside a cell: the cell's input nodes
come first (``0 .. num_inputs-1``), then the intermediate nodes. Any in-degree is allowed and the same
``(src, dst)`` pair may carry several ops, which covers DARTS (2 inputs per node), GDAS/E2NAS (2 pairs per
node), DATA with M > 1 and EnTranNAS-DST (variable in-degree), NB201 (one op per edge) and recurrent cells
(one predecessor per node).

Genotypes are data: they are never ``eval``-ed. :meth:`Genotype.from_dict` checks the document's shape and
reports the JSON path of the first problem; :meth:`datanas_core.SearchSpace.validate` checks it against a space.
Reading a genotype raises :class:`~datanas_core.errors.GenotypeError` and nothing else, whatever the bytes:
not UTF-8, not JSON, nested too deeply, integers too long to convert, wrong types. :meth:`Genotype.to_json`
writes standard JSON only: a non-finite float in ``meta`` (NaN, infinity) is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datanas_core.errors import GenotypeError

__all__ = ["SCHEMA_VERSION", "CellGenotype", "EdgeChoice", "Genotype"]

#: Current schema version written by :meth:`Genotype.to_dict`.
SCHEMA_VERSION = 1

#: Deepest nesting of lists/objects accepted in ``meta`` (deeper documents are refused, not truncated).
MAX_META_DEPTH = 32


@dataclass(frozen=True, order=True)
class EdgeChoice:
    """One kept operation: ``op`` applied to node ``src``, summed into node ``dst``."""

    src: int
    dst: int
    op: str

    def to_list(self) -> list[Any]:
        return [self.src, self.dst, self.op]


@dataclass(frozen=True)
class CellGenotype:
    """The derived graph of one cell type.

    Args:
        edges: kept ``(src, dst, op)`` triples (sorted on construction for a canonical form).
        concat: nodes whose outputs form the cell output.
    """

    edges: tuple[EdgeChoice, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        edges = tuple(sorted(e if isinstance(e, EdgeChoice) else EdgeChoice(*e) for e in self.edges))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "concat", tuple(int(c) for c in self.concat))

    def inputs_of(self, dst: int) -> list[EdgeChoice]:
        """Kept edges that end at node ``dst``."""
        return [e for e in self.edges if e.dst == dst]

    @property
    def nodes(self) -> list[int]:
        """Destination nodes that have at least one kept input, ascending."""
        return sorted({e.dst for e in self.edges})

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [e.to_list() for e in self.edges], "concat": list(self.concat)}


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture for a named search space.

    Example:
        >>> g = Genotype("nb201", {"cell": CellGenotype([(0, 1, "nor_conv_3x3")], (1,))})
        >>> Genotype.from_json(g.to_json()) == g
        True
    """

    space: str
    cells: Mapping[str, CellGenotype]
    schema_version: int = SCHEMA_VERSION
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", dict(sorted(self.cells.items())))
        object.__setattr__(self, "meta", dict(self.meta))

    def __hash__(self) -> int:
        return hash((self.space, tuple(self.cells.items())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "space": self.space,
            "cells": {k: c.to_dict() for k, c in self.cells.items()},
            "meta": dict(self.meta),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Standard JSON (sorted keys); non-finite floats in ``meta`` become ``null``."""
        return json.dumps(_finite(self.to_dict()), indent=indent, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Genotype:
        """Parse and shape-check a genotype document.

        Raises:
            GenotypeError: naming the JSON path of the first malformed entry.
        """
        if not isinstance(doc, Mapping):
            raise GenotypeError(f"$: expected an object, got {type(doc).__name__}")
        version = doc.get("schema_version", 1)
        if not _is_int(version) or version < 1 or version > SCHEMA_VERSION:
            raise GenotypeError(
                f"$.schema_version: unsupported value {version!r}; this datanas reads 1..{SCHEMA_VERSION}"
            )
        space = doc.get("space")
        if not isinstance(space, str) or not space:
            raise GenotypeError(f"$.space: expected a non-empty string, got {space!r}")
        cells_doc = doc.get("cells")
        if not isinstance(cells_doc, Mapping) or not cells_doc:
            raise GenotypeError("$.cells: expected a non-empty object mapping cell type -> cell")
        cells: dict[str, CellGenotype] = {}
        for name, cdoc in cells_doc.items():
            path = f"$.cells.{name}"
            if not isinstance(cdoc, Mapping):
                raise GenotypeError(f"{path}: expected an object with 'edges' and 'concat'")
            raw_edges = cdoc.get("edges")
            if not isinstance(raw_edges, list):
                raise GenotypeError(f"{path}.edges: expected a list of [src, dst, op]")
            edges = []
            for i, e in enumerate(raw_edges):
                ok = (
                    isinstance(e, (list, tuple))
                    and len(e) == 3
                    and _is_int(e[0])
                    and _is_int(e[1])
                    and isinstance(e[2], str)
                    and bool(e[2])
                )
                if not ok:
                    raise GenotypeError(
                        f"{path}.edges[{i}]: expected [src:int, dst:int, op:non-empty str], got {_short(e)}"
                    )
                if e[0] < 0 or e[1] <= e[0]:
                    raise GenotypeError(f"{path}.edges[{i}]: need 0 <= src < dst, got src={e[0]} dst={e[1]}")
                edges.append(EdgeChoice(int(e[0]), int(e[1]), str(e[2])))
            concat = cdoc.get("concat")
            if not isinstance(concat, list) or not concat or not all(_is_int(c) and c >= 0 for c in concat):
                raise GenotypeError(
                    f"{path}.concat: expected a non-empty list of node indices (integers >= 0), "
                    f"got {_short(concat)}"
                )
            if len(set(concat)) != len(concat):
                raise GenotypeError(f"{path}.concat: {concat!r} names a node twice")
            if len(set(edges)) != len(edges):
                raise GenotypeError(f"{path}.edges: duplicate [src, dst, op] entries")
            cells[str(name)] = CellGenotype(tuple(edges), tuple(concat))
        meta = doc.get("meta", {})
        if not isinstance(meta, Mapping):
            raise GenotypeError("$.meta: expected an object")
        if _depth(meta) > MAX_META_DEPTH:
            raise GenotypeError(f"$.meta: nested deeper than {MAX_META_DEPTH} levels")
        return cls(space=space, cells=cells, schema_version=SCHEMA_VERSION, meta=dict(meta))

    @classmethod
    def from_json(cls, text: str | bytes) -> Genotype:
        """Parse a JSON genotype document (``bytes`` must be UTF-8).

        Raises:
            GenotypeError: not UTF-8, not JSON, nested too deeply, an integer too long, or a malformed
                document (see :meth:`from_dict`).
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise GenotypeError(
                    f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start} cannot be decoded"
                ) from None
        if not isinstance(text, str):
            raise GenotypeError(f"expected JSON text, got {type(text).__name__}")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise GenotypeError("not a genotype: the JSON document is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts (sys.get_int_max_str_digits)
            raise GenotypeError(f"not a genotype: {exc}") from None
        try:
            return cls.from_dict(doc)
        except RecursionError:
            raise GenotypeError("not a genotype: the JSON document is nested too deeply") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the genotype as JSON atomically (temporary file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genotype:
        """Read a genotype JSON file.

        Raises:
            GenotypeError: the file is missing or unreadable, or its content is not a genotype (the message
                names the file and the problem).
        """
        p = Path(path)
        if not p.is_file():
            raise GenotypeError(f"genotype file {str(p)!r} does not exist")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise GenotypeError(f"cannot read genotype file {str(p)!r}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(data)
        except GenotypeError as exc:
            raise GenotypeError(f"genotype file {str(p)!r}: {exc}") from None

    def with_meta(self, **meta: Any) -> Genotype:
        return Genotype(self.space, self.cells, self.schema_version, {**self.meta, **meta})

    @staticmethod
    def from_pairs(
        space: str,
        cells: Mapping[str, tuple[Iterable[tuple[str, int]], Iterable[int]]],
        *,
        num_inputs: int = 2,
        per_node: int = 2,
    ) -> Genotype:
        """Build from the classic DARTS list form ``[(op, input), ...]`` (``per_node`` entries per node).

        Example:
            ``Genotype.from_pairs("darts", {"normal": ([("sep_conv_3x3", 0), ...], [2, 3, 4, 5]), ...})``
        """
        out: dict[str, CellGenotype] = {}
        for name, (pairs, concat) in cells.items():
            pairs = list(pairs)
            edges = []
            for idx, (op, src) in enumerate(pairs):
                dst = num_inputs + idx // per_node
                edges.append(EdgeChoice(int(src), dst, op))
            out[name] = CellGenotype(tuple(edges), tuple(concat))
        return Genotype(space, out)


def _is_int(v: Any) -> bool:
    """An integer that is not a bool (JSON ``true`` is not a node index or a version)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _depth(obj: Any) -> int:
    """Nesting depth of lists/objects in ``obj`` (iterative: safe for hostile documents)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, Mapping):
            children: Iterable[Any] = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_META_DEPTH:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def _short(v: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (error messages quote hostile input)."""
    try:
        text = repr(v)
    except (RecursionError, ValueError):
        return f"<{type(v).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by ``None`` (standard JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
