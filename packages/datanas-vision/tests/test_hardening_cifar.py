"""A crafted CIFAR-10 batch cannot run code: the reader's unpickler admits only the format's types."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datanas_core.errors import DataError
from datanas_vision.data import load_dataset
from datanas_vision.data.sources import read_cifar_pickle


class _Payload:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _write_batches(folder: Path, test_batch: bytes) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        doc = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [i % 10, 3]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(doc))
    (folder / "test_batch").write_bytes(test_batch)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_crafted_cifar_batch_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "MARKER"
    evil = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": _Payload(marker)}
    _write_batches(tmp_path / "cifar-10-batches-py", pickle.dumps(evil, protocol=protocol))
    with pytest.raises(DataError, match=r"test_batch.*refused posix\.system|test_batch.*refused os\.system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


def test_object_arrays_and_foreign_codecs_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({"data": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="object dtype"):
        read_cifar_pickle(p)
    p.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a dict"):
        read_cifar_pickle(p)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_layout_still_reads(tmp_path: Path, protocol: int) -> None:
    p = tmp_path / "b"
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    doc = {
        "batch_label": "testing batch 1 of 1",
        "labels": [1, 2],
        "data": data,
        "filenames": [b"a.png", "b.png"],
    }
    p.write_bytes(pickle.dumps(doc, protocol=protocol))
    back = read_cifar_pickle(p)
    assert np.array_equal(back["data"], data) and back["labels"] == [1, 2]
    assert back["filenames"] == [b"a.png", "b.png"]
