"""Keep mmengine's ``mmseg::`` config names loadable without ``pkg_resources``.

mmengine 0.10 finds the files behind ``_base_ = ['mmseg::_base_/datasets/cityscapes.py']`` with
``is_installed``/``get_installed_path``, which import ``pkg_resources``; setuptools >= 81 no longer ships
it, so such configs fail to load. :func:`ensure_mmengine_package_lookup` (called when
:mod:`datanas_seg.mmseg` is imported) gives mmengine's config loader importlib-based versions of the two
functions, only when ``pkg_resources`` is missing. Exported configs can then keep the portable
``mmseg::`` names: load them after ``import datanas_seg.mmseg`` (or with setuptools < 81 without it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os

__all__ = ["ensure_mmengine_package_lookup"]

logger = logging.getLogger(__name__)


def _module_names(package: str) -> list[str]:
    """Module names a distribution may provide (``mmsegmentation`` -> ``mmseg``, via top_level.txt)."""
    names = [package, package.replace("-", "_")]
    try:
        top = importlib.metadata.distribution(package).read_text("top_level.txt") or ""
    except importlib.metadata.PackageNotFoundError:
        top = ""
    names += [line.strip() for line in top.splitlines() if line.strip()]
    return list(dict.fromkeys(names))


def _find(package: str) -> importlib.machinery.ModuleSpec | None:
    for name in _module_names(package):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            return spec
    return None


def _is_installed(package: str) -> bool:
    return _find(package) is not None


def _get_installed_path(package: str) -> str:
    spec = _find(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{package} is not installed (or is a namespace package)")
    return os.path.dirname(spec.origin)


def ensure_mmengine_package_lookup() -> bool:
    """Patch mmengine's config loader to find packages without ``pkg_resources`` (only when it is missing).

    Returns:
        True when the importlib-based lookup is in place, False when ``pkg_resources`` is available (nothing
        is patched) or mmengine is not installed.
    """
    if importlib.util.find_spec("pkg_resources") is not None:
        return False
    try:
        import mmengine.config.config as config_module
    except ImportError:
        return False
    config_module.is_installed = _is_installed  # type: ignore[attr-defined]
    config_module.get_installed_path = _get_installed_path  # type: ignore[attr-defined]
    logger.debug("pkg_resources is missing: mmengine's config loader resolves 'pkg::' names with importlib")
    return True
