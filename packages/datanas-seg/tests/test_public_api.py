"""The public API is pinned, ``import datanas_seg`` stays light, and the mmseg extra fails clearly."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import datanas_seg
from datanas_core.errors import MissingDependencyError

EXPECTED = [
    "DATASETS",
    "DECODE_HEADS",
    "SEG_SPACE_NAME",
    "CropLoader",
    "DataNASBackbone",
    "EvalImageDataset",
    "IoUAccumulator",
    "RandomCropDataset",
    "SegDartsSpace",
    "SegImages",
    "SegModel",
    "SegSearchTask",
    "SegSupernetBackbone",
    "SimpleSegHead",
    "TrainSettings",
    "auxiliary_head_config",
    "backbone_config",
    "bundled_genotypes",
    "decode_head_config",
    "evaluate_segmentation",
    "export_mmseg_config",
    "feature_channels",
    "intersect_and_union",
    "load_dataset",
    "load_isbi2012",
    "load_segfolder",
    "median_frequency_weights",
    "mmseg_model_config",
    "param_matched_random_genotypes",
    "random_genotype",
    "resolve_genotype",
    "split_by_image",
    "supernet_feature_channels",
    "train_model",
    "write_segfolder",
]


def test_all_is_pinned() -> None:
    assert sorted(datanas_seg.__all__) == sorted(EXPECTED)
    for name in datanas_seg.__all__:
        assert hasattr(datanas_seg, name), name


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow  # a fresh interpreter (~10-20 s on a busy machine); the fast checks below cover the same
def test_import_is_light_and_mmseg_extra_fails_clearly() -> None:
    # one interpreter for both checks (start-up dominates): first the plain imports, then the mmseg module
    # with mmsegmentation made unimportable
    proc = _run(
        """
        import sys
        import datanas_seg, datanas_seg.search, datanas_seg.train, datanas_seg.compare, datanas_seg.export
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmengine', 'mmcv'))
        print('HEAVY', heavy)
        sys.modules['mmseg'] = None  # simulates an environment without mmsegmentation
        from datanas_core.errors import MissingDependencyError
        try:
            import datanas_seg.mmseg
        except MissingDependencyError as exc:
            assert isinstance(exc, ImportError)
            print('MDE', exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "HEAVY []"
    assert lines[1].startswith("MDE")
    assert 'pip install "datanas-seg[mmseg]"' in lines[1] and "mmseg" in lines[1]


def test_space_is_found_by_name() -> None:
    from datanas_core.plugins import get_space

    space = get_space("seg.darts")
    assert isinstance(space, datanas_seg.SegDartsSpace)


def test_no_module_level_import_of_the_host_stack_outside_the_mmseg_subpackage() -> None:
    root = Path(datanas_seg.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "mmseg" in path.relative_to(root).parts[:1]:
            continue
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports in functions are fine
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("mmseg", "mmengine", "mmcv")
            ]
    assert offenders == []


def test_mmseg_module_without_mmseg_raises_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [m for m in sys.modules if m == "datanas_seg.mmseg" or m.startswith("datanas_seg.mmseg.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mmseg", None)  # find_spec("mmseg") -> None, import mmseg -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "datanas-seg\[mmseg\]"') as info:
        importlib.import_module("datanas_seg.mmseg")
    assert isinstance(info.value, ImportError) and "mmseg" in str(info.value)
