"""datanas-core: the engine of differentiable architecture search.

Search spaces as data, architecture distributions and estimators (EGS, softmax, Gumbel, Dirichlet, ...),
regularisers (ADC, ...), derivation rules, genotypes and the bilevel search loop. Depends on torch only;
architecture parameters never live inside a network.

Example:
    >>> import datanas_core as dc
    >>> space = dc.get_space("nb201")
    >>> dist = dc.ArchitectureDistribution(space, estimator={"type": "egs", "samples": 2})
    >>> sample = dist.sample(generator=__import__("torch").Generator().manual_seed(0))
    >>> sorted(sample)
    ['cell']
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType as _ModuleType
from typing import Any

# Method subpackages register their spaces, estimators, rules and regularisers on import.
from datanas_core import drnas as drnas  # noqa: F401  registers drnas_darts, drnas_nb201
from datanas_core import e2nas as e2nas  # noqa: F401  registers the e2nas estimator and novelty
from datanas_core import entrannas as entrannas  # noqa: F401  registers entrannas_*, dst
from datanas_core.derive import (
    DERIVATION_RULES,
    AllEdgesArgmax,
    ArgmaxPerEdge,
    DerivationRule,
    EGSMultinomial,
    Threshold,
    TopKEdges,
    TopKPairs,
    derive,
)
from datanas_core.distribution import ArchitectureDistribution
from datanas_core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DataNASError,
    GenotypeError,
    IncompatibleGenotypeError,
    MissingDependencyError,
    NumericalError,
    SearchSpaceError,
    UnknownNameError,
)
from datanas_core.estimators import (
    ESTIMATORS,
    ConcreteEstimator,
    DirichletEstimator,
    EGSEstimator,
    Estimator,
    GDASEstimator,
    GumbelFamily,
    SoftmaxEstimator,
)
from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype
from datanas_core.ops import OPS, register_op
from datanas_core.plugins import get_space
from datanas_core.published import load_published, published_names
from datanas_core.registry import Registry
from datanas_core.regularizers import (
    REGULARIZERS,
    DirichletKL,
    DistributionConstraint,
    EntropyPenalty,
    ExpectedCost,
    L2Penalty,
    Regularizer,
)
from datanas_core.sample import ArchSample, CellSample
from datanas_core.schedules import SCHEDULES, Constant, Exponential, Linear
from datanas_core.search import (
    PRESETS,
    SearchConfig,
    Searcher,
    SearchResult,
    SearchTask,
    arch_from_genotype,
    build_searcher,
)
from datanas_core.space.base import SPACES, CellSpec, SearchSpace
from datanas_core.space.darts import DartsExtSpace, DartsSpace
from datanas_core.space.mixed import MixedOp
from datanas_core.space.model import ModelSpace as _ModelSpace  # noqa: F401  registers the 'choice' rule
from datanas_core.space.nb201 import NB201Space

#: DATA-TPAMI's name for :class:`DistributionConstraint`.
ADC = DistributionConstraint


class _CallableSearchModule(_ModuleType):
    """``datanas_core.search`` is the search subpackage and, called, searches your own model:
    ``datanas_core.search(model, train_data, val_data, loss=..., preset="data", epochs=...)`` runs
    :func:`datanas_core.api.search`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from datanas_core.api import search as _search

        return _search(*args, **kwargs)


_sys.modules["datanas_core.search"].__class__ = _CallableSearchModule

#: Names loaded on first access (keeps ``import datanas_core`` cheap): name -> (module, attribute or None).
_LAZY = {
    "fix": ("datanas_core.space.model", "fix"),
    "ModelSpace": ("datanas_core.space.model", "ModelSpace"),
    "ModelSearchResult": ("datanas_core.api", "ModelSearchResult"),
    "export": ("datanas_core.export", None),
    "nn": ("datanas_core.nn", None),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_core' has no attribute {name!r}")
    module = _importlib.import_module(target[0])
    return module if target[1] is None else getattr(module, target[1])


try:
    __version__ = version("datanas-core")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "ADC",
    "DERIVATION_RULES",
    "ESTIMATORS",
    "OPS",
    "PRESETS",
    "REGULARIZERS",
    "SCHEDULES",
    "SPACES",
    "AllEdgesArgmax",
    "ArchSample",
    "ArchitectureDistribution",
    "ArgmaxPerEdge",
    "CellGenotype",
    "CellSample",
    "CellSpec",
    "CheckpointError",
    "ConcreteEstimator",
    "ConfigError",
    "Constant",
    "DartsExtSpace",
    "DartsSpace",
    "DataError",
    "DataNASError",
    "DerivationRule",
    "DirichletEstimator",
    "DirichletKL",
    "DistributionConstraint",
    "EGSEstimator",
    "EGSMultinomial",
    "EdgeChoice",
    "EntropyPenalty",
    "Estimator",
    "ExpectedCost",
    "Exponential",
    "GDASEstimator",
    "Genotype",
    "GenotypeError",
    "GumbelFamily",
    "IncompatibleGenotypeError",
    "L2Penalty",
    "Linear",
    "MissingDependencyError",
    "MixedOp",
    "ModelSpace",
    "NB201Space",
    "NumericalError",
    "Registry",
    "Regularizer",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "SearchSpaceError",
    "SearchTask",
    "Searcher",
    "SoftmaxEstimator",
    "Threshold",
    "TopKEdges",
    "TopKPairs",
    "UnknownNameError",
    "__version__",
    "arch_from_genotype",
    "build_searcher",
    "derive",
    "fix",
    "get_space",
    "load_published",
    "published_names",
    "register_op",
    "search",
]
