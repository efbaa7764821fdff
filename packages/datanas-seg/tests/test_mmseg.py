"""mmseg integration: registry, EncoderDecoder loss/predict with mmseg heads, the search segmentor, mIoU."""

from __future__ import annotations

import ast
import sys

import pytest

pytest.importorskip("mmseg", reason="needs the mmseg extra: pip install 'datanas-seg[mmseg]'")

import torch  # noqa: E402

import datanas_seg.mmseg as dsm  # noqa: E402
from datanas_core.distribution import ArchitectureDistribution  # noqa: E402
from datanas_core.errors import ConfigError  # noqa: E402
from datanas_seg import SegDartsSpace, feature_channels, intersect_and_union  # noqa: E402
from datanas_seg._mmcv_compat import EXT_MODULE, has_compiled_mmcv_ops, is_placeholder  # noqa: E402

pytestmark = [pytest.mark.mmseg, pytest.mark.filterwarnings("ignore:``build_loss``:UserWarning")]

EXPECTED_ALL = [
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


def batch(n: int = 2, c: int = 3, size: int = 32, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, size, size, generator=g), torch.randint(0, classes, (n, size, size), generator=g)


def test_all_is_pinned() -> None:
    assert sorted(dsm.__all__) == sorted(EXPECTED_ALL)


def test_placeholder_only_without_compiled_ops() -> None:
    ext = sys.modules.get(EXT_MODULE)
    if has_compiled_mmcv_ops():
        assert ext is None or not is_placeholder(ext)
    else:  # mmcv-lite: mmseg imported thanks to the placeholder
        assert ext is not None and is_placeholder(ext)
        from mmcv.utils.ext_loader import check_ops_exist

        assert check_ops_exist() is False  # mmcv's own probe (used by mmengine's collect_env) still works


def test_registry_builds_backbone_from_config_dict(darts_genotype) -> None:
    from mmseg.registry import MODELS

    cfg = {"type": "DataNASBackbone", "genotype": darts_genotype.to_dict(), "C": 4, "out_indices": (0, 1, 2)}
    bb = MODELS.build(cfg)
    assert isinstance(bb, dsm.MMSegDataNASBackbone)
    feats = bb(torch.randn(1, 3, 32, 32))
    assert isinstance(feats, tuple) and tuple(f.shape[1] for f in feats) == feature_channels(
        darts_genotype, 4
    )
    assert bb.out_channels == feature_channels(darts_genotype, 4)
    assert MODELS.get("DataNASSupernetBackbone") is dsm.MMSegDataNASSupernet


@pytest.mark.parametrize("head", ["ASPPHead", "DepthwiseSeparableASPPHead", "FCNHead", "PSPHead"])
def test_encoder_decoder_loss_and_predict(head: str, data_genotype) -> None:
    torch.manual_seed(0)
    model = dsm.build_derived_segmentor(
        data_genotype, 3, C=4, decode_head=head, head_channels=8, auxiliary=head == "ASPPHead"
    )
    x, y = batch(classes=3)
    y[0, :4, :4] = 255  # ignored pixels
    losses = model(x, dsm.make_data_samples(y), mode="loss")
    assert "decode.loss_ce" in losses
    assert ("aux.loss_ce" in losses) == (head == "ASPPHead")
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert model.backbone.net.stem[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        preds = model.predict(x, dsm.make_data_samples(y))
    assert len(preds) == 2
    assert tuple(preds[0].pred_sem_seg.data.shape) == (1, 32, 32)
    assert int(preds[0].pred_sem_seg.data.max()) < 3
    logits = dsm.segmentor_logits(model, x)
    assert tuple(logits.shape) == (2, 3, 32, 32)


def test_norm_eval_and_frozen_stages(darts_genotype) -> None:
    bb = dsm.MMSegDataNASBackbone(darts_genotype, C=4, frozen_stages=1, norm_eval=True)
    bb.train()
    assert not any(p.requires_grad for p in bb.net.stem.parameters())
    assert not any(p.requires_grad for p in bb.net.cells[0].parameters())  # stage 0
    assert all(p.requires_grad for p in bb.net.cells[1].parameters())  # stage 1 reduction cell
    bns = [m for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    with pytest.raises(ConfigError, match="frozen_stages"):
        dsm.MMSegDataNASBackbone(darts_genotype, C=4, frozen_stages=7)
    with pytest.raises(ConfigError, match="norm_cfg"):
        dsm.MMSegDataNASBackbone(darts_genotype, C=4, norm_cfg={"type": "GN"})


def test_search_loss_goes_through_mmseg_and_reaches_the_distribution() -> None:
    torch.manual_seed(0)
    space = SegDartsSpace(ops=("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    model = dsm.build_search_segmentor(space, 2, C=4, head_channels=8, auxiliary=True)
    dist = ArchitectureDistribution(space, estimator={"type": "egs", "samples": 2})
    arch = dist.sample(generator=torch.Generator().manual_seed(0))
    task = dsm.MMSegSearchTask(2)
    loss, logs = task.loss(model, batch(), arch)
    assert 0.0 <= logs["acc"] <= 1.0
    params = [p for p in dist.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    assert any(g.abs().sum() > 0 for g in grads)
    # the architecture reference is dropped after the call and never stored as module state
    assert model.backbone.arch is None
    assert not any(isinstance(v, torch.Tensor) and v.requires_grad for v in model.state_dict().values())
    with pytest.raises(ConfigError, match="use_arch"):
        model(batch()[0], None, mode="tensor")
    metrics = task.metrics(model, batch(), arch)
    assert 0.0 <= metrics["mIoU"] <= 1.0


def test_mmseg_and_torch_areas_agree() -> None:
    g = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 4, (17, 13), generator=g)
    label = torch.randint(0, 4, (17, 13), generator=g)
    label[:3] = 255
    ours = intersect_and_union(pred, label, 4, 255)
    theirs = dsm.mmseg_intersect_and_union(pred, label, 4, 255)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a.double(), b.double())


def test_evaluate_segmentor_uses_whole_loader(data_genotype) -> None:
    model = dsm.build_derived_segmentor(data_genotype, 2, C=4, head_channels=8)
    res = dsm.evaluate_segmentor(model, [batch(1), batch(1)], 2)
    assert {"mIoU", "mAcc", "aAcc", "IoU.0", "IoU.1"} <= set(res)
    assert model.training  # restored


def test_slide_inference_matches_the_pure_torch_tiling(data_genotype) -> None:
    from datanas_seg.task import sliding_window_logits

    torch.manual_seed(0)
    model = dsm.build_derived_segmentor(data_genotype, 2, C=4, head_channels=8).eval()
    x = batch(1, size=40)[0]
    with torch.no_grad():
        ours = sliding_window_logits(lambda t: dsm.segmentor_logits(model, t), x, 32, 16)
        theirs = dsm.segmentor_logits(model, x, crop_size=32, stride=16)  # mmseg's slide_inference
        whole = dsm.segmentor_logits(model, x)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(theirs, whole, atol=1e-4)
    assert model.test_cfg.mode == "whole"  # restored after the call


def test_exported_config_inherits_an_mmseg_dataset_base(tmp_path, darts_genotype):
    """dataset_base: the written config inherits mmseg's own Cityscapes pipelines/loaders/evaluators and its
    model builds and runs; the segfolder parts are not written."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from datanas_seg import export_mmseg_config

    path = export_mmseg_config(
        darts_genotype,
        tmp_path / "cityscapes_cfg.py",
        num_classes=19,
        C=4,
        crop_size=(512, 1024),
        dataset_base="mmseg::_base_/datasets/cityscapes.py",
    )
    text = path.read_text()
    base_line = next(line for line in text.splitlines() if line.startswith("_base_ = "))
    # portable: the mmseg:: name, not a path into this machine's site-packages
    assert ast.literal_eval(base_line.split("=", 1)[1].strip()) == ["mmseg::_base_/datasets/cityscapes.py"]
    assert "site-packages" not in text
    assert "train_dataloader" not in text and "BaseSegDataset" not in text
    import datanas_seg.mmseg  # noqa: F401  (resolves mmseg:: names without pkg_resources)

    cfg = Config.fromfile(str(path))
    assert cfg.train_dataloader.dataset.type == "CityscapesDataset"
    assert cfg.val_evaluator.type == "IoUMetric"
    assert cfg.model.decode_head.num_classes == 19
    assert cfg.model.data_preprocessor["size"] == (512, 1024)
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), mode="tensor")
    assert out.shape[:2] == (1, 19)


def test_dataset_base_must_name_a_python_config(tmp_path, darts_genotype):
    from datanas_seg import export_mmseg_config

    with pytest.raises(
        ConfigError, match="dataset_base must name an mmseg dataset config file ending in .py"
    ):
        export_mmseg_config(darts_genotype, tmp_path / "c.py", dataset_base="cityscapes")
    with pytest.raises(ConfigError, match="is not among mmseg's bundled configs"):
        export_mmseg_config(darts_genotype, tmp_path / "c.py", dataset_base="mmseg::_base_/datasets/nope.py")
