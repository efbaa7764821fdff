"""Checkpoint files: atomic, checksummed, rotated; the newest readable one is used on resume.

File format (``*.dnckpt``)::

    8 bytes   magic  b"DNCKPT\\x00\\x01"
    32 bytes  sha256 of the payload
    8 bytes   payload length (little-endian unsigned)
    payload   torch.save() of the state dict

The payload holds only what ``torch.load(weights_only=True)`` accepts: tensors, dicts, lists, tuples, strings,
numbers, booleans and ``None``. :func:`encode_checkpoint` converts anything else (NumPy arrays to tensors,
NumPy scalars to numbers, sets to sorted lists, objects with ``to_dict`` or dataclasses to their JSON form)
before saving, and :func:`decode_checkpoint` loads with ``weights_only=True`` only: a file that needs full
unpickling (a foreign or older file, or a crafted one) is refused with :class:`UnsafeCheckpointError` and
nothing in it runs.

A file whose length or checksum does not match (a write cut short by a crash, a truncated copy, a flipped
bit) is reported as corrupt: :meth:`CheckpointManager.load_latest` warns, moves it aside
(``*.corrupt``) and falls back to the previous checkpoint.

Writes go through a temporary file in the checkpoint directory, are fsync-ed and renamed into place, and
the directory is fsync-ed, so a crash at any point leaves either the old set of checkpoints or the old set
plus one complete new file. Old checkpoints are deleted (keeping the last ``keep_last``) only after the new
one is durable. A write that fails (read-only directory, full disk) raises :class:`CheckpointError` and
leaves every existing checkpoint untouched.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import os
import re
import struct
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datanas_core.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from datanas_core.runtime._fs import atomic_write, clean_stale_tmp

__all__ = ["CheckpointInfo", "CheckpointManager", "describe_mismatch", "read_checkpoint", "write_checkpoint"]

logger = logging.getLogger(__name__)

MAGIC = b"DNCKPT\x00\x01"
_HEADER = struct.Struct("<8s32sQ")
_NAME = re.compile(r"^ckpt-s(\d+)-e(\d+)-b(\d+)\.dnckpt$")
SUFFIX = ".dnckpt"


_PRIMITIVE = (type(None), bool, int, float, str, bytes)
_TORCH = (torch.Tensor, torch.Size, torch.dtype, torch.device)


def _weights_only_safe(obj: Any, path: str = "$") -> Any:
    """``obj`` with every value that ``weights_only`` loading would refuse converted to plain data."""
    if type(obj) in _PRIMITIVE or isinstance(obj, _TORCH):  # exact types: numpy.float64 is a float
        return obj
    if isinstance(obj, Mapping):
        out = {k: _weights_only_safe(v, f"{path}.{k}") for k, v in obj.items()}
        return type(obj)(out) if type(obj) in (dict, collections.OrderedDict) else out
    if isinstance(obj, (list, tuple)):
        seq = [_weights_only_safe(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        return tuple(seq) if type(obj) is tuple else seq
    try:
        import numpy as np

        if isinstance(obj, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(obj).copy())
        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    from datanas_core.runtime._jsonutil import to_jsonable

    logger.debug("checkpoint entry %s (%s) stored as JSON data", path, type(obj).__name__)
    return to_jsonable(obj)


def encode_checkpoint(state: Mapping[str, Any]) -> bytes:
    """Serialise ``state`` into the checksummed file format (see the module docstring for what is kept)."""
    buf = io.BytesIO()
    torch.save(_weights_only_safe(dict(state)), buf)
    payload = buf.getvalue()
    return _HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload


def decode_checkpoint(data: bytes, *, source: str = "<bytes>") -> dict[str, Any]:
    """Verify and deserialise a checkpoint.

    Raises:
        CheckpointError: bad magic, truncated or over-long payload, checksum mismatch, unreadable payload.
        UnsafeCheckpointError: the payload needs full unpickling (never done: it could run code).
    """
    if len(data) < _HEADER.size:
        raise CheckpointError(
            f"checkpoint {source} is truncated: {len(data)} bytes, header needs {_HEADER.size}"
        )
    magic, digest, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{source} is not a datanas checkpoint (bad magic {magic!r})")
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(
            f"checkpoint {source} is truncated or padded: payload has {len(payload)} bytes, "
            f"header says {length}"
        )
    actual = hashlib.sha256(payload).digest()
    if actual != digest:
        raise CheckpointError(
            f"checkpoint {source} is corrupt: sha256 {actual.hex()[:16]}... "
            f"!= recorded {digest.hex()[:16]}..."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols of foreign files
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a damaged zip payload
        if type(exc).__name__ != "UnpicklingError":
            raise CheckpointError(f"checkpoint {source} cannot be deserialised: {exc}") from exc
        found = [ln.strip() for ln in str(exc).splitlines() if "WeightsUnpickler error" in ln]
        first = found[0].split(". Please")[0] if found else "refused by the weights-only loader"
        raise UnsafeCheckpointError(
            f"checkpoint {source} holds objects other than tensors and plain data ({first}); it was not "
            "written by this datanas version or was crafted, and it is not loaded because unpickling it "
            "could run code. Start over with a new --out (or --restart), or delete the file to fall back "
            "to an older checkpoint"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {source} holds a {type(state).__name__}, expected a dict of run state"
        )
    return state


def write_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Atomically write one checkpoint file.

    Raises:
        CheckpointError: the file cannot be written (the previous file at ``path``, if any, is untouched).
    """
    path = Path(path)
    data = encode_checkpoint(state)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, data)
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {str(path)!r}: {exc}") from exc


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify one checkpoint file.

    Raises:
        CheckpointError: missing, unreadable, truncated or corrupt.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc
    return decode_checkpoint(data, source=repr(str(path)))


@dataclass(frozen=True, order=True)
class CheckpointInfo:
    """Position of a checkpoint file in the run: after ``step`` optimisation steps, at batch ``batch`` of
    epoch ``epoch`` (``batch == 0``: at the start of ``epoch``)."""

    step: int
    epoch: int
    batch: int
    path: Path

    @staticmethod
    def parse(path: Path) -> CheckpointInfo | None:
        m = _NAME.match(path.name)
        if m is None:
            return None
        return CheckpointInfo(int(m.group(1)), int(m.group(2)), int(m.group(3)), path)


class CheckpointManager:
    """Saves, rotates and finds checkpoints in one directory.

    Args:
        directory: where checkpoint files live (created on first save).
        keep_last: number of most recent checkpoints to keep (>= 1).
        enabled: ``False`` (non-zero ranks) turns :meth:`save` into a no-op; loading still works.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, keep_last: int = 3, enabled: bool = True
    ) -> None:
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ConfigError(f"keep_last must be an integer >= 1, got {keep_last!r}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.enabled = enabled
        if enabled:
            for p in clean_stale_tmp(self.directory):
                logger.info("removed a temporary file left by an interrupted checkpoint write: %s", p)

    @staticmethod
    def filename(step: int, epoch: int, batch: int) -> str:
        return f"ckpt-s{step:09d}-e{epoch:04d}-b{batch:06d}{SUFFIX}"

    def list(self) -> list[CheckpointInfo]:
        """Checkpoint files present, oldest first (by step, then epoch, then batch)."""
        if not self.directory.is_dir():
            return []
        infos = [CheckpointInfo.parse(p) for p in self.directory.iterdir()]
        return sorted(i for i in infos if i is not None)

    def latest_path(self) -> Path | None:
        infos = self.list()
        return infos[-1].path if infos else None

    def save(self, state: Mapping[str, Any], *, step: int, epoch: int, batch: int) -> Path | None:
        """Write a checkpoint for position (``step``, ``epoch``, ``batch``) and prune old ones.

        Raises:
            CheckpointError: the write failed; the message names the last good checkpoint, which is untouched.
        """
        if not self.enabled:
            return None
        path = self.directory / self.filename(step, epoch, batch)
        t0 = time.perf_counter()
        try:
            write_checkpoint(path, state)
        except CheckpointError as exc:
            last = self.latest_path()
            keep = (
                f"the last good checkpoint {str(last)!r} is untouched"
                if last
                else "no earlier checkpoint exists"
            )
            raise CheckpointError(f"{exc}; {keep}") from exc.__cause__
        logger.debug("checkpoint %s written in %.3fs", path.name, time.perf_counter() - t0)
        self.prune()
        return path

    def prune(self) -> list[Path]:
        """Delete all but the ``keep_last`` newest checkpoints; returns the deleted paths."""
        if not self.enabled:
            return []
        infos = self.list()
        removed = []
        for info in infos[: max(0, len(infos) - self.keep_last)]:
            try:
                info.path.unlink()
                removed.append(info.path)
            except OSError as exc:
                logger.warning("could not delete old checkpoint %s: %s", info.path, exc)
        return removed

    def corrupt_files(self) -> list[Path]:
        """Checkpoint files set aside as ``*.corrupt`` by :meth:`load_latest`, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX + ".corrupt"))

    def load_latest(self, *, quarantine: bool = True) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        """The newest checkpoint that reads back intact, or ``None`` when there is none at all.

        Corrupt or truncated newer files are reported with a warning and, with ``quarantine`` (and when
        this manager may write), renamed to ``*.corrupt`` so that rotation never keeps them instead of good
        checkpoints.

        Raises:
            UnsafeCheckpointError: the newest intact file needs full unpickling; it is left in place and
                nothing older is tried (a foreign file is not a crash artefact; the user decides).
            CheckpointError: checkpoint files exist but none of them is readable (the message says what to
                do next).
        """
        infos = self.list()
        if not infos:
            return None
        errors = []
        for info in reversed(infos):
            try:
                state = read_checkpoint(info.path)
            except UnsafeCheckpointError:
                raise
            except CheckpointError as exc:
                errors.append(str(exc))
                logger.warning("%s; falling back to the previous checkpoint", exc)
                if quarantine and self.enabled:
                    with contextlib.suppress(OSError):
                        info.path.rename(info.path.with_name(info.path.name + ".corrupt"))
                continue
            return info, state
        raise CheckpointError(
            f"no readable checkpoint in {str(self.directory)!r}: all {len(infos)} are damaged"
            + (" and were set aside as *.corrupt" if quarantine and self.enabled else "")
            + f" ({'; '.join(errors)}). {ALL_DAMAGED_ADVICE}"
        )


#: What to do when no checkpoint of a run can be read (used in error messages).
ALL_DAMAGED_ADVICE = (
    "The run cannot be resumed: start over with a new --out, or with --restart to start this run "
    "directory again from step 0 (its old files are moved to previous/)"
)


def describe_mismatch(
    saved: Any, current: Any, *, path: str = "", ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Differences between two JSON-like documents, as ``"key.path: saved X, now Y"`` strings.

    Keys whose dotted path (or top-level key) is in ``ignore`` are skipped.
    """
    out: list[str] = []
    if path in ignore:
        return out
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        for k in sorted(set(saved) | set(current), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if sub in ignore:
                continue
            if k not in saved:
                out.append(f"{sub}: not in the saved run, now {current[k]!r}")
            elif k not in current:
                out.append(f"{sub}: saved {saved[k]!r}, now missing")
            else:
                out.extend(describe_mismatch(saved[k], current[k], path=sub, ignore=ignore))
        return out
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        if len(saved) == len(current):
            for i, (a, b) in enumerate(zip(saved, current, strict=True)):
                out.extend(describe_mismatch(a, b, path=f"{path}[{i}]", ignore=ignore))
            return out
    if saved != current:
        out.append(f"{path or '$'}: saved {saved!r}, now {current!r}")
    return out
