"""File helpers shared by every domain package: checksums, atomic writes, downloads, idx files.

Loaders in the domain packages read standard on-disk formats from a user-given directory; when files are
missing they may call :func:`download`, which verifies a checksum and writes atomically, so an interrupted
download never leaves a half-written file under the final name.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from datanas_core.errors import DataError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "download",
    "file_digest",
    "read_idx",
    "verify_checksum",
]

logger = logging.getLogger(__name__)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``md5``, ``sha1`` or ``sha256``)."""
    if algorithm not in {"md5", "sha1", "sha256"}:
        raise DataError(f"unknown checksum algorithm {algorithm!r}; valid: md5, sha1, sha256")
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def verify_checksum(
    path: str | os.PathLike[str], *, md5: str | None = None, sha256: str | None = None
) -> None:
    """Raise :class:`DataError` if the file's checksum differs from the expected one.

    The message names the file, the expected and the actual digest.
    """
    for algo, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_digest(path, algo)
        if actual.lower() != expected.lower():
            raise DataError(
                f"checksum mismatch for {str(path)!r}: expected {algo} {expected}, got {actual}. "
                "The file is corrupt or a different version; delete it and download it again."
            )


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its checksum.

    Args:
        url: http(s) or file URL.
        dest: final path; the parent directory is created.
        md5, sha256: expected digest(s); verified before the file is moved into place.
        timeout: socket timeout in seconds.
        progress: optional callback ``(bytes_done, total_or_None)``.

    Directories created for ``dest`` are removed again when the download fails, so a failed download
    leaves the file system as it was.

    Raises:
        DataError: on network failure (with a hint to place the file by hand), checksum mismatch, or a
            destination that cannot be created.
    """
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        _remove_empty(created)
        raise DataError(
            f"cannot download {url} to {str(dest)!r}: {exc.strerror or exc}; pass a writable --data-dir"
        ) from None
    ok = False
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
                total_hdr = resp.headers.get("Content-Length")
                total = int(total_hdr) if total_hdr and total_hdr.isdigit() else None
                done = 0
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(
                f"could not download {url} to {str(dest)!r}: {exc}. Without network access, place the file "
                f"there by hand."
            ) from exc
        verify_checksum(tmp, md5=md5, sha256=sha256)
        os.replace(tmp, dest)
        ok = True
        logger.info("downloaded %s -> %s", url, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not ok:
            _remove_empty(created)
    return dest


def _remove_empty(dirs: list[Path]) -> None:
    """Remove directories this module created (deepest first) if they are still empty."""
    for d in dirs:  # listed deepest first
        try:
            d.rmdir()
        except OSError:
            break


_IDX_DTYPES = {
    0x08: (torch.uint8, "B", 1),
    0x09: (torch.int8, "b", 1),
    0x0B: (torch.int16, ">h", 2),
    0x0C: (torch.int32, ">i", 4),
    0x0D: (torch.float32, ">f", 4),
    0x0E: (torch.float64, ">d", 8),
}


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an idx file (MNIST format), gzip-compressed or not, into a tensor.

    Raises:
        DataError: if the file is truncated or its header is not an idx header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read idx file {str(path)!r}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{str(path)!r} is not an idx file (bad magic number)")
    dtype, fmt, size = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"idx file {str(path)!r} is truncated in its header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(raw) - header != count * size:
        raise DataError(
            f"idx file {str(path)!r} has {len(raw) - header} data bytes, expected {count * size} for shape {dims}"
        )
    if size == 1:
        t = torch.frombuffer(bytearray(raw[header:]), dtype=dtype)
    else:
        import array

        arr = array.array(fmt[-1], raw[header:])
        arr.byteswap()  # idx is big-endian
        t = torch.tensor(arr.tolist(), dtype=dtype)
    return t.reshape(dims)
