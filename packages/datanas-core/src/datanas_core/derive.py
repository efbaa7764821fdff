"""Derivation rules: from learned architecture probabilities to a discrete :class:`Genotype`.

A :class:`DerivationRule` maps ``{cell_type: [E, K] probabilities}`` and the cell specs to one
:class:`CellGenotype` per cell type. Rules are deterministic and pure: ties are broken by edge row order
(lower row first), then op column order (lower column first), which is what the reference implementations'
stable sorts and ``argmax`` do. Ops named in ``exclude`` (default ``("none",)``) never appear in a genotype.
:func:`derive` applies a rule to a distribution (or a probability mapping) and a space.

Registered in :data:`DERIVATION_RULES`:

================== ==========================================================================================
name               rule
================== ==========================================================================================
topk_edges         :class:`TopKEdges` (DARTS, DrNAS): per node, top-k distinct in-edges by max non-none prob,
                   argmax non-none op on each; ``k=1`` is the RNN "one predecessor" rule
topk_pairs         :class:`TopKPairs` (GDAS): per node, top-k (input, op != none) pairs over all in-edges
argmax_edge        :class:`ArgmaxPerEdge` (NB201): argmax per edge, edge omitted when ``none`` wins
all_edges_argmax   :class:`AllEdgesArgmax` (SNAS "edge_all"): every edge keeps its argmax op (none: omitted)
data               :class:`EGSMultinomial` (DATA): per node, the most probable exact top-n set under M draws
threshold          :class:`Threshold`: (input, op) pairs with probability >= t, at least ``min_per_node``
================== ==========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from datanas_core.errors import ConfigError, NumericalError
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.registry import Registry
from datanas_core.space.base import CellSpec, SearchSpace

if TYPE_CHECKING:
    from datanas_core.distribution import ArchitectureDistribution

__all__ = [
    "DERIVATION_RULES",
    "AllEdgesArgmax",
    "ArgmaxPerEdge",
    "DerivationRule",
    "EGSMultinomial",
    "Threshold",
    "TopKEdges",
    "TopKPairs",
    "build_rule",
    "derive",
    "exact_cover_probability",
]

DERIVATION_RULES: Registry[type] = Registry("derivation rule")

_Probs = list[list[float]]


class DerivationRule:
    """Base class: ``rule(probs, cells) -> {cell_type: CellGenotype}``.

    Subclasses implement :meth:`derive_cell` on a plain ``list[list[float]]`` (float64) probability matrix.

    Args:
        exclude: op names never kept (and, where the rule says so, ignored when ranking).
    """

    name: ClassVar[str] = ""

    def __init__(self, exclude: Sequence[str] = ("none",)) -> None:
        if isinstance(exclude, str):
            exclude = (exclude,)
        self.exclude = tuple(exclude)

    def __call__(self, probs: Mapping[str, Tensor], cells: Mapping[str, CellSpec]) -> dict[str, CellGenotype]:
        out: dict[str, CellGenotype] = {}
        for ct, spec in cells.items():
            if ct not in probs:
                raise ConfigError(f"no probabilities for cell type {ct!r}; got {sorted(probs)}")
            p = torch.as_tensor(probs[ct]).detach().to("cpu", torch.float64)
            if tuple(p.shape) != (spec.num_edges, spec.num_ops):
                raise ConfigError(
                    f"probabilities for {ct!r} must have shape [{spec.num_edges}, {spec.num_ops}], "
                    f"got {tuple(p.shape)}"
                )
            if not bool(torch.isfinite(p).all()):
                rows = torch.nonzero(~torch.isfinite(p).all(-1)).flatten().tolist()
                raise NumericalError(
                    f"cannot derive cell type {ct!r}: non-finite probabilities on edge(s) "
                    f"{', '.join(spec.edge_key(r) for r in rows)}"
                )
            edges = self.derive_cell(p.tolist(), spec)
            out[ct] = CellGenotype(tuple(edges), spec.concat)
        return out

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        raise NotImplementedError

    def allowed_ops(self, spec: CellSpec) -> list[int]:
        """Column indices of the ops that may be kept."""
        allowed = [k for k, op in enumerate(spec.ops) if op not in self.exclude]
        if not allowed:
            raise ConfigError(
                f"cell type {spec.cell_type!r}: every op ({', '.join(spec.ops)}) "
                f"is excluded by {self.exclude}"
            )
        return allowed

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "exclude": list(self.exclude)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({opts})"


def _best_op(row: list[float], ops: list[int]) -> int:
    """First maximum of ``row`` over ``ops`` (in ``ops`` order)."""
    best = ops[0]
    for k in ops[1:]:
        if row[k] > row[best]:
            best = k
    return best


def _check_k(k: int, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{what} must be an int >= 1, got {k!r}")
    return k


@DERIVATION_RULES.register("topk_edges")
class TopKEdges(DerivationRule):
    """DARTS: per node keep the ``k`` distinct in-edges with the largest max non-excluded probability, each
    with its argmax non-excluded op (``k=1``: the RNN one-predecessor rule). Nodes with fewer than ``k``
    in-edges keep all of them.

    Args:
        k: edges per node.
        exclude: ops ignored for ranking and choice.
    """

    name: ClassVar[str] = "topk_edges"

    def __init__(self, k: int = 2, exclude: Sequence[str] = ("none",)) -> None:
        super().__init__(exclude)
        self.k = _check_k(k)

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        ops = self.allowed_ops(spec)
        out = []
        for node in spec.nodes:
            rows = spec.in_edges(node)
            ranked = sorted(rows, key=lambda r: -max(p[r][k] for k in ops))  # stable: lower row first on ties
            for r in ranked[: self.k]:
                src, dst = spec.edges[r]
                out.append(EdgeChoice(src, dst, spec.ops[_best_op(p[r], ops)]))
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}


@DERIVATION_RULES.register("topk_pairs")
class TopKPairs(DerivationRule):
    """GDAS: per node keep the ``k`` (input, op) pairs with the largest probability over all in-edges
    (non-excluded ops only; two ops on the same edge are allowed).

    Args:
        k: pairs per node.
        exclude: ops never kept.
    """

    name: ClassVar[str] = "topk_pairs"

    def __init__(self, k: int = 2, exclude: Sequence[str] = ("none",)) -> None:
        super().__init__(exclude)
        self.k = _check_k(k)

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        ops = self.allowed_ops(spec)
        out = []
        for node in spec.nodes:
            pairs = [(r, k) for r in spec.in_edges(node) for k in ops]
            pairs.sort(key=lambda rk: -p[rk[0]][rk[1]])
            for r, k in pairs[: self.k]:
                src, dst = spec.edges[r]
                out.append(EdgeChoice(src, dst, spec.ops[k]))
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}


@DERIVATION_RULES.register("argmax_edge")
class ArgmaxPerEdge(DerivationRule):
    """NB201: one op per edge, the argmax; an edge whose argmax is an excluded op (``none``) is omitted.

    Args:
        include_none: let excluded ops compete in the argmax (NB201/AutoDL behaviour, default). With
            ``False`` the argmax runs over the non-excluded ops only and every edge is kept.
        exclude: ops never kept.
    """

    name: ClassVar[str] = "argmax_edge"

    def __init__(self, include_none: bool = True, exclude: Sequence[str] = ("none",)) -> None:
        super().__init__(exclude)
        self.include_none = bool(include_none)

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        ops = list(range(spec.num_ops)) if self.include_none else self.allowed_ops(spec)
        out = []
        for r, (src, dst) in enumerate(spec.edges):
            k = _best_op(p[r], ops)
            if spec.ops[k] not in self.exclude:
                out.append(EdgeChoice(src, dst, spec.ops[k]))
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "include_none": self.include_none}


@DERIVATION_RULES.register("all_edges_argmax")
class AllEdgesArgmax(ArgmaxPerEdge):
    """SNAS "edge_all": every edge keeps its argmax op over all ops, ``none`` included.

    A ``none`` argmax is represented by omitting the edge (genotypes hold no ``none``), so this equals
    ``ArgmaxPerEdge(include_none=True)``; it is registered under its own name for clarity.
    """

    name: ClassVar[str] = "all_edges_argmax"

    def __init__(self, exclude: Sequence[str] = ("none",)) -> None:
        super().__init__(include_none=True, exclude=exclude)

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "exclude": list(self.exclude)}


def exact_cover_probability(qs: Sequence[float], samples: int) -> float:
    """Probability that ``samples`` i.i.d. draws from a categorical hit exactly the categories with
    probabilities ``qs``, each at least once.

    ``P = sum_{c_1..c_n >= 1, sum c = M} M! / prod(c_i!) prod q_i^{c_i}
    = sum_{S subset [n]} (-1)^{n-|S|} (sum_{i in S} q_i)^M`` (inclusion-exclusion). Computed as
    ``M! [x^M] prod_i (exp(q_i x) - 1)`` with truncated power series: ``O(n M^2)`` and free of the
    cancellations of the alternating sum.

    Raises:
        ConfigError: ``samples < 1``.
    """
    m = _check_k(samples, "the ensemble size M")
    n = len(qs)
    if n == 0 or n > m:
        return 0.0
    poly = [1.0] + [0.0] * m
    for q in qs:
        q = float(q)
        term = [0.0] + [q**j / math.factorial(j) for j in range(1, m + 1)]
        new = [0.0] * (m + 1)
        for i, a in enumerate(poly):
            if a == 0.0:
                continue
            for j in range(1, m + 1 - i):
                new[i + j] += a * term[j]
        poly = new
    return math.factorial(m) * poly[m]


@DERIVATION_RULES.register("data")
class EGSMultinomial(DerivationRule):
    """DATA's derivation ("validating", methods.md 4(e)): per node, the most probable exact top-n set.

    For each intermediate node: clip the per-edge probability rows of its in-edges at 0 and divide by their
    total (a joint distribution over (edge, op)); merge all excluded ops (``none``) into one category; sort
    the categories by probability (stable: the merged ``none`` first, then (edge, op) in row/column order);
    for ``n = 1..M`` compute ``P_n`` = probability that M draws hit exactly the top-n set
    (:func:`exact_cover_probability`); take the first maximising ``n*`` (relative differences below 1e-12
    count as ties), keep the top-``n*`` categories and
    drop ``none``. A node keeps between 0 and M inputs, several ops per edge allowed.

    Deviation: DATA's code may leave a node with no input (when ``none`` alone is the most probable set);
    such a genotype fails :meth:`SearchSpace.validate`. With ``min_inputs=1`` (default) the best
    non-``none`` pairs are added until the node has ``min_inputs`` inputs; ``min_inputs=0`` is the code's
    behaviour. If a node's probabilities are all <= 0 (relu variant), the categories are taken as uniform.

    Args:
        samples: the ensemble size M used in the search (``M`` is an alias); ``None``: taken by
            :func:`derive` from the distribution's current M.
        M: alias of ``samples``.
        min_inputs: minimum number of kept inputs per node (0 = DATA's code).
        exclude: ops merged into the single ``none`` category and never kept.
    """

    name: ClassVar[str] = "data"

    def __init__(
        self,
        samples: int | None = None,
        M: int | None = None,
        min_inputs: int = 1,
        exclude: Sequence[str] = ("none",),
    ) -> None:
        super().__init__(exclude)
        if samples is not None and M is not None and samples != M:
            raise ConfigError(f"give M once: samples={samples!r} and its alias M={M!r} differ")
        m = samples if samples is not None else M
        self.samples = None if m is None else _check_k(m, "the ensemble size M")
        if isinstance(min_inputs, bool) or not isinstance(min_inputs, int) or min_inputs < 0:
            raise ConfigError(f"min_inputs must be an int >= 0, got {min_inputs!r}")
        self.min_inputs = min_inputs

    def node_choice(
        self, p: _Probs, spec: CellSpec, node: int
    ) -> tuple[list[tuple[int, int]], int, list[float]]:
        """``([(row, op), ...] kept, n*, [P_1..P_M])`` for one node (for tests and reports)."""
        if self.samples is None:
            raise ConfigError("the 'data' rule needs M: pass samples=M (or derive from an EGS distribution)")
        m = self.samples
        rows = spec.in_edges(node)
        ops = self.allowed_ops(spec)
        excluded = [k for k in range(spec.num_ops) if k not in ops]
        cats: list[tuple[tuple[int, int] | None, float]] = []
        if excluded:
            cats.append((None, sum(max(p[r][k], 0.0) for r in rows for k in excluded)))
        cats += [((r, k), max(p[r][k], 0.0)) for r in rows for k in ops]
        total = sum(q for _, q in cats)
        if total > 0:
            cats = [(c, q / total) for c, q in cats]
        else:
            cats = [(c, 1.0 / len(cats)) for c, _ in cats]
        cats.sort(key=lambda cq: -cq[1])
        qs = [q for _, q in cats]
        probs_n = [exact_cover_probability(qs[:n], m) for n in range(1, m + 1)]
        n_star = 1
        for n in range(2, m + 1):  # first maximum wins; values within 1e-12 (relative) count as ties
            if probs_n[n - 1] > probs_n[n_star - 1] * (1.0 + 1e-12):
                n_star = n
        kept = [c for c, _ in cats[:n_star] if c is not None]
        if len(kept) < self.min_inputs:
            for c, _ in cats[n_star:]:
                if len(kept) >= self.min_inputs:
                    break
                if c is not None:
                    kept.append(c)
        return kept, n_star, probs_n

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        out = []
        for node in spec.nodes:
            kept, _, _ = self.node_choice(p, spec, node)
            for r, k in kept:
                src, dst = spec.edges[r]
                out.append(EdgeChoice(src, dst, spec.ops[k]))
        return out

    def with_samples(self, samples: int) -> EGSMultinomial:
        """A copy with ``samples`` set."""
        return EGSMultinomial(samples=samples, min_inputs=self.min_inputs, exclude=self.exclude)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "samples": self.samples, "min_inputs": self.min_inputs}


@DERIVATION_RULES.register("threshold")
class Threshold(DerivationRule):
    """Keep every (input, op) pair whose probability is >= ``threshold``, at least ``min_per_node`` per node.

    With ``relative=True`` the probability is first divided by the node's largest non-excluded probability
    (EnTranNAS-style relative threshold). Nodes below ``min_per_node`` get their best pairs (in
    :class:`TopKPairs` order). There is no published default threshold; 0.3 is arbitrary.

    Args:
        threshold: cut-off in [0, 1].
        min_per_node: minimum kept pairs per node.
        relative: compare ``p / max_node p`` instead of ``p``.
        exclude: ops never kept.
    """

    name: ClassVar[str] = "threshold"

    def __init__(
        self,
        threshold: float = 0.3,
        min_per_node: int = 1,
        relative: bool = False,
        exclude: Sequence[str] = ("none",),
    ) -> None:
        super().__init__(exclude)
        if not (isinstance(threshold, (int, float)) and 0.0 <= float(threshold) <= 1.0):
            raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}")
        if isinstance(min_per_node, bool) or not isinstance(min_per_node, int) or min_per_node < 0:
            raise ConfigError(f"min_per_node must be an int >= 0, got {min_per_node!r}")
        self.threshold = float(threshold)
        self.min_per_node = min_per_node
        self.relative = bool(relative)

    def derive_cell(self, p: _Probs, spec: CellSpec) -> list[EdgeChoice]:
        ops = self.allowed_ops(spec)
        out = []
        for node in spec.nodes:
            pairs = [(r, k) for r in spec.in_edges(node) for k in ops]
            if not pairs:
                continue
            pairs.sort(key=lambda rk: -p[rk[0]][rk[1]])
            scale = p[pairs[0][0]][pairs[0][1]] if self.relative else 1.0
            kept = [(r, k) for r, k in pairs if (p[r][k] / scale if scale > 0 else 0.0) >= self.threshold]
            for rk in pairs:
                if len(kept) >= self.min_per_node:
                    break
                if rk not in kept:
                    kept.append(rk)
            for r, k in kept:
                src, dst = spec.edges[r]
                out.append(EdgeChoice(src, dst, spec.ops[k]))
        return out

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "threshold": self.threshold,
            "min_per_node": self.min_per_node,
            "relative": self.relative,
        }


def build_rule(spec: DerivationRule | str | Mapping[str, Any]) -> DerivationRule:
    """A :class:`DerivationRule` from an instance, a name or ``{"type": name, **options}``.

    Raises:
        UnknownNameError: unknown rule name (lists the registered ones).
    """
    if isinstance(spec, DerivationRule):
        return spec
    rule = DERIVATION_RULES.build(spec)
    if not isinstance(rule, DerivationRule):
        raise ConfigError(f"rule spec {spec!r} built {type(rule).__name__}, not a DerivationRule")
    return rule


def derive(
    distribution_or_probs: ArchitectureDistribution | Mapping[str, Tensor],
    space: SearchSpace | Mapping[str, CellSpec] | None = None,
    rule: DerivationRule | str | Mapping[str, Any] | None = None,
    *,
    space_name: str | None = None,
) -> Genotype:
    """Derive a genotype. Pure and deterministic (no gradients, no state changes).

    Args:
        distribution_or_probs: an :class:`ArchitectureDistribution` (its :meth:`probs` are used) or a mapping
            ``cell_type -> [E, K]`` probabilities.
        space: the search space (or a mapping of cell specs); optional when a distribution is given.
        rule: a rule, its registry name or ``{"type": name, **options}``; default: the space's
            ``default_rule`` with its ``default_rule_options`` (if any), else ``"topk_edges"``. The ``"data"`` rule without ``samples`` takes M from the
            distribution's estimator.
        space_name: name written in the genotype (default: the space's name, else ``"custom"``).

    Raises:
        UnknownNameError: unknown rule name. ConfigError: missing cells or M. NumericalError: NaN/inf.
    """
    from datanas_core.distribution import ArchitectureDistribution

    dist = distribution_or_probs if isinstance(distribution_or_probs, ArchitectureDistribution) else None
    if dist is not None:
        with torch.no_grad():
            probs = {k: v.detach() for k, v in dist.probs().items()}
    elif isinstance(distribution_or_probs, Mapping):
        probs = dict(distribution_or_probs)
    else:
        raise ConfigError(
            f"derive needs an ArchitectureDistribution or a mapping of probabilities, got "
            f"{type(distribution_or_probs).__name__}"
        )
    if isinstance(space, SearchSpace):
        cells: Mapping[str, CellSpec] = space.cells()
        name = space.name
        default_rule = space.default_rule
    elif space is not None:
        cells, name, default_rule = space, "", "topk_edges"
    elif dist is not None:
        cells = dist.cells
        name = dist.space_name
        default_rule = dist.space.default_rule if dist.space is not None else "topk_edges"
    else:
        raise ConfigError("derive from a probability mapping needs the space (or its cell specs)")
    if rule is None:
        # a space may give options for its default rule (the RNN space: one predecessor, k=1)
        owner = space if isinstance(space, SearchSpace) else (dist.space if dist is not None else None)
        options = dict(getattr(owner, "default_rule_options", None) or {})
        rule = {"type": default_rule, **options} if options else default_rule
    r = build_rule(rule)
    if isinstance(r, EGSMultinomial) and r.samples is None:
        if dist is None:
            raise ConfigError(
                "the 'data' rule needs M: pass {'type': 'data', 'samples': M} or a distribution"
            )
        r = r.with_samples(dist.samples)
    genes = r(probs, cells)
    return Genotype(space_name or name or "custom", genes, meta={"rule": r.config()})
