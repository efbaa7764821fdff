"""Labelled image sources for few-shot learning (pure torch; no learn2learn needed).

- Omniglot read directly from its zip archives (``images_background_small1.zip``,
``images_background_small2.zip``;
  or the full ``images_background.zip`` / ``images_evaluation.zip``), split **by alphabet** into meta-train,
  meta-validation and meta-test, with the usual rotations (0/90/180/270 degrees) as extra classes.
- The 20 official 20-way one-shot runs (``all_runs.zip``, Lake et al.).
- A generic image folder ``root/<class>/<image>`` (or ``root/{train,val,test}/<class>/<image>``) for users'
data.

Images are ``float32`` in ``[0, 1]``; Omniglot is inverted so strokes are 1 and the background 0.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datanas_core.errors import ConfigError, DataError

__all__ = [
    "FEWSHOT_DATASETS",
    "OMNIGLOT_DEFAULT_SPLIT",
    "OMNIGLOT_ZIPS",
    "FewShotSplits",
    "ImageClassDataset",
    "OneShotRun",
    "load_fewshot_splits",
    "load_image_folder_splits",
    "load_omniglot",
    "load_omniglot_runs",
    "read_omniglot_zip",
    "with_rotations",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`load_fewshot_splits` and the CLIs' ``--data``.
FEWSHOT_DATASETS = ("omniglot", "folder")

#: Archives read by :func:`load_omniglot` by default (those present are used; duplicates are merged).
OMNIGLOT_ZIPS = (
    "images_background.zip",
    "images_evaluation.zip",
    "images_background_small1.zip",
    "images_background_small2.zip",
)

#: Alphabet split of the small background sets (8 distinct alphabets, 242 characters): meta-test Korean +
#: Tagalog (57 characters), meta-validation Early Aramaic (22), meta-train the other five (163).
OMNIGLOT_DEFAULT_SPLIT: Mapping[str, tuple[str, ...]] = {
    "test": ("Korean", "Tagalog"),
    "val": ("Early_Aramaic",),
}

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageClassDataset(Dataset):
    """In-memory labelled images; ``ds[i] -> (image [C, H, W], label)``.

    Args:
        images: ``[N, C, H, W]`` float tensor.
        labels: ``[N]`` int64 class ids.
        class_names: name of each class id (optional).
    """

    def __init__(self, images: Tensor, labels: Tensor, class_names: Sequence[str] | None = None) -> None:
        if images.ndim != 4:
            raise DataError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.class_names = tuple(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return int(self.labels.unique().numel())

    def labels_to_indices(self) -> dict[int, list[int]]:
        """``class id -> sample indices`` (what learn2learn's ``MetaDataset`` would compute by iterating)."""
        out: dict[int, list[int]] = {}
        for i, y in enumerate(self.labels.tolist()):
            out.setdefault(int(y), []).append(i)
        return out

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"ImageClassDataset({len(self)} images, {self.num_classes} classes, shape {shape})"


@dataclass(frozen=True)
class FewShotSplits:
    """Meta-train / meta-validation / meta-test datasets with disjoint classes."""

    train: ImageClassDataset
    val: ImageClassDataset
    test: ImageClassDataset
    info: Mapping[str, object]


@dataclass(frozen=True)
class OneShotRun:
    """One official 20-way one-shot run: one support image per class, 20 query images."""

    name: str
    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor


def _decode(data: bytes, size: int, invert: bool) -> Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("L").resize((size, size), Image.LANCZOS)
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(1, size, size)
    x = t.to(torch.float32) / 255.0
    return 1.0 - x if invert else x


def read_omniglot_zip(path: str | os.PathLike[str], *, image_size: int = 28) -> dict[tuple[str, str], Tensor]:
    """Read every ``alphabet/character/*.png`` of one Omniglot archive.

    Returns:
        ``(alphabet, character) -> [20, 1, S, S]`` images (strokes 1, background 0), in file-name order.

    Raises:
        DataError: the archive is unreadable or contains no character folders.
    """
    out: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                p = PurePosixPath(name)
                if p.suffix.lower() != ".png" or len(p.parts) < 3:
                    continue
                alphabet, character = p.parts[-3], p.parts[-2]
                out.setdefault((alphabet, character), []).append((p.name, zf.read(name)))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read Omniglot archive {str(path)!r}: {exc}") from exc
    if not out:
        raise DataError(f"Omniglot archive {str(path)!r} holds no alphabet/character/*.png files")
    return {
        key: torch.stack([_decode(data, image_size, True) for _, data in sorted(files)])
        for key, files in sorted(out.items())
    }


def with_rotations(
    dataset: ImageClassDataset, rotations: Sequence[int] = (0, 90, 180, 270)
) -> ImageClassDataset:
    """Every rotation of every class becomes a new class: label ``c * R + r`` for rotation index ``r``.

    Raises:
        ConfigError: a rotation that is not a multiple of 90 degrees.
    """
    bad = [r for r in rotations if r % 90]
    if bad or not rotations:
        raise ConfigError(
            f"rotations must be a non-empty list of multiples of 90 degrees, got {list(rotations)}"
        )
    R = len(rotations)
    images = torch.cat([torch.rot90(dataset.images, k=(r // 90) % 4, dims=(2, 3)) for r in rotations])
    labels = torch.cat([dataset.labels * R + i for i in range(R)])
    names = None
    if dataset.class_names is not None:
        names = [f"{c}/rot{r}" for c in dataset.class_names for r in rotations]
    return ImageClassDataset(images, labels, names)


def load_omniglot(
    data_dir: str | os.PathLike[str],
    *,
    image_size: int = 28,
    rotations: Sequence[int] | None = (0, 90, 180, 270),
    split: Mapping[str, Sequence[str]] | None = None,
    archives: Sequence[str] | None = None,
) -> FewShotSplits:
    """Omniglot from its zips in ``data_dir``, split by alphabet.

    Args:
        data_dir: folder holding the archives.
        image_size: side of the resized square images (28 is the usual few-shot size).
        rotations: rotations added as extra classes (``None`` or empty: none), applied per split.
        split: ``{"test": alphabets, "val": alphabets}``; every other alphabet is meta-train.
            Default :data:`OMNIGLOT_DEFAULT_SPLIT`.
        archives: archive file names to read (default: those of :data:`OMNIGLOT_ZIPS` that exist).

    Raises:
        DataError: no archive found, or a split names an alphabet that is not present (listing the valid
        ones).
    """
    root = Path(data_dir)
    names = list(archives) if archives is not None else [n for n in OMNIGLOT_ZIPS if (root / n).is_file()]
    if not names:
        raise DataError(
            f"no Omniglot archive found in {str(root)!r}; expected one of {', '.join(OMNIGLOT_ZIPS)}"
        )
    chars: dict[tuple[str, str], Tensor] = {}
    for n in names:
        p = root / n
        if not p.is_file():
            raise DataError(f"Omniglot archive {str(p)!r} does not exist")
        for key, imgs in read_omniglot_zip(p, image_size=image_size).items():
            chars.setdefault(key, imgs)  # the small sets share Greek and Latin: keep one copy
    alphabets = sorted({a for a, _ in chars})
    split = dict(OMNIGLOT_DEFAULT_SPLIT if split is None else split)
    unknown_keys = sorted(set(split) - {"val", "test"})
    if unknown_keys:
        raise ConfigError(f"split keys must be 'val' and/or 'test', got {unknown_keys}")
    for part, alist in split.items():
        missing = sorted(set(alist) - set(alphabets))
        if missing:
            raise DataError(
                f"{part} alphabets {missing} are not in the archives; "
                f"available alphabets: {', '.join(alphabets)}"
            )
    test_a = set(split.get("test", ()))
    val_a = set(split.get("val", ()))
    if test_a & val_a:
        raise ConfigError(f"alphabets {sorted(test_a & val_a)} are in both the val and test splits")
    groups: dict[str, list[str]] = {
        "train": [a for a in alphabets if a not in test_a | val_a],
        "val": sorted(val_a),
        "test": sorted(test_a),
    }
    datasets: dict[str, ImageClassDataset] = {}
    for part, alist in groups.items():
        keys = [k for k in chars if k[0] in alist]
        if not keys:
            raise DataError(f"the {part} split of Omniglot is empty (alphabets {alist})")
        images = torch.cat([chars[k] for k in keys])
        labels = torch.cat(
            [torch.full((chars[k].shape[0],), i, dtype=torch.int64) for i, k in enumerate(keys)]
        )
        ds = ImageClassDataset(images, labels, [f"{a}/{c}" for a, c in keys])
        datasets[part] = with_rotations(ds, rotations) if rotations else ds
    info = {
        "archives": names,
        "alphabets": {k: v for k, v in groups.items()},
        "characters": {k: sum(1 for c in chars if c[0] in v) for k, v in groups.items()},
        "classes": {k: d.num_classes for k, d in datasets.items()},
        "image_size": image_size,
        "rotations": list(rotations or ()),
    }
    logger.info("Omniglot splits: %s", info["classes"])
    return FewShotSplits(datasets["train"], datasets["val"], datasets["test"], info)


def load_omniglot_runs(data_dir: str | os.PathLike[str], *, image_size: int = 28) -> list[OneShotRun]:
    """The 20 official 20-way one-shot runs from ``all_runs.zip`` in ``data_dir``.

    Each run's ``class_labels.txt`` pairs a test item with its training (support) image; support labels are
    the
    order of the training files, query labels follow the pairs.

    Raises:
        DataError: the archive is missing or a run is inconsistent.
    """
    path = Path(data_dir) / "all_runs.zip"
    if not path.is_file():
        raise DataError(f"{str(path)!r} not found (the 20 official one-shot runs)")
    runs: list[OneShotRun] = []
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        run_ids = sorted({PurePosixPath(n).parts[0] for n in names if n.endswith("class_labels.txt")})
        for run in run_ids:
            text = zf.read(f"{run}/class_labels.txt").decode("utf-8")
            pairs = [line.split() for line in text.splitlines() if line.strip()]
            if not pairs or any(len(p) != 2 for p in pairs):
                raise DataError(
                    f"{run}/class_labels.txt is malformed: expected 'test_item training_item' lines"
                )
            train_files = sorted({t for _, t in pairs})
            index = {t: i for i, t in enumerate(train_files)}

            missing = sorted({m for pair in pairs for m in pair} - names)
            if missing:
                raise DataError(f"{missing[:3]} listed in {run}/class_labels.txt are not in {str(path)!r}")
            sx = torch.stack([_decode(zf.read(t), image_size, True) for t in train_files])
            qx = torch.stack([_decode(zf.read(q), image_size, True) for q, _ in pairs])
            qy = torch.tensor([index[t] for _, t in pairs], dtype=torch.int64)
            runs.append(OneShotRun(run, sx, torch.arange(len(train_files)), qx, qy))
    if not runs:
        raise DataError(f"{str(path)!r} contains no runNN/class_labels.txt")
    return runs


def _folder_dataset(root: Path, size: int, grayscale: bool, invert: bool) -> ImageClassDataset:
    from datanas_fewshot.cluster.data import load_image_folder

    data = load_image_folder(root, size=size, grayscale=grayscale, invert=invert)
    if data.labels is None:
        raise DataError(f"few-shot image folder {str(root)!r} needs one sub-folder per class")
    return ImageClassDataset(data.images, data.labels, data.classes)


def load_image_folder_splits(
    root: str | os.PathLike[str],
    *,
    image_size: int = 28,
    grayscale: bool = True,
    invert: bool = False,
    fractions: tuple[float, float] = (0.16, 0.2),
    seed: int = 0,
) -> FewShotSplits:
    """A user's image folder as few-shot splits.

    ``root/{train,val,test}/<class>/<image>`` is used as given; otherwise ``root/<class>/<image>`` classes are
    split at random (seeded) into meta-train / val / test with ``fractions = (val, test)`` of the classes.

    Raises:
        DataError: the folder is missing, or too few classes for the split.
    """
    root = Path(root)
    if all((root / p).is_dir() for p in ("train", "val", "test")):
        parts = {
            p: _folder_dataset(root / p, image_size, grayscale, invert) for p in ("train", "val", "test")
        }
        return FewShotSplits(
            parts["train"], parts["val"], parts["test"], {"root": str(root), "split": "folders"}
        )
    full = _folder_dataset(root, image_size, grayscale, invert)
    n = full.num_classes
    n_val, n_test = (max(1, int(round(n * f))) for f in fractions)
    if n - n_val - n_test < 1:
        raise DataError(f"{n} classes in {str(root)!r} are too few for a train/val/test class split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    groups = {"val": perm[:n_val], "test": perm[n_val : n_val + n_test], "train": perm[n_val + n_test :]}
    parts = {}
    for p, cls in groups.items():
        mask = torch.isin(full.labels, torch.tensor(cls))
        idx = mask.nonzero().flatten()
        # relabel 0..len(cls)-1 inside each split
        remap = {c: i for i, c in enumerate(sorted(cls))}
        labels = torch.tensor([remap[int(y)] for y in full.labels[idx]], dtype=torch.int64)
        names = [full.class_names[c] for c in sorted(cls)] if full.class_names else None
        parts[p] = ImageClassDataset(full.images[idx], labels, names)
    return FewShotSplits(
        parts["train"], parts["val"], parts["test"], {"root": str(root), "split": "random", "seed": seed}
    )


def load_fewshot_splits(
    name: str, data_dir: str | os.PathLike[str], *, image_size: int = 28, rotations: bool = True
) -> FewShotSplits:
    """Load a few-shot dataset by name (see :data:`FEWSHOT_DATASETS`).

    Raises:
        ConfigError: unknown name (listing the valid ones).
    """
    if name == "omniglot":
        return load_omniglot(
            data_dir, image_size=image_size, rotations=(0, 90, 180, 270) if rotations else None
        )
    if name == "folder":
        return load_image_folder_splits(data_dir, image_size=image_size)
    raise ConfigError(f"unknown few-shot dataset {name!r}; valid datasets: {', '.join(FEWSHOT_DATASETS)}")
