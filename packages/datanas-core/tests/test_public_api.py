"""The public surface of datanas_core is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import datanas_core

EXPECTED = {
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
    "get_space",
    "load_published",
    "published_names",
    "register_op",
    "ModelSpace",
    "fix",
    "search",
}


def test_all_is_pinned() -> None:
    assert set(datanas_core.__all__) == EXPECTED
    assert len(datanas_core.__all__) == len(set(datanas_core.__all__))


def test_every_exported_name_resolves() -> None:
    for name in datanas_core.__all__:
        assert hasattr(datanas_core, name), name


def test_registries_are_populated_on_import() -> None:
    assert {"darts", "darts_ext", "nb201"} <= set(datanas_core.SPACES.names())
    assert {"softmax", "snas", "gdas", "egs", "dirichlet"} <= set(datanas_core.ESTIMATORS.names())
    assert {"adc", "dirichlet_kl", "l2", "entropy", "expected_cost"} <= set(datanas_core.REGULARIZERS.names())
    assert {"topk_edges", "topk_pairs", "argmax_edge", "all_edges_argmax", "data", "threshold"} <= set(
        datanas_core.DERIVATION_RULES.names()
    )


def test_get_space_unknown_lists_names() -> None:
    import pytest

    with pytest.raises(datanas_core.UnknownNameError, match="valid search space names: .*darts.*nb201"):
        datanas_core.get_space("nb202")


def test_adc_alias() -> None:
    assert datanas_core.ADC is datanas_core.DistributionConstraint
