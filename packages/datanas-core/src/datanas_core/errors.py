"""Exception hierarchy of datanas.

Every error raised on purpose by datanas derives from :class:`DataNASError`. Subclasses also inherit the
builtin exception they refine, so callers may catch either (``except KeyError`` still works for an unknown
registry name).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataNASError",
    "GenotypeError",
    "IncompatibleGenotypeError",
    "MissingDependencyError",
    "NumericalError",
    "SearchSpaceError",
    "UnknownNameError",
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
