"""Clustering data: a --data-dir that digits does not read is reported, not silently ignored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from datanas_fewshot.cluster.data import load_clustering_data


def test_data_dir_with_digits_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    data = load_clustering_data("digits", tmp_path)
    assert len(data) > 0
    assert f"--data-dir {tmp_path} is ignored" in caplog.text and "mnist" in caplog.text
    caplog.clear()
    load_clustering_data("digits")
    assert "ignored" not in caplog.text
