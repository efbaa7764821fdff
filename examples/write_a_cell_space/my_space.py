"""A complete new cell space in one file: the code of the "write a new cell space" guide (README.md).

A cell over feature vectors: 1 input node, 3 intermediate nodes, every earlier node feeding every later one;
candidate ops ``none``, ``skip``, ``linear`` and ``mlp``. The supernet's edges are MixedOps (the engine's
weighted sum, exact and sparse executors); the derived network runs only the genotype's edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from datanas_core import CellSpec, Genotype, MixedOp, SearchSpace
from datanas_core.sample import ArchSample
from datanas_core.space.mixed import PreparedCellSample
from datanas_core.testing import check_search_space

OPS = ("none", "skip", "linear", "mlp")


def make_op(name: str, dim: int) -> nn.Module:
    """One candidate op (``none`` is never built: MixedOp treats it as an exact zero)."""
    if name == "skip":
        return nn.Identity()
    if name == "linear":
        return nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
    if name == "mlp":
        return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
    raise KeyError(name)


class VectorCellSupernet(nn.Module):
    """``forward(x, arch)``: embed, one searched cell, classify; the cell's edges are MixedOps."""

    def __init__(self, spec: CellSpec, in_features: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Linear(in_features, dim)
        self.edges = nn.ModuleList(
            MixedOp([(op, None if op == "none" else make_op(op, dim)) for op in spec.ops], C_out=dim)
            for _ in spec.edges
        )
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, arch: ArchSample) -> Tensor:
        spec = self.spec
        # one sample per cell type and forward pass, split once for all edges
        p = PreparedCellSample.from_sample(
            arch[spec.cell_type], spec.ops, spec.num_edges, where="vector cell"
        )
        states = [torch.relu(self.embed(x))]
        for node in spec.nodes:
            total = torch.zeros_like(states[0])
            for e in spec.in_edges(node):
                if p.skip(e):  # nothing to run and no gradient carrier
                    continue
                if not p.run[e]:  # only the zero-valued gradient carrier (MixedOp.zeros assumes images)
                    total = total + p.proxy[e]
                    continue
                src = spec.edges[e][0]
                total = total + self.edges[e](
                    states[src], p.rows[e], p.run[e], p.proxy[e] is not None, proxy=p.proxy[e]
                )
            states.append(total)
        return self.head(torch.stack([states[i] for i in spec.concat]).mean(0))


class VectorCellDerived(nn.Module):
    """The discrete network of a genotype: only its ``(src, dst, op)`` triples exist."""

    def __init__(
        self, genotype: Genotype, spec: CellSpec, in_features: int, dim: int, num_classes: int
    ) -> None:
        super().__init__()
        cell = genotype.cells[spec.cell_type]
        self.triples = [(e.src, e.dst) for e in cell.edges]
        self.ops = nn.ModuleList(make_op(e.op, dim) for e in cell.edges)
        self.nodes = list(spec.nodes)
        self.concat = list(cell.concat)
        self.embed = nn.Linear(in_features, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        states = {0: torch.relu(self.embed(x))}
        for node in self.nodes:
            total = torch.zeros_like(states[0])
            for (src, dst), op in zip(self.triples, self.ops, strict=True):
                if dst == node:
                    total = total + op(states[src])
            states[node] = total
        return self.head(torch.stack([states[i] for i in self.concat]).mean(0))


class VectorCellSpace(SearchSpace):
    """The space: its cell spec (data), and the two builders."""

    name = "vector_cell"
    default_rule = "topk_edges"  # DARTS' rule: two inputs per node

    def __init__(self, in_features: int = 8, dim: int = 16, num_classes: int = 4) -> None:
        self.sizes = {"in_features": in_features, "dim": dim, "num_classes": num_classes}
        self._cells = {"cell": CellSpec.dense("cell", num_inputs=1, num_nodes=3, ops=OPS)}

    def cells(self) -> Mapping[str, CellSpec]:
        return self._cells

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.sizes}

    def build_supernet(self, **hparams: Any) -> nn.Module:
        s = {**self.sizes, **hparams}
        return VectorCellSupernet(self._cells["cell"], s["in_features"], s["dim"], s["num_classes"])

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        self.validate(genotype)
        s = {**self.sizes, **hparams}
        return VectorCellDerived(genotype, self._cells["cell"], s["in_features"], s["dim"], s["num_classes"])


def check() -> Any:
    """The conformance kit on this space (what the space's own test calls)."""
    return check_search_space(
        VectorCellSpace(),
        supernet_kwargs={"dim": 8},
        make_input=lambda g: torch.randn(4, 8, generator=g),
        estimators=("softmax", "egs", "gdas", "snas", "dirichlet"),
    )


if __name__ == "__main__":
    print(check().checks)  # noqa: T201 - a script
