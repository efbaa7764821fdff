"""A tiny fully-connected search space: fast enough for exhaustive tests of estimators and search loops.

Each cell type is a DAG over vectors: ``num_inputs`` input nodes (the embedded input), ``num_nodes``
intermediate nodes, every earlier node feeding every later one; candidate ops are ``none`` and small
``tanh(Linear)`` maps. The network embeds the input, runs the cell ``layers`` times and classifies the mean
of the concat nodes. No BatchNorm and no dropout, so ``torch.func.functional_call`` and float64
finite-difference checks behave exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datanas_core.genotype import Genotype
from datanas_core.sample import ArchSample
from datanas_core.space.base import CellSpec, SearchSpace

__all__ = ["ToySpace", "ToyTask", "toy_batches"]


class _ToyCell(nn.Module):
    def __init__(self, spec: CellSpec, dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.ops = nn.ModuleList(
            nn.ModuleList(nn.Identity() if op == "none" else nn.Linear(dim, dim) for op in spec.ops)
            for _ in spec.edges
        )

    def _op(self, e: int, k: int, x: Tensor) -> Tensor:
        if self.spec.ops[k] == "none":
            return torch.zeros_like(x)
        return torch.tanh(self.ops[e][k](x))

    def forward(self, x: Tensor, sample: Any) -> Tensor:
        spec = self.spec
        states = [x] * spec.num_inputs
        w = sample.weights
        active = sample.active
        for node in spec.nodes:
            acc = torch.zeros_like(x)
            for e in spec.in_edges(node):
                src = spec.edges[e][0]
                for k in active[e]:
                    acc = acc + w[e, k] * self._op(e, k, states[src])
                if sample.grad_proxy:
                    inactive = [k for k in range(spec.num_ops) if k not in active[e]]
                    if inactive:
                        acc = acc + w[e, inactive].sum()
            states.append(acc)
        return torch.stack([states[i] for i in spec.concat]).mean(0)


class _ToyNet(nn.Module):
    def __init__(self, space: ToySpace, in_features: int, dim: int, num_classes: int, layers: int) -> None:
        super().__init__()
        self.space = space
        self.embed = nn.Linear(in_features, dim)
        cells = space.cells()
        self.cell_types = [ct for ct in cells for _ in range(layers)]
        self.cells = nn.ModuleList(_ToyCell(cells[ct], dim) for ct in self.cell_types)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor, arch: ArchSample) -> Tensor:
        h = torch.tanh(self.embed(x))
        for ct, cell in zip(self.cell_types, self.cells, strict=True):
            h = cell(h, arch[ct])
        return self.head(h)


class ToySpace(SearchSpace):
    """A vector-valued cell space with ``cell_types`` (default one type, ``"cell"``).

    Args:
        ops: candidate op names (any names; ``"none"`` is the zero op).
        num_inputs, num_nodes: DAG size.
        cell_types: names of the cell types.
        in_features, dim, num_classes, layers: network sizes (overridable in ``build_supernet``).
    """

    name = "toy"
    default_rule = "topk_edges"

    def __init__(
        self,
        ops: Sequence[str] = ("none", "lin_a", "lin_b"),
        num_inputs: int = 1,
        num_nodes: int = 2,
        cell_types: Sequence[str] = ("cell",),
        in_features: int = 4,
        dim: int = 6,
        num_classes: int = 3,
        layers: int = 1,
    ) -> None:
        self._cells = {ct: CellSpec.dense(ct, num_inputs, num_nodes, tuple(ops)) for ct in cell_types}
        self.sizes = {"in_features": in_features, "dim": dim, "num_classes": num_classes, "layers": layers}

    def cells(self) -> Mapping[str, CellSpec]:
        return self._cells

    def config(self) -> dict[str, Any]:
        first = next(iter(self._cells.values()))
        return {"name": self.name, "ops": list(first.ops), "cells": list(self._cells), **self.sizes}

    def build_supernet(self, **hparams: Any) -> nn.Module:
        sizes = {**self.sizes, **hparams}
        return _ToyNet(self, sizes["in_features"], sizes["dim"], sizes["num_classes"], sizes["layers"])

    def build_derived(self, genotype: Genotype, **hparams: Any) -> nn.Module:
        from datanas_core.search.searcher import arch_from_genotype

        net = self.build_supernet(**hparams)
        arch = arch_from_genotype(genotype, self)

        class _Derived(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: Tensor) -> Tensor:
                return self.net(x, arch)

        return _Derived()

    def edge_costs(self, metric: str = "params") -> dict[str, Tensor]:
        d = self.sizes["dim"]
        per_op = (
            {"params": float(d * d + d), "flops": float(d * d)}[metric]
            if metric in ("params", "flops")
            else None
        )
        if per_op is None:
            return super().edge_costs(metric)
        out = {}
        for ct, spec in self._cells.items():
            row = torch.tensor([0.0 if op == "none" else per_op for op in spec.ops])
            out[ct] = row.expand(spec.num_edges, -1).clone() * self.sizes["layers"]
        return out


class ToyTask:
    """Cross-entropy classification on ``(x, y)`` batches; logs accuracy."""

    def loss(self, model: nn.Module, batch: Any, arch: ArchSample) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        logits = model(x, arch)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        return loss, {"acc": float(acc)}

    def metrics(self, model: nn.Module, batch: Any, arch: ArchSample) -> dict[str, float]:
        loss, logs = self.loss(model, batch, arch)
        return {"loss": float(loss), **logs}


def toy_batches(
    n_batches: int,
    batch_size: int = 8,
    in_features: int = 4,
    num_classes: int = 3,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[Tensor, Tensor]]:
    """A learnable synthetic classification problem (labels from a fixed random linear map)."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(in_features, num_classes, generator=g, dtype=dtype)
    out = []
    for _ in range(n_batches):
        x = torch.randn(batch_size, in_features, generator=g, dtype=dtype)
        out.append((x, (x @ proj).argmax(-1)))
    return out
