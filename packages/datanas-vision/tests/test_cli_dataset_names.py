"""``--data`` choices are a static tuple (``--help`` imports no torch); they match the dataset registry."""

from __future__ import annotations

from datanas_vision._cli import DATASET_NAMES
from datanas_vision.data import DATASETS


def test_static_dataset_names_match_the_registry() -> None:
    assert DATASET_NAMES == tuple(DATASETS.names())
