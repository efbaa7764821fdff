"""Fixtures for datanas-vision tests: generated image trees, zips and the shared real data."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared real datasets (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def _png_bytes(seed: int, size: tuple[int, int] = (12, 12), mode: str = "RGB") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _make_tree(
    root: Path, splits: dict[str, dict[str, int]], *, size: tuple[int, int] = (12, 12), mode: str = "RGB"
) -> Path:
    """Write ``root/<split>/<class>/<i>.png`` (split ``""`` means classes at the root)."""
    seed = 0
    for split, classes in splits.items():
        for cls, count in classes.items():
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"{i:03d}.png").write_bytes(_png_bytes(seed, size, mode))
                seed += 1
    return root


def _zip_tree(src: Path, dest: Path) -> Path:
    """Zip a folder tree (with directory entries, as common zip tools write them)."""
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            arc = p.relative_to(src).as_posix()
            if p.is_dir():
                zf.writestr(arc + "/", b"")
            else:
                zf.write(p, arc)
    return dest


@pytest.fixture
def png_bytes():
    """``png_bytes(seed, size=(12, 12), mode="RGB") -> bytes`` of a random PNG."""
    return _png_bytes


@pytest.fixture
def make_tree():
    """``make_tree(root, {split: {class: count}}, size=..., mode=...)`` writes a class-per-folder tree."""
    return _make_tree


@pytest.fixture
def zip_tree():
    """``zip_tree(src_dir, dest_zip)`` zips a folder tree."""
    return _zip_tree
