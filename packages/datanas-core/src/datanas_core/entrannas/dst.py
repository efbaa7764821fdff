"""EnTranNAS-DST: differentiable sparsification with learnable per-node thresholds (methods.md §5(b), §8.3).

For intermediate node ``j`` of a cell with in-edges ``i`` and candidate ops ``k``:

* ``p_ij = softmax(alpha_ij / tau)`` (per edge, over all K ops);
* ``r_ij^k = p_ij^k / max_{i', k' allowed} p_i'j^k'`` (relative to the node's largest allowed weight,
  computed in log space so the maximum is exactly 1);
* ``t_j = min(sigmoid(beta_j), max_threshold)``;
* ``q_ij^k = ReLU(r_ij^k - t_j)`` on allowed ops (``none`` is excluded by default: its weight is 0);
* ``q_hat`` = ``q`` renormalised per edge (over ``k``, the survey's eq. 22) or per node (over all ``(i, k)``).

``q_hat`` is both the engine cells' forward weights and the deterministic view (``probs``) of the estimator;
its support ``{(i, k): q_hat > 0}`` is the derived architecture (rule ``"dst"``), which the transit cells run
and the final genotype keeps. Since ``t_j < 1`` and the node's largest entry maps to ``1 - t_j > 0``, every
node keeps at least one input, and it may keep any number (topology search).

Registered here: estimator ``"dst"`` (:class:`DSTEstimator`), derivation rules ``"dst"`` (:class:`DSTRule`),
``"entrannas"`` / ``"entrannas_nb201"`` (:class:`EnTranNASRule`: DST support for DST probabilities, otherwise
the top-2 / argmax fallback of plain EnTranNAS) and regulariser ``"dst_sparsity"`` (:class:`DSTSparsity`).

What the paper leaves open (methods.md §5(i), §9.3) is an option here, with these defaults:

=================== ================================ ===================================================
unknown             option (default)                 why this default
=================== ================================ ===================================================
normalisation axis  ``normalize="auto"``             per edge (survey eq. 22), except per node when
                                                     ``ops_per_edge=1`` (per-edge weights would all be 1
                                                     and carry no gradient)
temperature         ``tau=1.0`` (schedule allowed)   softmax relaxation as in DARTS
beta initialisation ``threshold_init=0.5``           ``beta = 0``; with DARTS' near-uniform alpha every
                                                     allowed pair survives at first, pairs drop as alpha
                                                     separates
threshold ceiling   ``max_threshold=0.999``          keeps ``1 - t_j > 0`` in float32 (>= 1 input)
threshold penalty   regulariser ``dst_sparsity``     off unless configured (nothing in the sources)
=================== ================================ ===================================================

Dynamics worth knowing: a pair below its threshold gets no gradient through the ReLU, and a node (with
``"node"`` normalisation) or an edge (with ``"edge"``) left with a single pair has weight exactly 1, so the
task loss no longer moves its ``alpha``; pruning is effectively one-way. Sparsity appears only as ``alpha``
separates: from DARTS' near-uniform initialisation a short search keeps (almost) every pair, and transit
cells then sum all of them. For short searches use a lower ``tau`` (e.g. 0.1), a larger architecture
learning rate and/or ``dst_sparsity``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from datanas_core.derive import DERIVATION_RULES, DerivationRule, build_rule
from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import ConfigError
from datanas_core.estimators import ESTIMATORS, Estimator
from datanas_core.genotype import EdgeChoice
from datanas_core.regularizers import REGULARIZERS, Regularizer
from datanas_core.sample import ArchSample, CellSample
from datanas_core.schedules import Schedule
from datanas_core.space.base import CellSpec

__all__ = [
    "DSTEstimator",
    "DSTRule",
    "DSTSparsity",
    "EnTranNASNB201Rule",
    "EnTranNASRule",
    "dst_terms",
    "is_dst_probs",
]

logger = logging.getLogger(__name__)

_NORMALIZE = ("auto", "edge", "node")


def beta_key(cell_type: str) -> str:
    """Key of cell type ``cell_type``'s threshold vector in ``ArchitectureDistribution.extra``."""
    return f"dst_beta_{cell_type}"


def _allowed(spec: CellSpec, exclude: Sequence[str], device: torch.device) -> Tensor:
    allowed = torch.tensor([op not in exclude for op in spec.ops], dtype=torch.bool, device=device)
    if not bool(allowed.any()):
        raise ConfigError(
            f"cell type {spec.cell_type!r}: every op ({', '.join(spec.ops)}) is excluded by {tuple(exclude)}"
        )
    return allowed


def dst_terms(
    logits: Tensor,
    beta: Tensor,
    spec: CellSpec,
    *,
    tau: float = 1.0,
    exclude: Sequence[str] = ("none",),
    ops_per_edge: int | None = None,
    max_threshold: float = 0.999,
) -> tuple[Tensor, Tensor, Tensor]:
    """The unnormalised DST quantities of one cell type (differentiable in ``logits`` and ``beta``).

    Args:
        logits: ``[E, K]`` architecture logits (rows = ``spec.edges``).
        beta: ``[num_nodes]`` threshold logits, one per intermediate node (``spec.nodes`` order).
        spec: the cell spec.
        tau: softmax temperature.
        exclude: ops whose weight is forced to 0 (they neither set the node maximum nor survive).
        ops_per_edge: keep at most this many ops per edge (the largest ``p``) before thresholding;
            ``None``: no limit.
        max_threshold: ceiling of ``t_j`` (< 1 so that the node maximum always survives).

    Returns:
        ``(r, t, q)``: ``r [E, K]`` relative weights (the node maximum is exactly 1, excluded ops 0),
        ``t [E]`` the threshold of each edge's target node and ``q = relu(r - t) [E, K]``.
    """
    allowed = _allowed(spec, exclude, logits.device)
    logp = torch.log_softmax(logits / tau, dim=-1)
    lp = logp.masked_fill(~allowed, float("-inf"))
    if ops_per_edge is not None and ops_per_edge < int(allowed.sum()):
        top = lp.detach().topk(ops_per_edge, dim=-1).indices
        keep = torch.zeros_like(lp, dtype=torch.bool).scatter_(1, top, True)
        lp = lp.masked_fill(~keep, float("-inf"))
    row_max = lp.max(dim=-1).values  # [E]
    node_of_row = _node_of_row(spec, logits.device)
    node_max = row_max.new_full((spec.num_nodes,), float("-inf"))
    node_max = node_max.scatter_reduce(0, node_of_row, row_max, reduce="amax", include_self=True)
    r = torch.exp(lp - node_max[node_of_row].unsqueeze(-1))  # exp(-inf) = 0 for excluded ops
    t_node = torch.sigmoid(beta).clamp(max=max_threshold)
    t = t_node[node_of_row]
    q = F.relu(r - t.unsqueeze(-1))
    return r, t, q


def _node_of_row(spec: CellSpec, device: torch.device) -> Tensor:
    """``[E]`` index (0-based, ``spec.nodes`` order) of the intermediate node each edge ends at."""
    first = spec.num_inputs
    idx = [dst - first for _, dst in spec.edges]
    if any(not 0 <= i < spec.num_nodes for i in idx):
        raise ConfigError(
            f"DST needs every edge of cell type {spec.cell_type!r} to end at an intermediate node"
        )
    return torch.tensor(idx, dtype=torch.long, device=device)


def _normalise(q: Tensor, spec: CellSpec, axis: str) -> Tensor:
    """``q`` over its sum per edge (``axis="edge"``) or per target node (``"node"``); zero sums stay 0."""
    if axis == "edge":
        s = q.sum(-1, keepdim=True)
        return q / torch.where(s > 0, s, torch.ones_like(s))
    node_of_row = _node_of_row(spec, q.device)
    s = q.new_zeros(spec.num_nodes).index_add(0, node_of_row, q.sum(-1))
    s = torch.where(s > 0, s, torch.ones_like(s))
    return q / s[node_of_row].unsqueeze(-1)


@ESTIMATORS.register("dst")
class DSTEstimator(Estimator):
    """EnTranNAS-DST: thresholded, renormalised softmax weights with a learnable threshold per node.

    Forward weights, ``probs`` and the (detached) ``code`` are all ``q_hat`` (see the module docstring), so
    the engine cells' active graph, the transit cells' graph and the derived genotype (rule ``"dst"`` or
    ``"entrannas"``) are the same set ``{(i, k): q_hat > 0}``. Deterministic (no noise). The thresholds are
    extra architecture parameters (``ArchitectureDistribution.extra["dst_beta_<cell type>"]``, one per
    intermediate node) trained by the architecture optimiser with ``alpha``.

    The native executor is ``"sparse"``: pairs with ``q_hat = 0`` are not computed. This changes no value and
    no gradient (``ReLU`` passes no gradient to a pair below its threshold), only the cost; ``"exact"`` gives
    the same numbers.

    Args:
        tau: temperature schedule of ``softmax(alpha / tau)`` (EnTranNAS' tau; unknown, default 1).
        normalize: ``"edge"`` (over the ops of each edge, as in the survey's eq. 22), ``"node"`` (over all
            ``(i, k)`` of a node) or ``"auto"`` (``"node"`` if ``ops_per_edge == 1``, else ``"edge"``).
        threshold_init: initial ``t_j = sigmoid(beta_j)`` in (0, 1) (unknown; default 0.5, i.e. ``beta = 0``).
        max_threshold: ceiling of ``t_j`` in (0, 1) (guarantees >= 1 input per node in float32).
        ops_per_edge: at most this many ops per edge in the engine (the largest ``p`` first, a hard,
            non-differentiable choice); ``None``: any number (default). ``1`` matches NB201's one op per edge
            exactly, but a node whose only surviving pair is alone gets weight 1 and no gradient.
        exclude: ops that never get weight (default ``("none",)``: a ``none`` input is no input).
        init_std: logits start at ``init_std * N(0, 1)`` (DARTS: 1e-3).

    Raises:
        ConfigError: invalid options.
    """

    name: ClassVar[str] = "dst"
    stochastic: ClassVar[bool] = False
    hard: ClassVar[bool] = False
    default_executor: ClassVar[str] = "sparse"
    #: :class:`ArchitectureDistribution` passes its ``extra`` parameters to :meth:`probs` and :meth:`mode`.
    uses_extra: ClassVar[bool] = True

    def __init__(
        self,
        *,
        tau: Schedule | float | str | Mapping[str, Any] = 1.0,
        normalize: str = "auto",
        threshold_init: float = 0.5,
        max_threshold: float = 0.999,
        ops_per_edge: int | None = None,
        exclude: Sequence[str] = ("none",),
        init_std: float = 1e-3,
    ) -> None:
        super().__init__(tau=tau, init_mean=0.0, init_std=init_std)
        if normalize not in _NORMALIZE:
            raise ConfigError(f"unknown normalize {normalize!r}; valid values: {', '.join(_NORMALIZE)}")
        if not (isinstance(threshold_init, (int, float)) and 0.0 < float(threshold_init) < 1.0):
            raise ConfigError(f"threshold_init must be in (0, 1), got {threshold_init!r}")
        if not (isinstance(max_threshold, (int, float)) and 0.0 < float(max_threshold) < 1.0):
            raise ConfigError(f"max_threshold must be in (0, 1), got {max_threshold!r}")
        if float(threshold_init) > float(max_threshold):
            raise ConfigError(
                f"threshold_init ({threshold_init}) must not exceed max_threshold ({max_threshold})"
            )
        if ops_per_edge is not None and (
            isinstance(ops_per_edge, bool) or not isinstance(ops_per_edge, int) or ops_per_edge < 1
        ):
            raise ConfigError(f"ops_per_edge must be None or an int >= 1, got {ops_per_edge!r}")
        if isinstance(exclude, str):
            exclude = (exclude,)
        self.normalize_option = normalize
        self.normalize = ("node" if ops_per_edge == 1 else "edge") if normalize == "auto" else normalize
        self.threshold_init = float(threshold_init)
        self.max_threshold = float(max_threshold)
        self.ops_per_edge = ops_per_edge
        self.exclude = tuple(exclude)
        self._config = {
            "tau": tau.to_dict() if hasattr(tau, "to_dict") else tau,
            "normalize": normalize,
            "threshold_init": self.threshold_init,
            "max_threshold": self.max_threshold,
            "ops_per_edge": ops_per_edge,
            "exclude": list(self.exclude),
            "init_std": init_std,
        }

    # ------------------------------------------------------------------ parameters
    def init_extra(
        self, cells: Mapping[str, CellSpec], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """One threshold logit per intermediate node and cell type, ``logit(threshold_init)``."""
        b0 = math.log(self.threshold_init / (1.0 - self.threshold_init))
        return {beta_key(ct): torch.full((spec.num_nodes,), b0) for ct, spec in cells.items()}

    def beta_of(self, spec: CellSpec, extra: Mapping[str, Tensor] | None) -> Tensor:
        """The threshold logits of ``spec``'s cell type.

        Raises:
            ConfigError: ``extra`` lacks them (the distribution was not built with this estimator).
        """
        key = beta_key(spec.cell_type)
        if extra is None or key not in extra:
            have = sorted(extra) if extra is not None else []
            raise ConfigError(
                f"the dst estimator needs its thresholds {key!r} (ArchitectureDistribution.extra, created by "
                f"init_extra); got extra parameters {have}"
            )
        beta = extra[key]
        if tuple(beta.shape) != (spec.num_nodes,):
            raise ConfigError(
                f"{key} must have shape [{spec.num_nodes}] (one per intermediate node), "
                f"got {tuple(beta.shape)}"
            )
        return beta

    # ------------------------------------------------------------------ views
    def weights(
        self, logits: Tensor, spec: CellSpec, extra: Mapping[str, Tensor] | None, tau: float | None = None
    ) -> Tensor:
        """``q_hat [E, K]``: the normalised sparse weights (differentiable in ``alpha`` and ``beta``)."""
        self.check_logits(logits, spec)
        self.check_finite(logits, spec, what="logits")
        beta = self.beta_of(spec, extra).to(logits.device)
        _, _, q = dst_terms(
            logits,
            beta,
            spec,
            tau=self.temperature if tau is None else tau,
            exclude=self.exclude,
            ops_per_edge=self.ops_per_edge,
            max_threshold=self.max_threshold,
        )
        w = _normalise(q, spec, self.normalize)
        self.check_finite(w, spec, what="DST weights")
        return w

    def probs(
        self, logits: Tensor, spec: CellSpec | None = None, extra: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """The deterministic view: ``q_hat`` itself (rows of dead edges are 0; excluded ops are 0).

        Raises:
            ConfigError: no ``spec`` or no thresholds (``ArchitectureDistribution`` passes them).
        """
        if spec is None:
            raise ConfigError("the dst estimator needs the cell spec to group edges by target node")
        return self.weights(logits, spec, extra)

    def sample(
        self,
        logits: Tensor,
        spec: CellSpec,
        *,
        generator: torch.Generator | None = None,
        epoch_state: Mapping[str, Any] | None = None,
        extra: Mapping[str, Tensor] | None = None,
    ) -> CellSample:
        tau, _ = self._resolve_state(epoch_state)
        w = self.weights(logits, spec, extra, tau)
        return CellSample(w, w.detach() != 0, w, w.detach(), False, tau)

    def mode(self, logits: Tensor, spec: CellSpec, extra: Mapping[str, Tensor] | None = None) -> CellSample:
        return self.sample(logits, spec, extra=extra)


def is_dst_probs(p: Sequence[Sequence[float]], spec: CellSpec, exclude: Sequence[str]) -> bool | None:
    """Whether ``p`` looks like DST output: every excluded column exactly 0.

    Returns ``None`` when the spec has no excluded op (undecidable).
    """
    cols = [k for k, op in enumerate(spec.ops) if op in exclude]
    if not cols:
        return None
    return all(row[k] == 0.0 for row in p for k in cols)


@DERIVATION_RULES.register("dst")
class DSTRule(DerivationRule):
    """EnTranNAS-DST's derivation: keep every ``(input, op)`` pair with ``q_hat > 0`` (variable in-degree,
    several ops per edge allowed), i.e. exactly the engine cells' active graph.

    Apply it to the probabilities of the ``"dst"`` estimator (``distribution.probs()`` is ``q_hat``). A node
    with fewer than ``min_inputs`` kept pairs (impossible with DST probabilities) gets its best pairs.

    ``ops_per_edge=n`` projects the support onto spaces that allow at most ``n`` ops per edge (NB201: 1):
    each edge keeps its ``n`` largest surviving ops. The kept edges (the topology) are still exactly the
    engine's; the ops equal the engine's when the estimator already limits them (its ``ops_per_edge``).

    Args:
        min_inputs: minimum number of kept pairs per node.
        strict: raise if ``p`` is not DST output (an excluded op such as ``none`` has non-zero probability:
            the softmax of another estimator keeps every pair); by default such input is only logged as a
            warning and every pair with ``p > 0`` is kept.
        ops_per_edge: at most this many ops per edge (largest ``q_hat`` first); ``None``: no limit.
        exclude: ops never kept.

    Raises:
        ConfigError: (``strict``) the probabilities do not come from the ``dst`` estimator.
    """

    name: ClassVar[str] = "dst"

    def __init__(
        self,
        min_inputs: int = 1,
        strict: bool = False,
        ops_per_edge: int | None = None,
        exclude: Sequence[str] = ("none",),
    ) -> None:
        super().__init__(exclude)
        if isinstance(min_inputs, bool) or not isinstance(min_inputs, int) or min_inputs < 0:
            raise ConfigError(f"min_inputs must be an int >= 0, got {min_inputs!r}")
        if ops_per_edge is not None and (
            isinstance(ops_per_edge, bool) or not isinstance(ops_per_edge, int) or ops_per_edge < 1
        ):
            raise ConfigError(f"ops_per_edge must be None or an int >= 1, got {ops_per_edge!r}")
        self.min_inputs = min_inputs
        self.strict = bool(strict)
        self.ops_per_edge = ops_per_edge

    def derive_cell(self, p: list[list[float]], spec: CellSpec) -> list[EdgeChoice]:
        if is_dst_probs(p, spec, self.exclude) is False:
            msg = (
                f"rule 'dst' on cell type {spec.cell_type!r}: the excluded op(s) {list(self.exclude)} have "
                "non-zero probability, so these are not DST weights and every pair would be kept; use the "
                "'dst' estimator, or the rule 'entrannas' (top-2 / argmax for other estimators)"
            )
            if self.strict:
                raise ConfigError(msg)
            logger.warning("%s", msg)
        ops = self.allowed_ops(spec)
        out = []
        for node in spec.nodes:
            pairs = [(r, k) for r in spec.in_edges(node) for k in ops]
            kept = [(r, k) for r, k in pairs if p[r][k] > 0.0]
            if self.ops_per_edge is not None:
                kept = [
                    (r, k)
                    for r in spec.in_edges(node)
                    for k in sorted((k for rr, k in kept if rr == r), key=lambda k: -p[r][k])[
                        : self.ops_per_edge
                    ]
                ]
            if len(kept) < self.min_inputs:
                for rk in sorted(pairs, key=lambda rk: -p[rk[0]][rk[1]]):
                    if len(kept) >= self.min_inputs:
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
            "min_inputs": self.min_inputs,
            "strict": self.strict,
            "ops_per_edge": self.ops_per_edge,
        }


@DERIVATION_RULES.register("entrannas")
class EnTranNASRule(DerivationRule):
    """The rule that drives EnTranNAS transit cells and derives the final genotype.

    Per cell type: DST probabilities (every excluded op, e.g. ``none``, exactly 0; see :class:`DSTRule`) keep
    their support ``{q_hat > 0}``; any other probabilities use ``fallback`` (plain EnTranNAS: DARTS' top-2
    rule, methods.md §5(e)). The same rule applied to the same probabilities gives the same graph during the
    search and at the end, so the searched and the derived architectures coincide.

    Args:
        fallback: rule name or ``{"type": name, **options}`` for non-DST probabilities.
        ops_per_edge: projection of the DST support (see :class:`DSTRule`); ``None``: no limit.
        exclude: ops never kept (also the DST detector).
    """

    name: ClassVar[str] = "entrannas"
    default_fallback: ClassVar[str] = "topk_edges"
    default_ops_per_edge: ClassVar[int | None] = None

    def __init__(
        self,
        fallback: str | Mapping[str, Any] | None = None,
        ops_per_edge: int | None = None,
        exclude: Sequence[str] = ("none",),
    ) -> None:
        super().__init__(exclude)
        self.fallback_spec: str | Mapping[str, Any] = fallback or self.default_fallback
        self.fallback = build_rule(self.fallback_spec)
        n = self.default_ops_per_edge if ops_per_edge is None else ops_per_edge
        self.dst = DSTRule(min_inputs=1, strict=False, ops_per_edge=n, exclude=self.exclude)

    def derive_cell(self, p: list[list[float]], spec: CellSpec) -> list[EdgeChoice]:
        if is_dst_probs(p, spec, self.exclude):
            return self.dst.derive_cell(p, spec)
        return self.fallback.derive_cell(p, spec)

    def config(self) -> dict[str, Any]:
        fb = self.fallback_spec if isinstance(self.fallback_spec, str) else dict(self.fallback_spec)
        return {**super().config(), "fallback": fb, "ops_per_edge": self.dst.ops_per_edge}


@DERIVATION_RULES.register("entrannas_nb201")
class EnTranNASNB201Rule(EnTranNASRule):
    """:class:`EnTranNASRule` for NB201's one op per edge: the DST support keeps each surviving edge's
    largest op (``ops_per_edge=1``); other probabilities use ``argmax_edge``."""

    name: ClassVar[str] = "entrannas_nb201"
    default_fallback: ClassVar[str] = "argmax_edge"
    default_ops_per_edge: ClassVar[int | None] = 1


@REGULARIZERS.register("dst_sparsity")
class DSTSparsity(Regularizer):
    """A penalty that drives EnTranNAS-DST's thresholds (the paper's, if any, could not be read: a guess).

    Forms, summed over cell types:

    * ``"mass"`` (default): mean over intermediate nodes of ``sum_{i,k} ReLU(r_ij^k - t_j)``, the
      unnormalised surviving mass; lowering it raises ``t_j`` and sharpens ``p`` (fewer inputs per node).
    * ``"threshold"``: mean over nodes of ``1 - t_j`` (pushes only the thresholds up).

    Args:
        weight: multiplier applied by the search loop.
        form: ``"mass"`` or ``"threshold"``.

    Raises:
        ConfigError: unknown form, or (when called) a distribution whose estimator is not ``"dst"``.
    """

    name: ClassVar[str] = "dst_sparsity"

    def __init__(self, weight: float = 1e-2, form: str = "mass") -> None:
        super().__init__(weight)
        if form not in ("mass", "threshold"):
            raise ConfigError(f"unknown dst_sparsity form {form!r}; valid values: mass, threshold")
        self.form = form

    def __call__(self, distribution: ArchitectureDistribution, sample: ArchSample | None = None) -> Tensor:
        est = distribution.estimator
        if not isinstance(est, DSTEstimator):
            raise ConfigError(f"dst_sparsity needs the 'dst' estimator; this distribution uses {est.name!r}")
        terms = []
        for ct, spec in distribution.cells.items():
            beta = est.beta_of(spec, distribution.extra)
            if self.form == "threshold":
                t = torch.sigmoid(beta).clamp(max=est.max_threshold)
                terms.append((1.0 - t).mean())
                continue
            _, _, q = dst_terms(
                distribution.logits[ct],
                beta,
                spec,
                tau=est.temperature,
                exclude=est.exclude,
                ops_per_edge=est.ops_per_edge,
                max_threshold=est.max_threshold,
            )
            terms.append(q.sum() / max(spec.num_nodes, 1))
        return torch.stack(terms).sum()

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "weight": self.weight, "form": self.form}
