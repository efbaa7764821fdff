"""Data loading, validation errors, splits and crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datanas_core.errors import ConfigError, DataError
from datanas_seg import (
    CropLoader,
    EvalImageDataset,
    RandomCropDataset,
    load_dataset,
    load_isbi2012,
    load_segfolder,
    median_frequency_weights,
    split_by_image,
    write_segfolder,
)


def test_segfolder_loads_images_and_masks(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    assert len(data) == 6 and data.num_classes == 2 and data.in_channels == 3
    assert data.names == [f"im{i}" for i in range(6)]
    for img, mask in zip(data.images, data.masks, strict=True):
        assert img.dtype == torch.uint8 and img.shape == (3, 24, 24)
        assert mask.dtype == torch.int64 and mask.shape == (24, 24)
        assert set(mask.unique().tolist()) <= {0, 1}


def test_mask_with_unexpected_values_names_file_and_valid_range(segfolder: Path, png_writer) -> None:
    bad = np.zeros((24, 24), np.uint8)
    bad[0, 0] = 7
    png_writer(segfolder / "masks" / "im3.png", bad)
    with pytest.raises(DataError) as info:
        load_segfolder(segfolder, num_classes=2)
    msg = str(info.value)
    assert "im3.png" in msg and "[7]" in msg and "0..1" in msg and "ignore_index 255" in msg
    # the ignore index itself is allowed
    bad[0, 0] = 255
    png_writer(segfolder / "masks" / "im3.png", bad)
    assert load_segfolder(segfolder, num_classes=2).num_classes == 2


def test_mask_size_mismatch_is_a_clear_error(segfolder: Path, png_writer) -> None:
    png_writer(segfolder / "masks" / "im2.png", np.zeros((20, 24), np.uint8))
    with pytest.raises(DataError, match=r"24x24 \(WxH\) but its mask is 24x20"):
        load_segfolder(segfolder)


def test_colour_mask_and_missing_mask(segfolder: Path, png_writer) -> None:
    png_writer(segfolder / "masks" / "im1.png", np.zeros((24, 24, 3), np.uint8))
    with pytest.raises(DataError, match="single-channel"):
        load_segfolder(segfolder)
    (segfolder / "masks" / "im1.png").unlink()
    with pytest.raises(DataError, match="has no mask"):
        load_segfolder(segfolder)


def test_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="images/"):
        load_segfolder(tmp_path)
    with pytest.raises(ConfigError, match="valid datasets: isbi2012, segfolder"):
        load_dataset("voc", tmp_path)


def test_num_classes_inferred(segfolder_factory, tmp_path: Path) -> None:
    root = segfolder_factory(tmp_path / "three", num_classes=3, rgb=False)
    data = load_segfolder(root)
    assert data.num_classes == 3 and data.in_channels == 1


def test_isbi_zip_layout_and_label_mapping(tmp_path: Path, isbi_zip_factory) -> None:
    isbi_zip_factory(tmp_path / "isbi2012" / "membrane_train.zip", n=3, size=16)
    data = load_isbi2012(tmp_path)
    assert len(data) == 3 and data.num_classes == 2 and data.class_names == ("membrane", "cell")
    assert data.names == ["0", "1", "2"]
    assert set(torch.cat([m.flatten() for m in data.masks]).unique().tolist()) == {0, 1}


def test_isbi_unexpected_label_values(tmp_path: Path, isbi_zip_factory) -> None:
    isbi_zip_factory(tmp_path / "membrane_train.zip", n=2, label_values=(0, 128, 255))
    with pytest.raises(DataError, match=r"\[128\].*expected only 0 \(membrane\) and 255"):
        load_isbi2012(tmp_path)


def test_isbi_not_found_lists_places(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="membrane_train.zip"):
        load_isbi2012(tmp_path)


@pytest.mark.data
def test_real_isbi2012(isbi_dir: Path) -> None:
    data = load_isbi2012(isbi_dir)
    assert len(data) == 30 and data.in_channels == 1
    assert all(tuple(m.shape) == (512, 512) for m in data.masks)
    share = float(torch.stack(data.masks).float().mean())
    assert 0.7 < share < 0.85  # ~78% cell interior


def test_split_by_image_is_a_seeded_partition() -> None:
    tr, va, te = split_by_image(30, seed=3)
    assert (len(tr), len(va), len(te)) == (18, 6, 6)
    assert sorted(tr + va + te) == list(range(30))
    assert split_by_image(30, seed=3) == (tr, va, te)
    assert split_by_image(30, seed=4) != (tr, va, te)
    assert [len(p) for p in split_by_image(3)] == [1, 1, 1]
    with pytest.raises(ConfigError):
        split_by_image(2)
    with pytest.raises(ConfigError):
        split_by_image(10, (0.5, 0.5))


def test_random_crops_are_reproducible_and_change_per_epoch(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    ds = RandomCropDataset(data, 16, 8, seed=1)
    x0, y0 = ds[3]
    assert x0.shape == (3, 16, 16) and x0.dtype == torch.float32 and y0.shape == (16, 16)
    again = RandomCropDataset(data, 16, 8, seed=1)[3]
    assert torch.equal(x0, again[0]) and torch.equal(y0, again[1])
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], x0)


def test_crops_pad_small_images_with_ignore(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    x, y = RandomCropDataset(data, 40, 2, seed=0, flip=False)[0]
    assert x.shape == (3, 40, 40)
    assert bool((y[24:, :] == 255).all()) and bool((y[:, 24:] == 255).all())


def test_crop_loader_draws_new_crops_each_epoch(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    loader = CropLoader(RandomCropDataset(data, 16, 4, seed=0), 4, seed=0)
    e0 = next(iter(loader))[0]
    e1 = next(iter(loader))[0]
    assert not torch.equal(e0, e1)
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], e0)


def test_eval_dataset_pads_to_divisor(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    x, y = EvalImageDataset(data, size_divisor=16)[0]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    assert bool((y[24:] == 255).all()) and torch.equal(y[:24, :24], data.masks[0])


def test_write_segfolder_round_trip(segfolder: Path, tmp_path: Path) -> None:
    data = load_segfolder(segfolder)
    copy = load_segfolder(write_segfolder(data, tmp_path / "copy"))
    assert copy.names == data.names
    assert all(torch.equal(a, b) for a, b in zip(copy.images, data.images, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(copy.masks, data.masks, strict=True))


def test_median_frequency_weights(segfolder: Path) -> None:
    data = load_segfolder(segfolder)
    data.masks = [torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 0, 255, 255]])]
    data.num_classes = 3
    w = median_frequency_weights(data)
    # frequencies 5/6 and 1/6 (the ignored pixels do not count), median 1/2; class 2 absent -> 0
    assert w == pytest.approx([0.5 / (5 / 6), 0.5 / (1 / 6), 0.0])
    data.masks = [torch.full((2, 2), 255)]
    with pytest.raises(DataError, match="no labelled pixels"):
        median_frequency_weights(data)
