"""The static CLI name tuples of :mod:`datanas_core.cli_options` (used so that ``--help`` imports no torch)
match the registries."""

from __future__ import annotations

import datanas_core as dc
from datanas_core import cli_options


def test_static_cli_names_match_the_registries() -> None:
    assert cli_options.ESTIMATOR_NAMES == tuple(dc.ESTIMATORS.names())
    assert cli_options.REGULARIZER_NAMES == tuple(dc.REGULARIZERS.names())
    assert cli_options.RULE_NAMES == tuple(dc.DERIVATION_RULES.names())
