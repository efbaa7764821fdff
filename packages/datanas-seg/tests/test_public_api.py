"""The public API is pinned, ``import datanas_seg`` stays light, and the mmseg extra fails clearly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import datanas_seg

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


def test_import_does_not_import_mmseg() -> None:
    proc = _run(
        """
        import sys
        import datanas_seg, datanas_seg.search, datanas_seg.train, datanas_seg.export
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmengine', 'mmcv'))
        print(heavy)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_mmseg_extra_missing_raises_missing_dependency() -> None:
    proc = _run(
        """
        import sys
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
    assert proc.stdout.startswith("MDE")
    assert 'pip install "datanas-seg[mmseg]"' in proc.stdout
    assert "mmseg" in proc.stdout


def test_space_is_found_by_name() -> None:
    from datanas_core.plugins import get_space

    space = get_space("seg.darts")
    assert isinstance(space, datanas_seg.SegDartsSpace)
