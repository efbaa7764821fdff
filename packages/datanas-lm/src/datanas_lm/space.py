"""The DARTS recurrent-cell search space for language modelling (methods.md §1.3), ``"lm.darts_rnn"``.

One cell type, ``"recurrent"``: node 0 is the cell's initial state ``s0`` (computed from the input and the
previous hidden state), nodes 1..8 are intermediate nodes, every node takes an edge from every earlier node
(1 + 2 + ... + 8 = 36 edges) and the candidate ops are the activations ``none, tanh, relu, sigmoid,
identity``. The cell output is the mean of nodes 1..8.

Derivation: DARTS keeps, per node, the single strongest predecessor and its best non-``none`` activation
(rule ``"topk_edges"`` with ``k=1``, :data:`RNNSpace.default_rule_options`); DATA's multi-input rule
(``"data"`` with ``M > 1``) may keep several ``(predecessor, activation)`` pairs per node, which the derived
cell sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch

from datanas_core.errors import ConfigError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.space.base import SPACES, CellSpec, SearchSpace
from datanas_lm.cells import RNN_OPS
from datanas_lm.model import RNNModel, RNNSupernet

__all__ = ["RNNSpace"]


class RNNSpace(SearchSpace):
    """DARTS' recurrent cell space (Liu et al., ICLR 2019) for word-level language models.

    Args:
        num_nodes: intermediate nodes of the cell (8 in DARTS).
        ops: candidate activations in column order (``none`` first by convention).

    Example:
        >>> space = RNNSpace()
        >>> space.cell("recurrent").num_edges
        36
        >>> net = space.build_supernet(ntoken=100, ninp=16, nhid=16)
    """

    name = "lm.darts_rnn"
    default_rule = "topk_edges"
    #: Options of :attr:`default_rule` for this space: one predecessor per node (DARTS).
    default_rule_options: Mapping[str, Any] = MappingProxyType({"k": 1})

    def __init__(self, num_nodes: int = 8, ops: Sequence[str] = RNN_OPS) -> None:
        if not (isinstance(num_nodes, int) and num_nodes >= 1):
            raise ConfigError(f"num_nodes must be a positive integer, got {num_nodes!r}")
        bad = [o for o in ops if o not in RNN_OPS]
        if bad or not ops:
            raise ConfigError(f"unknown recurrent op(s) {bad}; valid ops: {', '.join(RNN_OPS)}")
        self.num_nodes = num_nodes
        self.ops = tuple(ops)
        self._spec = CellSpec.dense(
            "recurrent", num_inputs=1, num_nodes=num_nodes, ops=self.ops, concat=range(1, num_nodes + 1)
        )

    def cells(self) -> Mapping[str, CellSpec]:
        return {"recurrent": self._spec}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "num_nodes": self.num_nodes, "ops": list(self.ops)}

    def build_supernet(  # type: ignore[override]
        self,
        ntoken: int = 10_000,
        ninp: int = 300,
        nhid: int = 300,
        *,
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.0,
        wdrop: float = 0.0,
        batchnorm: bool = True,
        tie_weights: bool = True,
    ) -> RNNSupernet:
        """The search supernet.

        Defaults: DARTS ``rnn/train_search.py`` (300/300, dropouts 0.75/0.25/0.75/0.2/0).

        ``forward(tokens [T, B], hidden [1, B, nhid], arch) -> (logits [T, B, ntoken], hidden)``.
        """
        return RNNSupernet(
            self._spec,
            ntoken,
            ninp,
            nhid,
            dropout=dropout,
            dropouth=dropouth,
            dropoutx=dropoutx,
            dropouti=dropouti,
            dropoute=dropoute,
            wdrop=wdrop,
            batchnorm=batchnorm,
            tie_weights=tie_weights,
        )

    def build_derived(  # type: ignore[override]
        self,
        genotype: Genotype,
        ntoken: int = 10_000,
        ninp: int = 850,
        nhid: int = 850,
        *,
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.1,
        wdrop: float = 0.0,
        tie_weights: bool = True,
        merge: str = "mean",
    ) -> RNNModel:
        """A language model with the genotype's recurrent cell (defaults: DARTS ``rnn/train.py``, 850/850);
        ``merge``: how a node with several kept pairs combines them (:class:`~datanas_lm.cells.DerivedRecurrentCell`).

        Raises:
            IncompatibleGenotypeError: the genotype does not fit this space.
        """
        self.validate(genotype)
        return RNNModel(
            genotype.cells["recurrent"],
            ntoken,
            ninp,
            nhid,
            num_nodes=self.num_nodes,
            dropout=dropout,
            dropouth=dropouth,
            dropoutx=dropoutx,
            dropouti=dropouti,
            dropoute=dropoute,
            wdrop=wdrop,
            tie_weights=tie_weights,
            merge=merge,
        )

    def from_darts(
        self, recurrent: Sequence[tuple[str, int]], concat: Sequence[int] | None = None
    ) -> Genotype:
        """A genotype from DARTS' list form ``[(activation, predecessor), ...]``.

        Entry ``i`` feeds node ``i + 1``.
        """
        if len(recurrent) != self.num_nodes:
            raise ConfigError(
                f"a DARTS recurrent genotype has one entry per node ({self.num_nodes}), got {len(recurrent)}"
            )
        edges = tuple(EdgeChoice(int(src), i + 1, str(op)) for i, (op, src) in enumerate(recurrent))
        cat = tuple(concat) if concat is not None else tuple(range(1, self.num_nodes + 1))
        g = Genotype(self.name, {"recurrent": CellGenotype(edges, cat)})
        self.validate(g)
        return g

    def random_genotype(self, generator: torch.Generator) -> Genotype:
        """A uniformly random DARTS-style cell: per node one predecessor and one non-``none`` activation."""
        acts = [o for o in self.ops if o != "none"]
        edges = []
        for j in range(1, self.num_nodes + 1):
            src = int(torch.randint(0, j, (), generator=generator))
            op = acts[int(torch.randint(0, len(acts), (), generator=generator))]
            edges.append(EdgeChoice(src, j, op))
        g = Genotype(
            self.name, {"recurrent": CellGenotype(tuple(edges), tuple(range(1, self.num_nodes + 1)))}
        )
        self.validate(g)
        return g


if "lm.darts_rnn" not in SPACES:
    SPACES.register("lm.darts_rnn", RNNSpace)
