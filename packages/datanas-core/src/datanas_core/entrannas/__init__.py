"""EnTranNAS (Yang et al., CVPR 2021): engine and transit cells, feature sharing and DST (methods.md §5).

Importing this package registers:

* spaces ``"entrannas_darts"`` and ``"entrannas_nb201"`` (:mod:`datanas_core.entrannas.space`): the DARTS /
  NB201 spaces with EnTranNAS supernets (engine cells learn the architecture, transit cells run the
  architecture derived from it at every step, candidate ops shared per source node);
* estimator ``"dst"`` (:class:`DSTEstimator`): differentiable sparsification with learnable per-node
  thresholds, whose support is the derived architecture (variable in-degree);
* derivation rules ``"dst"``, ``"entrannas"`` and ``"entrannas_nb201"`` (transit and final derivation);
* regulariser ``"dst_sparsity"`` (:class:`DSTSparsity`, a guess: the paper's threshold penalty is unknown).

Through the core's options (any domain that selects spaces and estimators by registry name):

* EnTranNAS-DST: space ``entrannas_darts`` (or ``entrannas_nb201``), estimator ``dst``, executor ``sparse``
  (same numbers as ``exact``, cheaper), regularisers ``()`` or ``({"type": "dst_sparsity", "weight": w},)``,
  rule unset (the space's ``entrannas`` rule = what the transit cells run);
* plain EnTranNAS (top-2): the same spaces with estimator ``softmax`` (optionally ``tau``), no regulariser.

Example:
    >>> from datanas_core import SearchConfig, Searcher, get_space
    >>> cfg = SearchConfig(epochs=1, estimator="dst", estimator_options={}, executor="sparse",
    ...                    regularizers=({"type": "dst_sparsity", "weight": 0.01},))
    >>> searcher = Searcher(get_space("entrannas_darts"), task, cfg,
    ...                     supernet_kwargs={"C": 8, "layers": 5})  # doctest: +SKIP
    >>> searcher.fit(train_loader, val_loader).genotype.space  # doctest: +SKIP
    'darts_ext'
"""

from __future__ import annotations

from datanas_core.entrannas.cells import (
    CellPlan,
    DartsEnTranNASCell,
    NB201EnTranNASCell,
    SharedOpCell,
    TransitPlan,
    resolve_roles,
)
from datanas_core.entrannas.dst import (
    DSTEstimator,
    DSTRule,
    DSTSparsity,
    EnTranNASNB201Rule,
    EnTranNASRule,
    beta_key,
    dst_terms,
    is_dst_probs,
)
from datanas_core.entrannas.space import (
    EnTranNASDartsSpace,
    EnTranNASDartsSuperNet,
    EnTranNASNB201Space,
    EnTranNASNB201SuperNet,
)

__all__ = [
    "CellPlan",
    "DSTEstimator",
    "DSTRule",
    "DSTSparsity",
    "DartsEnTranNASCell",
    "EnTranNASDartsSpace",
    "EnTranNASDartsSuperNet",
    "EnTranNASNB201Rule",
    "EnTranNASNB201Space",
    "EnTranNASNB201SuperNet",
    "EnTranNASRule",
    "NB201EnTranNASCell",
    "SharedOpCell",
    "TransitPlan",
    "beta_key",
    "dst_terms",
    "is_dst_probs",
    "resolve_roles",
]
