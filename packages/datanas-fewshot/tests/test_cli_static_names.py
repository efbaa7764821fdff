"""The few-shot CLIs' static choices (``--help`` imports no torch) match the data sources and registries."""

from __future__ import annotations

import importlib

from datanas_fewshot.cluster.data import CLUSTER_DATASETS
from datanas_fewshot.cluster.objectives import OBJECTIVES
from datanas_fewshot.search import DATASET_NAMES
from datanas_fewshot.sources import FEWSHOT_DATASETS


def test_static_choices_match() -> None:
    cluster_cli = importlib.import_module("datanas_fewshot.cluster.__main__")
    assert DATASET_NAMES == tuple(FEWSHOT_DATASETS)
    assert cluster_cli.DATASET_NAMES == tuple(CLUSTER_DATASETS)
    assert cluster_cli.OBJECTIVE_NAMES == tuple(OBJECTIVES.names())
