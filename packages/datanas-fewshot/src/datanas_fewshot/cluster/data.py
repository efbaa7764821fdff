"""Unlabelled image collections for clustering: MNIST test set, scikit-learn digits, image folders.

Loaders return a :class:`ClusteringData` whose ``images`` feed search and training and whose ``labels`` (when
the
source has them) are kept for evaluation only. The pipeline functions in
:mod:`datanas_fewshot.cluster.pipeline`
hand only ``images`` to the search and training loops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datanas_core.errors import ConfigError, DataError

__all__ = [
    "CLUSTER_DATASETS",
    "ClusteringData",
    "load_clustering_data",
    "load_digits_images",
    "load_image_folder",
    "load_mnist_test",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`load_clustering_data` (and the CLI's ``--data``).
CLUSTER_DATASETS = ("digits", "mnist", "folder")

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClusteringData:
    """Images to cluster, plus ground truth used only for evaluation.

    Attributes:
        name: dataset name.
        images: ``[N, C, H, W]`` float32 in ``[0, 1]``, background 0.
        labels: ``[N]`` int64 class ids, or ``None`` when the source has none.
        classes: class names (index = label id), or ``None``.
    """

    name: str
    images: Tensor
    labels: Tensor | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int | None:
        """Number of distinct ground-truth classes (``None`` without labels)."""
        if self.classes is not None:
            return len(self.classes)
        if self.labels is None:
            return None
        return int(self.labels.unique().numel())

    def subset(self, n: int | None, seed: int = 0) -> ClusteringData:
        """A seeded random subset of ``n`` images (all of them for ``None`` or ``n >= len``)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ConfigError(f"subset size must be >= 1, got {n}")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        labels = None if self.labels is None else self.labels[idx]
        return ClusteringData(self.name, self.images[idx], labels, self.classes)


def _find(data_dir: Path, stem: str) -> Path:
    for cand in (data_dir / stem, data_dir / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise DataError(
        f"MNIST file {stem!r} (or {stem}.gz) not found in {str(data_dir)!r}; expected the idx files "
        "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
    )


def load_mnist_test(data_dir: str | os.PathLike[str]) -> ClusteringData:
    """The 10,000-image MNIST test set from its idx files (gzip or plain) in ``data_dir``.

    Raises:
        DataError: a file is missing, corrupt, or images and labels disagree in count.
    """
    from datanas_core.io import read_idx

    root = Path(data_dir)
    images = read_idx(_find(root, "t10k-images-idx3-ubyte"))
    labels = read_idx(_find(root, "t10k-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST idx files in {str(root)!r} disagree: images {tuple(images.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    x = images.to(torch.float32).div_(255.0).unsqueeze(1).contiguous()
    return ClusteringData("mnist", x, labels.to(torch.int64), tuple(str(i) for i in range(10)))


def load_digits_images() -> ClusteringData:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes); needs no data directory."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).div_(16.0).unsqueeze(1).contiguous()
    y = torch.as_tensor(d.target, dtype=torch.int64)
    return ClusteringData("digits", x, y, tuple(str(i) for i in range(10)))


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    size: int | Sequence[int] = 28,
    grayscale: bool = True,
    invert: bool = False,
) -> ClusteringData:
    """Images under ``root``: either ``root/<class>/<image>`` (labels from folder names, for evaluation only)
    or a flat folder of images (no labels). Images are resized to ``size``.

    Args:
        root: folder to read.
        size: output size ``s`` or ``(h, w)``.
        grayscale: convert to one channel (otherwise RGB).
        invert: use ``1 - x`` (for dark strokes on a light background, so the background becomes 0).

    Raises:
        DataError: the folder does not exist or holds no images.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist")
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    entries: list[tuple[Path, int]] = []
    if class_dirs:
        for ci, cdir in enumerate(class_dirs):
            entries += [(p, ci) for p in sorted(cdir.rglob("*")) if p.suffix.lower() in _IMAGE_EXTS]
    else:
        entries = [(p, -1) for p in sorted(root.iterdir()) if p.suffix.lower() in _IMAGE_EXTS]
    if not entries:
        raise DataError(f"no images ({', '.join(_IMAGE_EXTS)}) found under {str(root)!r}")
    mode = "L" if grayscale else "RGB"
    tensors = []
    for path, _ in entries:
        with Image.open(path) as im:
            im = im.convert(mode).resize((hw[1], hw[0]), Image.BILINEAR)
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        tensors.append(t.view(hw[0], hw[1], -1).permute(2, 0, 1))
    x = torch.stack(tensors).to(torch.float32).div_(255.0)
    if invert:
        x = 1.0 - x
    if class_dirs:
        labels = torch.tensor([c for _, c in entries], dtype=torch.int64)
        classes: tuple[str, ...] | None = tuple(p.name for p in class_dirs)
    else:
        labels, classes = None, None
    return ClusteringData(root.name, x.contiguous(), labels, classes)


def load_clustering_data(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, size: int = 28, invert: bool = False
) -> ClusteringData:
    """Load a clustering dataset by name (see :data:`CLUSTER_DATASETS`).

    Raises:
        ConfigError: unknown name, or ``data_dir`` missing for a dataset that needs one.
    """
    if name == "digits":
        if data_dir is not None:
            logger.warning(
                "--data-dir %s is ignored: digits is bundled with scikit-learn (--data-dir is read by mnist, "
                "folder)",
                data_dir,
            )
        return load_digits_images()
    if name in ("mnist", "folder"):
        if data_dir is None:
            raise ConfigError(f"dataset {name!r} needs a data directory (--data-dir)")
        if name == "mnist":
            return load_mnist_test(data_dir)
        return load_image_folder(data_dir, size=size, invert=invert)
    raise ConfigError(f"unknown clustering dataset {name!r}; valid datasets: {', '.join(CLUSTER_DATASETS)}")
