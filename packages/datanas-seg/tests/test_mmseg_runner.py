"""The exported config trains under mmengine's Runner (tiny sizes, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmseg", reason="needs the mmseg extra: pip install 'datanas-seg[mmseg]'")

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from datanas_seg import export_mmseg_config, load_segfolder  # noqa: E402

# ~10-20 s (Runner start-up): deselected by default, run with `-m slow` or `-m mmseg`.
pytestmark = [pytest.mark.mmseg, pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_exported_config_trains_and_validates_under_runner(tmp_path: Path, segfolder, data_genotype) -> None:
    data = load_segfolder(segfolder)
    cfg_path = export_mmseg_config(
        data_genotype,
        tmp_path / "datanas_cfg.py",
        decode_head="ASPPHead",
        num_classes=data.num_classes,
        C=4,
        head_channels=8,
        auxiliary=True,
        head_options={"dilations": (1, 2)},
        data_root=segfolder,
        splits={"train": data.names[:4], "val": data.names[4:]},
        crop_size=(16, 16),
        batch_size=2,
        max_iters=3,
        val_interval=3,
        log_interval=1,
    )
    cfg = Config.fromfile(str(cfg_path))
    cfg.work_dir = str(tmp_path / "work")
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items() if v.is_floating_point()}
    model = runner.train()
    assert type(model.backbone).__name__ == "MMSegDataNASBackbone"
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert runner.iter == 3
    assert (tmp_path / "work" / "iter_3.pth").is_file()
    metrics = runner.val_loop.run()
    assert 0.0 <= metrics["mIoU"] <= 100.0
