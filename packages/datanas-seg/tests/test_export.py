"""mmseg config dictionaries and the exported config file (no mmseg needed to write them)."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest

from datanas_core.errors import ConfigError, GenotypeError
from datanas_seg import (
    DECODE_HEADS,
    auxiliary_head_config,
    backbone_config,
    bundled_genotypes,
    decode_head_config,
    export_mmseg_config,
    feature_channels,
    resolve_genotype,
)


@pytest.mark.parametrize("head", DECODE_HEADS)
def test_decode_head_inputs(head: str) -> None:
    chans = (16, 32, 64)
    cfg = decode_head_config(head, chans, 3, channels=8)
    assert cfg["type"] == head and cfg["num_classes"] == 3 and cfg["channels"] == 8
    if head == "DepthwiseSeparableASPPHead":
        assert cfg["in_channels"] == 64 and cfg["in_index"] == 2
        assert cfg["c1_in_channels"] == 16
    else:
        assert cfg["in_channels"] == [16, 32, 64] and cfg["in_index"] == [0, 1, 2]
        assert cfg["input_transform"] == "resize_concat"
        last = decode_head_config(head, chans, 3, head_inputs="last")
        assert last["in_channels"] == 64 and last["in_index"] == 2 and "input_transform" not in last


def test_head_errors_list_valid_names() -> None:
    with pytest.raises(ConfigError, match="ASPPHead, DepthwiseSeparableASPPHead, FCNHead, PSPHead"):
        decode_head_config("UPerHead", (8,), 2)
    with pytest.raises(ConfigError, match="concat, last"):
        decode_head_config("ASPPHead", (8,), 2, head_inputs="all")
    with pytest.raises(ConfigError, match="in_index"):
        auxiliary_head_config((8, 16), 2, in_index=5)
    aux = auxiliary_head_config((8, 16, 32), 2)
    assert aux["type"] == "FCNHead" and aux["in_index"] == 1 and aux["in_channels"] == 16


def test_backbone_config_inlines_the_genotype(data_genotype) -> None:
    cfg = backbone_config(data_genotype, C=4)
    assert cfg["type"] == "DataNASBackbone" and cfg["out_indices"] == (0, 1, 2)
    assert resolve_genotype(cfg["genotype"]) == data_genotype


def test_export_writes_a_python_config(tmp_path: Path, darts_genotype) -> None:
    splits = {"train": ["a", "b"], "val": ["c"]}
    path = export_mmseg_config(
        darts_genotype,
        tmp_path / "cfg.py",
        decode_head="PSPHead",
        num_classes=3,
        C=4,
        auxiliary=True,
        data_root=tmp_path / "data",
        splits=splits,
        crop_size=(32, 32),
        max_iters=7,
    )
    ast.parse(path.read_text())
    ns = runpy.run_path(str(path))
    assert ns["custom_imports"] == {"imports": ["datanas_seg.mmseg"], "allow_failed_imports": False}
    assert ns["default_scope"] == "mmseg"
    model = ns["model"]
    assert model["backbone"]["type"] == "DataNASBackbone"
    assert resolve_genotype(model["backbone"]["genotype"]) == darts_genotype
    assert model["decode_head"]["type"] == "PSPHead"
    assert model["decode_head"]["in_channels"] == list(feature_channels(darts_genotype, 4))
    assert model["auxiliary_head"]["type"] == "FCNHead"
    assert ns["train_cfg"]["max_iters"] == 7
    assert model["test_cfg"] == {"mode": "slide", "crop_size": (32, 32), "stride": (24, 24)}
    assert ns["train_dataloader"]["dataset"]["pipeline"] is ns["train_pipeline"]
    assert ns["train_dataloader"]["dataset"]["metainfo"]["classes"] == ("class0", "class1", "class2")
    train_ann = Path(ns["train_dataloader"]["dataset"]["ann_file"])
    assert train_ann.read_text().split() == ["a", "b"]
    # no test split given: the test loader falls back to the validation list
    assert ns["test_dataloader"]["dataset"]["ann_file"] == ns["val_dataloader"]["dataset"]["ann_file"]


def _ann(ns: dict, split: str) -> list[str]:
    return Path(ns[f"{split}_dataloader"]["dataset"]["ann_file"]).read_text().split()


def test_export_always_holds_out_validation_images(tmp_path: Path, darts_genotype, caplog) -> None:
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    stems = [f"img{i}" for i in range(10)]
    for stem in stems:
        (images / f"{stem}.png").write_bytes(b"")
    # no splits: 20 % of the images under data_root/images become the validation (and test) split
    ns = runpy.run_path(
        str(export_mmseg_config(darts_genotype, tmp_path / "a.py", data_root=tmp_path / "data"))
    )
    assert ns["train_dataloader"]["dataset"]["data_root"] == str((tmp_path / "data").resolve())
    train, val = _ann(ns, "train"), _ann(ns, "val")
    assert len(val) == 2 and sorted(train + val) == stems and not set(train) & set(val)
    assert _ann(ns, "test") == val
    # splits without val: the validation images come out of the training list
    ns = runpy.run_path(
        str(
            export_mmseg_config(
                darts_genotype, tmp_path / "b.py", data_root=tmp_path, splits={"train": stems}
            )
        )
    )
    assert len(_ann(ns, "val")) == 2 and len(_ann(ns, "train")) == 8
    # the user forcing train = val is kept, with a warning
    caplog.set_level("WARNING", logger="datanas_seg.export")
    both = {"train": stems, "val": stems[:3]}
    ns = runpy.run_path(
        str(export_mmseg_config(darts_genotype, tmp_path / "c.py", data_root=tmp_path, splits=both))
    )
    assert (
        _ann(ns, "val") == stems[:3]
        and "3 of the 3 validation images are also training images" in caplog.text
    )
    # nothing to split: a warning that says what to pass
    caplog.clear()
    export_mmseg_config(darts_genotype, tmp_path / "d.py")
    assert "no validation split" in caplog.text and "no data_root" in caplog.text


def test_export_validates_arguments(tmp_path: Path, darts_genotype) -> None:
    with pytest.raises(ConfigError, match="class names"):
        export_mmseg_config(darts_genotype, tmp_path / "c.py", num_classes=2, class_names=["a"])
    with pytest.raises(ConfigError, match="valid splits"):
        export_mmseg_config(darts_genotype, tmp_path / "c.py", splits={"holdout": ["a"]})
    with pytest.raises(ConfigError, match="valid decode heads"):
        export_mmseg_config(darts_genotype, tmp_path / "c.py", decode_head="Nope")


def test_genotype_references(tmp_path: Path, darts_genotype) -> None:
    p = darts_genotype.save(tmp_path / "g.json")
    assert resolve_genotype(str(p)) == darts_genotype
    assert resolve_genotype(darts_genotype.to_dict()) == darts_genotype
    for name in bundled_genotypes():
        resolve_genotype(name)
    with pytest.raises(GenotypeError, match="bundled genotypes"):
        resolve_genotype("no-such-genotype")
    run = tmp_path / "run"  # a search run directory stands for its genotype.json
    run.mkdir()
    darts_genotype.save(run / "genotype.json")
    (run / "config.json").write_text("{}")
    assert resolve_genotype(str(run)) == darts_genotype
    (run / "config.json").unlink()
    with pytest.raises(GenotypeError, match="search run directory"):
        resolve_genotype(str(run))


def test_class_weights_reach_both_losses() -> None:
    from datanas_seg import mmseg_model_config

    cfg = mmseg_model_config(
        {"type": "DataNASBackbone"}, (8, 16, 32), 2, auxiliary=True, class_weight=[2.0, 0.5]
    )
    assert cfg["decode_head"]["loss_decode"]["class_weight"] == [2.0, 0.5]
    assert cfg["auxiliary_head"]["loss_decode"]["class_weight"] == [2.0, 0.5]
    assert "class_weight" not in decode_head_config("FCNHead", (8,), 2)["loss_decode"]
    with pytest.raises(ConfigError, match="class_weight needs 2"):
        decode_head_config("FCNHead", (8,), 2, class_weight=[1.0])
