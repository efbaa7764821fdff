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
from typing import TYPE_CHECKING, Any

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
from datanas_core.registry import Registry

if TYPE_CHECKING:
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
    from datanas_core.regularizers import (
        REGULARIZERS,
        DirichletKL,
        DistributionConstraint,
        EntropyPenalty,
        ExpectedCost,
        L2Penalty,
        Regularizer,
    )
    from datanas_core.regularizers import DistributionConstraint as ADC
    from datanas_core.sample import ArchSample, CellSample
    from datanas_core.schedules import SCHEDULES, Constant, Exponential, Linear
    from datanas_core.search.config import PRESETS, SearchConfig
    from datanas_core.search.factory import build_searcher
    from datanas_core.search.searcher import Searcher, SearchResult, arch_from_genotype
    from datanas_core.search.task import SearchTask
    from datanas_core.space.base import SPACES, CellSpec, SearchSpace
    from datanas_core.space.darts import DartsExtSpace, DartsSpace
    from datanas_core.space.mixed import MixedOp
    from datanas_core.space.nb201 import NB201Space

#: Modules whose import registers the built-in spaces, estimators, rules, regularisers and ops (the method
#: subpackages and the space modules). Loaded on the first use of any public name or any registry lookup, so
#: ``import datanas_core`` (and every CLI's ``--help``) imports no torch.
_REGISTERING = (
    "datanas_core.drnas",  # registers drnas_darts, drnas_nb201
    "datanas_core.e2nas",  # registers the e2nas estimator and novelty
    "datanas_core.entrannas",  # registers entrannas_*, dst
    "datanas_core.space.darts",
    "datanas_core.space.nb201",
    "datanas_core.space.model",  # registers the 'choice' rule
)

#: Public names loaded on first access: name -> (module, attribute or None for the module itself).
_LAZY: dict[str, tuple[str, str | None]] = {
    "AllEdgesArgmax": ("datanas_core.derive", "AllEdgesArgmax"),
    "ArchSample": ("datanas_core.sample", "ArchSample"),
    "ArchitectureDistribution": ("datanas_core.distribution", "ArchitectureDistribution"),
    "ArgmaxPerEdge": ("datanas_core.derive", "ArgmaxPerEdge"),
    "CellGenotype": ("datanas_core.genotype", "CellGenotype"),
    "CellSample": ("datanas_core.sample", "CellSample"),
    "CellSpec": ("datanas_core.space.base", "CellSpec"),
    "ConcreteEstimator": ("datanas_core.estimators", "ConcreteEstimator"),
    "Constant": ("datanas_core.schedules", "Constant"),
    "DERIVATION_RULES": ("datanas_core.derive", "DERIVATION_RULES"),
    "DartsExtSpace": ("datanas_core.space.darts", "DartsExtSpace"),
    "DartsSpace": ("datanas_core.space.darts", "DartsSpace"),
    "DerivationRule": ("datanas_core.derive", "DerivationRule"),
    "DirichletEstimator": ("datanas_core.estimators", "DirichletEstimator"),
    "DirichletKL": ("datanas_core.regularizers", "DirichletKL"),
    "DistributionConstraint": ("datanas_core.regularizers", "DistributionConstraint"),
    "EGSEstimator": ("datanas_core.estimators", "EGSEstimator"),
    "EGSMultinomial": ("datanas_core.derive", "EGSMultinomial"),
    "ESTIMATORS": ("datanas_core.estimators", "ESTIMATORS"),
    "EdgeChoice": ("datanas_core.genotype", "EdgeChoice"),
    "EntropyPenalty": ("datanas_core.regularizers", "EntropyPenalty"),
    "Estimator": ("datanas_core.estimators", "Estimator"),
    "ExpectedCost": ("datanas_core.regularizers", "ExpectedCost"),
    "Exponential": ("datanas_core.schedules", "Exponential"),
    "GDASEstimator": ("datanas_core.estimators", "GDASEstimator"),
    "Genotype": ("datanas_core.genotype", "Genotype"),
    "GumbelFamily": ("datanas_core.estimators", "GumbelFamily"),
    "L2Penalty": ("datanas_core.regularizers", "L2Penalty"),
    "Linear": ("datanas_core.schedules", "Linear"),
    "MixedOp": ("datanas_core.space.mixed", "MixedOp"),
    "NB201Space": ("datanas_core.space.nb201", "NB201Space"),
    "OPS": ("datanas_core.ops", "OPS"),
    "PRESETS": ("datanas_core.search.config", "PRESETS"),
    "REGULARIZERS": ("datanas_core.regularizers", "REGULARIZERS"),
    "Regularizer": ("datanas_core.regularizers", "Regularizer"),
    "SCHEDULES": ("datanas_core.schedules", "SCHEDULES"),
    "SPACES": ("datanas_core.space.base", "SPACES"),
    "SearchConfig": ("datanas_core.search.config", "SearchConfig"),
    "SearchResult": ("datanas_core.search.searcher", "SearchResult"),
    "SearchSpace": ("datanas_core.space.base", "SearchSpace"),
    "SearchTask": ("datanas_core.search.task", "SearchTask"),
    "Searcher": ("datanas_core.search.searcher", "Searcher"),
    "SoftmaxEstimator": ("datanas_core.estimators", "SoftmaxEstimator"),
    "Threshold": ("datanas_core.derive", "Threshold"),
    "TopKEdges": ("datanas_core.derive", "TopKEdges"),
    "TopKPairs": ("datanas_core.derive", "TopKPairs"),
    "arch_from_genotype": ("datanas_core.search.searcher", "arch_from_genotype"),
    "build_searcher": ("datanas_core.search.factory", "build_searcher"),
    "get_space": ("datanas_core.plugins", "get_space"),
    "load_published": ("datanas_core.published", "load_published"),
    "published_names": ("datanas_core.published", "published_names"),
    "register_op": ("datanas_core.ops", "register_op"),
    "ADC": ("datanas_core.regularizers", "DistributionConstraint"),  # DATA-TPAMI's name
    "fix": ("datanas_core.space.model", "fix"),
    "ModelSpace": ("datanas_core.space.model", "ModelSpace"),
    "ModelSearchResult": ("datanas_core.api", "ModelSearchResult"),
    "export": ("datanas_core.export", None),
    "nn": ("datanas_core.nn", None),
    "search": ("datanas_core.search", None),
    "drnas": ("datanas_core.drnas", None),
    "e2nas": ("datanas_core.e2nas", None),
    "entrannas": ("datanas_core.entrannas", None),
}

_loaded = False


def _load_builtins() -> None:
    """Import the registering modules once (idempotent; re-entrant calls during the import are no-ops)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    try:
        for module in _REGISTERING:
            _importlib.import_module(module)
    except BaseException:
        _loaded = False
        raise


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'datanas_core' has no attribute {name!r}")
    _load_builtins()
    module = _importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"derive"})


class _Package(_ModuleType):
    """``datanas_core.derive`` is the :func:`~datanas_core.derive.derive` function, also once the
    ``datanas_core.derive`` submodule is imported (the import system then sets the attribute: ignored)."""

    @property
    def derive(self) -> Any:
        _load_builtins()
        from datanas_core.derive import derive as _derive

        return _derive

    @derive.setter
    def derive(self, value: Any) -> None:
        pass


_sys.modules[__name__].__class__ = _Package


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
