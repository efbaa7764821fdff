"""Checkpoint files: checksums, atomic writes, rotation, fallback to the previous file, failing disks."""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path

import pytest
import torch

from datanas_core.errors import CheckpointError
from datanas_core.runtime import _fs
from datanas_core.runtime.checkpoint import (
    CheckpointManager,
    decode_checkpoint,
    describe_mismatch,
    encode_checkpoint,
    read_checkpoint,
)
from datanas_core.runtime.rng import capture_rng_state, restore_rng_state


def _state(i: int) -> dict:
    return {"i": i, "w": torch.arange(10, dtype=torch.float32) * i, "nested": {"s": f"x{i}"}}


def test_encode_decode_round_trip() -> None:
    st = _state(3)
    back = decode_checkpoint(encode_checkpoint(st))
    assert back["i"] == 3 and back["nested"] == {"s": "x3"}
    assert torch.equal(back["w"], st["w"])


@pytest.mark.parametrize("cut", [0, 10, 47, -1, -100])
def test_truncated_checkpoint_is_detected(cut: int) -> None:
    data = encode_checkpoint(_state(1))
    with pytest.raises(CheckpointError, match="truncated|bad magic"):
        decode_checkpoint(data[:cut])


def test_flipped_bit_is_detected() -> None:
    data = bytearray(encode_checkpoint(_state(1)))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(CheckpointError, match="corrupt"):
        decode_checkpoint(bytes(data))


def test_not_a_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="not a datanas checkpoint"):
        decode_checkpoint(b"PK\x03\x04" + b"\x00" * 100)


def test_manager_keeps_last_k_in_order(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path / "ck", keep_last=2)
    for step in (3, 6, 9):
        m.save(_state(step), step=step, epoch=step // 3, batch=0)
    infos = m.list()
    assert [i.step for i in infos] == [6, 9]
    info, st = m.load_latest()
    assert info.step == 9 and st["i"] == 9


def test_epoch_end_checkpoint_sorts_after_mid_epoch_at_same_step(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep_last=5)
    m.save(_state(1), step=8, epoch=1, batch=4)  # mid-epoch, last batch of epoch 1
    m.save(_state(2), step=8, epoch=2, batch=0)  # epoch end
    assert m.load_latest()[1]["i"] == 2


def test_corrupt_latest_falls_back_to_previous_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = CheckpointManager(tmp_path, keep_last=3)
    m.save(_state(1), step=1, epoch=0, batch=1)
    p2 = m.save(_state(2), step=2, epoch=0, batch=2)
    assert p2 is not None
    p2.write_bytes(p2.read_bytes()[: p2.stat().st_size // 2])  # truncated copy
    with caplog.at_level(logging.WARNING):
        info, st = m.load_latest()
    assert st["i"] == 1 and info.step == 1
    assert "truncated" in caplog.text and "falling back" in caplog.text
    # the damaged file is moved aside so that rotation never prefers it over good checkpoints
    assert not p2.exists() and p2.with_name(p2.name + ".corrupt").exists()


def test_all_corrupt_raises(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path)
    p = m.save(_state(1), step=1, epoch=0, batch=1)
    p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        m.load_latest()


def test_no_checkpoint_returns_none(tmp_path: Path) -> None:
    assert CheckpointManager(tmp_path / "missing").load_latest() is None


def test_full_disk_fails_loudly_and_keeps_last_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = CheckpointManager(tmp_path, keep_last=1)
    good = m.save(_state(1), step=1, epoch=0, batch=1)
    before = good.read_bytes()
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_fs.os, "write", full)
    with pytest.raises(CheckpointError) as ei:
        m.save(_state(2), step=2, epoch=0, batch=2)
    monkeypatch.undo()
    msg = str(ei.value)
    assert "No space left" in msg and good.name in msg and "untouched" in msg
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # no temporary file, no new file
    assert read_checkpoint(good)["i"] == 1


def test_read_only_directory_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = CheckpointManager(tmp_path, keep_last=2)
    good = m.save(_state(1), step=1, epoch=0, batch=1)
    before = good.read_bytes()
    real_open = os.open

    def ro_open(path: str, flags: int, *a: object) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(_fs.os, "open", ro_open)
    with pytest.raises(CheckpointError, match="Read-only file system"):
        m.save(_state(2), step=2, epoch=0, batch=2)
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert [i.path for i in m.list()] == [good]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_for_real(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep_last=2)
    good = m.save(_state(1), step=1, epoch=0, batch=1)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(CheckpointError, match="could not write checkpoint"):
            m.save(_state(2), step=2, epoch=0, batch=2)
    finally:
        os.chmod(tmp_path, 0o755)
    assert read_checkpoint(good)["i"] == 1


def test_stale_temporary_files_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / f".ckpt-s000000001-e0000-b000001.dnckpt{_fs.TMP_MARKER}999"
    stale.write_bytes(b"half a checkpoint")
    CheckpointManager(tmp_path)
    assert not stale.exists()


def test_describe_mismatch_names_paths() -> None:
    saved = {
        "config": {"lr": 0.1, "data": "cifar10", "out": "a"},
        "space": {"name": "darts", "ops": ["a", "b"]},
    }
    now = {
        "config": {"lr": 0.2, "data": "cifar10", "out": "b"},
        "space": {"name": "nb201", "ops": ["a", "c"]},
    }
    diffs = describe_mismatch(saved, now, ignore=frozenset({"config.out"}))
    text = "; ".join(diffs)
    assert "config.lr: saved 0.1, now 0.2" in text
    assert "space.name: saved 'darts', now 'nb201'" in text
    assert "space.ops[1]" in text
    assert "config.out" not in text


def test_rng_round_trip() -> None:
    import numpy as np

    g = torch.Generator().manual_seed(5)
    state = capture_rng_state({"g": g})
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=g)))
    restore_rng_state(state, {"g": g})
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=g)))
    assert a == b
    # the state survives serialisation with weights_only loading
    back = decode_checkpoint(encode_checkpoint({"rng": state}))
    restore_rng_state(back["rng"], {"g": g})
    c = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=g)))
    assert a == c
