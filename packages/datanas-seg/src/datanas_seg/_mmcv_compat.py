"""Let mmsegmentation import on top of ``mmcv-lite`` (mmcv without compiled ops).

mmseg 1.x imports ``mmcv.ops`` unconditionally, and ``mmcv.ops`` loads the compiled extension ``mmcv._ext``
at import time. ``mmcv-lite`` ships the same pure-Python ``mmcv`` package without that extension, so
``import mmseg.models`` fails with ``No module named 'mmcv._ext'`` although none of the models datanas-seg
builds (its backbones, ASPP / depthwise-separable ASPP / FCN / PSP heads) ever call a compiled op.

:func:`ensure_mmcv_ext` registers a placeholder module under ``sys.modules["mmcv._ext"]`` only when mmcv is
installed **without** its compiled extension. Every attribute of the placeholder is a stub whose call raises
:class:`~datanas_core.errors.MissingDependencyError` naming the op, so a config that really needs a compiled
op (deformable convolution, CARAFE, ...) fails loudly at the call instead of computing garbage. When a full
mmcv is installed (``mmcv._ext`` is importable or already imported) nothing is touched.

This module is pure Python and does not import mmcv or mmseg itself (only ``importlib.util.find_spec``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import types
from collections.abc import Callable, MutableMapping
from typing import Any, NoReturn

from datanas_core.errors import MissingDependencyError

__all__ = [
    "EXT_MODULE",
    "MissingCompiledOp",
    "MmcvExtPlaceholder",
    "ensure_mmcv_ext",
    "has_compiled_mmcv_ops",
    "is_placeholder",
    "make_placeholder",
]

logger = logging.getLogger(__name__)

#: Import name of mmcv's compiled extension.
EXT_MODULE = "mmcv._ext"

_INSTALL_HINT = (
    "the installed mmcv has no compiled ops (mmcv-lite). datanas-seg's own models never need them; a model "
    "that does needs a full mmcv build: pip uninstall mmcv-lite && pip install 'mmcv>=2.0.0rc4,<2.2.0' "
    "(compiled from source, see https://mmcv.readthedocs.io/en/latest/get_started/installation.html)"
)

FindSpec = Callable[[str], Any]


class MissingCompiledOp:
    """Stand-in for one compiled mmcv op; calling it raises MissingDependencyError naming the op."""

    def __init__(self, name: str) -> None:
        self.__name__ = name
        self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise MissingDependencyError(f"mmcv compiled op {self.__name__!r} was called, but {_INSTALL_HINT}")

    def __repr__(self) -> str:
        return f"<missing compiled mmcv op {self.__name__!r}>"


class MmcvExtPlaceholder(types.ModuleType):
    """Module object registered as ``mmcv._ext`` when the compiled extension is absent.

    Any public attribute lookup returns a :class:`MissingCompiledOp` (so ``mmcv.utils.ext_loader.load_ext``'s
    ``hasattr`` checks pass at import time); dunder lookups raise AttributeError as for a normal module.
    """

    __datanas_placeholder__ = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return MissingCompiledOp(name)


def make_placeholder() -> MmcvExtPlaceholder:
    """A new placeholder module for ``mmcv._ext``.

    It carries a module spec without a loader, so ``importlib.util.find_spec("mmcv._ext")`` answers (instead
    of raising ``ValueError``) and mmcv's own ``check_ops_exist()`` (``pkgutil.find_loader``) reports that the
    compiled ops are absent, which is the truth.
    """
    module = MmcvExtPlaceholder(EXT_MODULE, "datanas-seg placeholder for mmcv's compiled ops (mmcv-lite).")
    module.__spec__ = importlib.machinery.ModuleSpec(EXT_MODULE, None)
    return module


def is_placeholder(module: object) -> bool:
    """Whether ``module`` is the datanas placeholder for ``mmcv._ext``."""
    return isinstance(module, MmcvExtPlaceholder)


def _find(find_spec: FindSpec, name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def has_compiled_mmcv_ops(
    *, modules: MutableMapping[str, Any] | None = None, find_spec: FindSpec | None = None
) -> bool:
    """Whether a real compiled ``mmcv._ext`` is importable (the placeholder does not count).

    Args:
        modules: module table to inspect (default ``sys.modules``; injectable for tests).
        find_spec: spec finder (default ``importlib.util.find_spec``; injectable for tests).
    """
    modules = sys.modules if modules is None else modules
    find_spec = importlib.util.find_spec if find_spec is None else find_spec
    existing = modules.get(EXT_MODULE)
    if existing is not None:
        return not is_placeholder(existing)
    return _find(find_spec, "mmcv") and _find(find_spec, EXT_MODULE)


def ensure_mmcv_ext(
    *, modules: MutableMapping[str, Any] | None = None, find_spec: FindSpec | None = None
) -> bool:
    """Register the ``mmcv._ext`` placeholder if and only if mmcv lacks its compiled ops.

    Idempotent. Leaves everything untouched when mmcv is absent (the caller reports that), when a compiled
    ``mmcv._ext`` is importable, or when some module is already registered as ``mmcv._ext``.

    Args:
        modules: module table to modify (default ``sys.modules``; injectable for tests).
        find_spec: spec finder (default ``importlib.util.find_spec``; injectable for tests).

    Returns:
        True when the placeholder is in place after the call, False when the real extension (or no mmcv)
        is used.
    """
    modules = sys.modules if modules is None else modules
    find_spec = importlib.util.find_spec if find_spec is None else find_spec
    existing = modules.get(EXT_MODULE)
    if existing is not None:
        return is_placeholder(existing)
    if not _find(find_spec, "mmcv"):
        return False
    if _find(find_spec, EXT_MODULE):
        return False
    modules[EXT_MODULE] = make_placeholder()
    logger.debug("mmcv has no compiled ops; registered a placeholder for %s", EXT_MODULE)
    return True
