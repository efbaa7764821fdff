"""The seg CLIs' static choices (``--help`` imports no torch) match the data and export modules."""

from __future__ import annotations

from datanas_seg import _cli
from datanas_seg.data import DATASETS
from datanas_seg.export import DECODE_HEADS, HEAD_INPUTS


def test_static_choices_match() -> None:
    assert _cli.DATASET_NAMES == tuple(DATASETS)
    assert _cli.DECODE_HEAD_NAMES == tuple(DECODE_HEADS)
    assert _cli.HEAD_INPUT_NAMES == tuple(HEAD_INPUTS)
