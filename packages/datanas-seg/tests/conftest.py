"""Fixtures of the datanas-seg tests: tiny genotypes, generated image folders, the shared ISBI-2012 zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datanas_core.genotype import CellGenotype, EdgeChoice, Genotype

#: ``<repo_root>/../shared/data`` (the real datasets, when this checkout has them).
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def darts_like() -> Genotype:
    """Two inputs per node, DARTS style."""
    pairs = [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 0), ("max_pool_3x3", 2)]
    pairs += [("sep_conv_5x5", 1), ("avg_pool_3x3", 3), ("dil_conv_5x5", 2), ("skip_connect", 4)]
    return Genotype.from_pairs("seg.darts", {ct: (pairs, [2, 3, 4, 5]) for ct in ("normal", "reduce")})


def data_like() -> Genotype:
    """One input for some nodes, two ops on one edge, a 2-node concat (DATA-style derivation)."""
    normal = CellGenotype(
        (
            EdgeChoice(0, 2, "sep_conv_3x3"),
            EdgeChoice(0, 2, "skip_connect"),
            EdgeChoice(1, 3, "dil_conv_3x3"),
            EdgeChoice(2, 4, "avg_pool_3x3"),
            EdgeChoice(3, 5, "sep_conv_5x5"),
            EdgeChoice(4, 5, "skip_connect"),
        ),
        (4, 5),
    )
    reduce = CellGenotype(
        (
            EdgeChoice(0, 2, "max_pool_3x3"),
            EdgeChoice(1, 3, "sep_conv_3x3"),
            EdgeChoice(2, 4, "skip_connect"),
            EdgeChoice(1, 5, "dil_conv_5x5"),
        ),
        (2, 3, 4, 5),
    )
    return Genotype("seg.darts", {"normal": normal, "reduce": reduce})


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_segfolder(
    root: Path, *, n: int = 6, size: int = 24, num_classes: int = 2, rgb: bool = True, seed: int = 0
) -> Path:
    """``n`` random images with blob masks of ``num_classes`` classes in ``root/images``, ``root/masks``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for c in range(1, num_classes):
            y, x = rng.integers(0, size - 8, 2)
            mask[y : y + 8, x : x + 8] = c
        base = (mask * (200 // max(num_classes - 1, 1))).astype(np.uint8)
        noise = rng.integers(0, 40, (size, size), dtype=np.uint8)
        img = np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8)
        if rgb:
            img = np.stack([img, img, 255 - img], axis=-1)
        write_png(root / "images" / f"im{i}.png", img)
        write_png(root / "masks" / f"im{i}.png", mask)
    return root


def make_isbi_zip(
    path: Path, *, n: int = 4, size: int = 16, label_values: tuple[int, ...] = (0, 255)
) -> Path:
    """A zip with the ISBI-2012 layout (``data/membrane/train/{image,label}/N.png``)."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            for sub, arr in (
                ("image", rng.integers(0, 256, (size, size), dtype=np.uint8)),
                ("label", rng.choice(np.array(label_values, np.uint8), (size, size))),
            ):
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG")
                zf.writestr(f"data/membrane/train/{sub}/{i}.png", buf.getvalue())
    return path


@pytest.fixture
def segfolder(tmp_path: Path) -> Path:
    return make_segfolder(tmp_path / "segfolder")


@pytest.fixture
def isbi_dir() -> Path:
    if not (SHARED_DATA / "isbi2012" / "membrane_train.zip").is_file():
        pytest.skip(f"the shared ISBI-2012 zip is not present under {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def darts_genotype() -> Genotype:
    return darts_like()


@pytest.fixture
def data_genotype() -> Genotype:
    return data_like()


@pytest.fixture
def segfolder_factory():  # noqa: ANN201 - returns the helper
    return make_segfolder


@pytest.fixture
def isbi_zip_factory():  # noqa: ANN201 - returns the helper
    return make_isbi_zip


@pytest.fixture
def png_writer():  # noqa: ANN201 - returns the helper
    return write_png
