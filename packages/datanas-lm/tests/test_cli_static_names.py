"""``--data`` choices are a static tuple (``--help`` imports no torch); they match the dataset names."""

from __future__ import annotations

from datanas_lm.data import DATASETS
from datanas_lm.search import DATASET_NAMES


def test_static_dataset_names_match() -> None:
    assert DATASET_NAMES == tuple(DATASETS)
