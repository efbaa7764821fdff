"""JSON helpers: turn tensors, numpy scalars, dataclasses and paths into plain JSON values."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["config_hash", "dumps", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` into JSON-compatible values (floats stay floats, NaN stays NaN)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_jsonable(to_dict())
        return to_jsonable(dataclasses.asdict(obj))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        seq = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in seq]
    tolist = getattr(obj, "tolist", None)  # torch tensors, numpy arrays and numpy scalars
    if callable(tolist):
        return to_jsonable(tolist())
    item = getattr(obj, "item", None)
    if callable(item):
        return to_jsonable(item())
    return repr(obj)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` of :func:`to_jsonable` with sorted keys."""
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=True)


def config_hash(config: Any) -> str:
    """A short stable hash (sha256, 16 hex digits) of a configuration's canonical JSON."""
    return hashlib.sha256(dumps(config).encode("utf-8")).hexdigest()[:16]


def is_number(v: Any) -> bool:
    """Whether ``v`` is a real number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    return is_number(v) and math.isfinite(float(v))
