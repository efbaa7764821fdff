"""Genotypes: the discrete architectures a search produces, as versioned, validated JSON.

A genotype lists, for every cell type of a space, the kept ``(src, dst, op)`` triples and the nodes whose
outputs form the cell output (``concat``). Node numbering is global inside a cell: the cell's input nodes
come first (``0 .. num_inputs-1``), then the intermediate nodes. Any in-degree is allowed and the same
``(src, dst)`` pair may carry several ops, which covers DARTS (2 inputs per node), GDAS/E2NAS (2 pairs per
node), DATA with M > 1 and EnTranNAS-DST (variable in-degree), NB201 (one op per edge) and recurrent cells
(one predecessor per node).

Genotypes are data: they are never ``eval``-ed. :meth:`Genotype.from_dict` checks the document's shape and
reports the JSON path of the first problem; :meth:`datanas_core.SearchSpace.validate` checks it against a space.
"""

from __future__ import annotations

import json
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
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Genotype:
        """Parse and shape-check a genotype document.

        Raises:
            GenotypeError: naming the JSON path of the first malformed entry.
        """
        if not isinstance(doc, Mapping):
            raise GenotypeError(f"$: expected an object, got {type(doc).__name__}")
        version = doc.get("schema_version", 1)
        if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
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
                    and isinstance(e[0], int)
                    and isinstance(e[1], int)
                    and not isinstance(e[0], bool)
                    and not isinstance(e[1], bool)
                    and isinstance(e[2], str)
                )
                if not ok:
                    raise GenotypeError(f"{path}.edges[{i}]: expected [src:int, dst:int, op:str], got {e!r}")
                if e[0] < 0 or e[1] <= e[0]:
                    raise GenotypeError(f"{path}.edges[{i}]: need 0 <= src < dst, got src={e[0]} dst={e[1]}")
                edges.append(EdgeChoice(int(e[0]), int(e[1]), str(e[2])))
            concat = cdoc.get("concat")
            if not isinstance(concat, list) or not all(isinstance(c, int) for c in concat) or not concat:
                raise GenotypeError(
                    f"{path}.concat: expected a non-empty list of node indices, got {concat!r}"
                )
            cells[str(name)] = CellGenotype(tuple(edges), tuple(concat))
        meta = doc.get("meta", {})
        if not isinstance(meta, Mapping):
            raise GenotypeError("$.meta: expected an object")
        return cls(space=space, cells=cells, schema_version=SCHEMA_VERSION, meta=dict(meta))

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(doc)

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
        p = Path(path)
        if not p.is_file():
            raise GenotypeError(f"genotype file {str(p)!r} does not exist")
        return cls.from_json(p.read_text(encoding="utf-8"))

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
