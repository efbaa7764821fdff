"""mmsegmentation integration (extra ``mmseg``): backbones registered in ``mmseg.registry.MODELS``.

Importing this module

1. checks that mmseg, mmengine and mmcv are installed (otherwise :class:`MissingDependencyError` naming
   ``pip install "datanas-seg[mmseg]"``);
2. on ``mmcv-lite`` (mmcv without compiled ops) registers a placeholder for ``mmcv._ext`` so that mmseg
   imports (see :mod:`datanas_seg._mmcv_compat`); with a full mmcv nothing is patched;
3. without ``pkg_resources`` (setuptools >= 81), lets mmengine's config loader resolve ``mmseg::`` names
   (``_base_ = ['mmseg::_base_/datasets/cityscapes.py']``; see :mod:`datanas_seg._mmengine_compat`);
4. registers ``DataNASBackbone`` (:class:`MMSegDataNASBackbone`, a derived genotype) and
   ``DataNASSupernetBackbone`` (:class:`MMSegDataNASSupernet`, the search supernet) in
   ``mmseg.registry.MODELS``.

mmseg configs load it with ``custom_imports = dict(imports=['datanas_seg.mmseg'],
allow_failed_imports=False)`` (:func:`datanas_seg.export_mmseg_config` writes that line).
"""

from __future__ import annotations

import importlib.util

from datanas_core.errors import MissingDependencyError
from datanas_seg._mmcv_compat import ensure_mmcv_ext
from datanas_seg._mmengine_compat import ensure_mmengine_package_lookup

_INSTALL = 'pip install "datanas-seg[mmseg]"'


def _check_installed() -> None:
    missing = []
    for mod in ("mmengine", "mmcv", "mmseg"):
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    if missing:
        raise MissingDependencyError(
            f"datanas_seg.mmseg needs {', '.join(missing)} (mmsegmentation 1.x with mmengine and mmcv 2.x); "
            f"install them with: {_INSTALL}"
        )


_check_installed()
ensure_mmcv_ext()
ensure_mmengine_package_lookup()  # 'mmseg::' config names without pkg_resources

try:
    import mmseg.models  # noqa: F401  (registers mmseg's heads and segmentors)
except AssertionError as exc:  # mmseg's import-time version gate
    raise MissingDependencyError(
        f"the installed mmseg/mmcv/mmengine versions do not work together ({exc}); install matching versions "
        f"with: {_INSTALL}"
    ) from exc
except ImportError as exc:
    raise MissingDependencyError(f"importing mmseg failed ({exc}); install it with: {_INSTALL}") from exc

from datanas_seg.backbone import feature_channels  # noqa: E402
from datanas_seg.mmseg.backbone import MMSegDataNASBackbone, MMSegDataNASSupernet  # noqa: E402
from datanas_seg.mmseg.segmentor import (  # noqa: E402
    MMSegSearchTask,
    build_derived_segmentor,
    build_search_segmentor,
    build_segmentor,
    evaluate_segmentor,
    make_data_samples,
    mmseg_intersect_and_union,
    segmentor_logits,
)

__all__ = [
    "MMSegDataNASBackbone",
    "MMSegDataNASSupernet",
    "MMSegSearchTask",
    "build_derived_segmentor",
    "build_search_segmentor",
    "build_segmentor",
    "evaluate_segmentor",
    "feature_channels",
    "make_data_samples",
    "mmseg_intersect_and_union",
    "segmentor_logits",
]
