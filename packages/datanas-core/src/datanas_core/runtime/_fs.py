"""Durable file writes: temporary file in the target directory, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["TMP_MARKER", "atomic_write", "fsync_dir"]

#: Infix of temporary files; a crash may leave one behind, and :func:`clean_stale_tmp` removes them.
TMP_MARKER = ".tmp-"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, chunk: int = 1 << 22) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The bytes go to ``.<name>.tmp-<pid>`` in the same directory, are flushed and fsync-ed, renamed over
    ``path`` and the directory is fsync-ed. On any error the temporary file is removed and the error is
    re-raised; the previous content of ``path`` is never touched.

    Raises:
        OSError: the directory is not writable, the disk is full, ...
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view[:chunk])
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def clean_stale_tmp(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files left by an interrupted :func:`atomic_write` in ``directory``."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name.startswith(".") and TMP_MARKER in p.name:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
