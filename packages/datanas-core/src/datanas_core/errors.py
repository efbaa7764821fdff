"""Exception hierarchy of datanas.

Every error raised on purpose by datanas derives from :class:`DataNASError`. Subclasses also inherit the
builtin exception they refine, so callers may catch either (``except KeyError`` still works for an unknown
registry name).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "RunInterrupted",
    "RunLockedError",
    "DataError",
    "DataNASError",
    "GenotypeError",
    "IncompatibleGenotypeError",
    "MissingDependencyError",
    "NumericalError",
    "SearchSpaceError",
    "UnknownNameError",
    "UnsafeCheckpointError",
]


class DataNASError(Exception):
    """Root of every datanas exception."""


class UnknownNameError(DataNASError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class ConfigError(DataNASError, ValueError):
    """An option or hyper-parameter has an invalid value."""


class GenotypeError(DataNASError, ValueError):
    """A genotype document is malformed."""


class IncompatibleGenotypeError(GenotypeError):
    """A well-formed genotype does not fit the search space it is used with."""


class SearchSpaceError(DataNASError, ValueError):
    """A search space is mis-specified or used inconsistently."""


class DataError(DataNASError, ValueError):
    """A dataset is missing, corrupt or inconsistent (checksums, shapes, labels)."""


class MissingDependencyError(DataNASError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class CheckpointError(DataNASError, RuntimeError):
    """A checkpoint cannot be written, read or resumed."""


class NumericalError(DataNASError, FloatingPointError):
    """A loss, gradient or probability became NaN or infinite."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file passed its checksum but holds objects that only full unpickling could rebuild
    (a foreign or pre-hardening file). It is never unpickled: unpickling could run code."""


class RunLockedError(DataNASError, RuntimeError):
    """Another live process holds the run directory (its pid is in the message and in ``.pid``)."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``run_dir`` is the directory to resume.

    A :class:`KeyboardInterrupt` (not a :class:`DataNASError`) so that ``except Exception`` never swallows
    it; the CLI wrapper turns it into one line with the exact resume command.
    """

    def __init__(self, run_dir: str, *, multi_seed_root: str | None = None) -> None:
        super().__init__(run_dir)
        self.run_dir = run_dir
        self.multi_seed_root = multi_seed_root
