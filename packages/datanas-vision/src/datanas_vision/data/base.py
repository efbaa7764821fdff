"""Dataset containers: in-memory uint8 images and lazily decoded encoded images (folders or zips).

Every dataset in this package yields ``(image, label)`` with ``image`` a ``uint8`` tensor ``(C, H, W)`` and
``label`` an ``int``. Conversion to float, normalisation and augmentation happen batch-wise in
:class:`datanas_vision.data.transforms.BatchTransform`, with an explicit ``torch.Generator``, so the random
draws do not depend on the number of loader workers.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datanas_core.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "AugmentSpec",
    "EncodedImageDataset",
    "FolderReader",
    "TensorImageDataset",
    "VisionData",
    "ZipReader",
    "carve_split",
    "channel_stats",
    "limit_per_class",
    "materialize",
    "subset",
]

logger = logging.getLogger(__name__)

#: File name suffixes treated as images in folders and zips (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


@dataclass(frozen=True)
class AugmentSpec:
    """Dataset-appropriate training augmentation.

    Attributes:
        crop_padding: zero padding before the random crop back to the original size (0 disables cropping).
        flip: random horizontal flips (off for digits, where a flip changes the class).
    """

    crop_padding: int = 4
    flip: bool = True


@dataclass
class VisionData:
    """A classification dataset with its training and test splits and metadata.

    Attributes:
        name: dataset name (``"digits"``, ``"cifar10"``, ...).
        train: training split; yields ``(uint8 (C, H, W), int)``.
        test: test split, same format.
        classes: class names; label ``i`` is ``classes[i]``.
        in_channels: image channels (1 or 3).
        image_size: ``(H, W)`` of every image.
        mean, std: per-channel normalisation constants for images scaled to ``[0, 1]``.
        augment: the training augmentation that suits the data.
        notes: human-readable remarks about how the splits were obtained (missing files, carved splits).
    """

    name: str
    train: Dataset[tuple[Tensor, int]]
    test: Dataset[tuple[Tensor, int]]
    classes: tuple[str, ...]
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (for run manifests)."""
        return {
            "name": self.name,
            "num_train": len(self.train),  # type: ignore[arg-type]
            "num_test": len(self.test),  # type: ignore[arg-type]
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "in_channels": self.in_channels,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "augment": {"crop_padding": self.augment.crop_padding, "flip": self.augment.flip},
            "notes": list(self.notes),
        }


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """Images held in memory as one ``uint8`` tensor.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        labels: integer tensor ``(N,)``.
        data_files: the files the images were read from (checksummed into run manifests).

    Raises:
        DataError: if the shapes or dtypes do not fit.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, data_files: Sequence[str | os.PathLike[str]] = ()
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"labels must be a tensor (N,) with N = {images.shape[0]} images, got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.to(torch.long)
        self.data_files = [Path(f) for f in data_files]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def targets(self) -> list[int]:
        """Labels of every item, in index order (no decoding)."""
        return self.labels.tolist()


class _Reader(Protocol):
    def read(self, key: str) -> bytes: ...

    def describe(self, key: str) -> str: ...


class FolderReader:
    """Reads image files relative to a root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def describe(self, key: str) -> str:
        return str(self.root / key)


class ZipReader:
    """Reads members of a zip archive without extracting it.

    The archive handle is opened lazily and re-opened in every process (data-loader workers inherit a
    pickled reader whose handle is dropped), so one reader can be shared by forked or spawned workers.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_zip": None, "_pid": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def handle(self) -> zipfile.ZipFile:
        """The archive opened by the current process."""
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"cannot open zip archive {str(self.path)!r}: {exc}") from exc
            self._pid = os.getpid()
        return self._zip

    def read(self, key: str) -> bytes:
        return self.handle().read(key)

    def describe(self, key: str) -> str:
        return f"{self.path}:{key}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def decode_image(data: bytes, *, mode: str, size: tuple[int, int] | None, where: str) -> Tensor:
    """Decode encoded image bytes to ``uint8 (C, H, W)``.

    Args:
        data: the encoded file.
        mode: PIL mode to convert to (``"L"`` or ``"RGB"``).
        size: ``(H, W)`` to resize to when the image differs, or ``None`` to keep it.
        where: file description used in error messages.

    Raises:
        DataError: naming ``where`` when the bytes are not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = img.convert(mode)
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"corrupt or unreadable image {where}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class EncodedImageDataset(Dataset[tuple[Tensor, int]]):
    """Encoded image files (PNG, JPEG, ...) decoded lazily in ``__getitem__``.

    Args:
        reader: where the bytes come from (:class:`FolderReader` or :class:`ZipReader`).
        samples: ``(key, label)`` pairs.
        mode: PIL mode every image is converted to (``"L"`` or ``"RGB"``).
        size: ``(H, W)``; images of another size are resized (bilinear).
    """

    def __init__(
        self, reader: _Reader, samples: Sequence[tuple[str, int]], *, mode: str, size: tuple[int, int]
    ) -> None:
        self.reader = reader
        self.samples = list(samples)
        self.mode = mode
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def data_files(self) -> list[Path]:
        """The archive for zip-backed datasets (checksummed into run manifests); none for folders."""
        return [self.reader.path] if isinstance(self.reader, ZipReader) else []

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        key, label = self.samples[index]
        where = self.reader.describe(key)
        try:
            data = self.reader.read(key)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read image {where}: {exc}") from exc
        return decode_image(data, mode=self.mode, size=self.size, where=where), label

    def targets(self) -> list[int]:
        """Labels of every item, in index order (no decoding)."""
        return [label for _, label in self.samples]


def _targets(dataset: Dataset[Any]) -> list[int]:
    get = getattr(dataset, "targets", None)
    if callable(get):
        return list(get())
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


def limit_per_class(labels: Sequence[int], max_per_class: int | None) -> list[int]:
    """Indices that keep the first ``max_per_class`` items of every class (in index order).

    Args:
        labels: label of every item.
        max_per_class: cap per class, or ``None`` for all items.

    Raises:
        DataError: if ``max_per_class`` is not positive.
    """
    if max_per_class is None:
        return list(range(len(labels)))
    if max_per_class <= 0:
        raise DataError(f"max_per_class must be a positive integer or None, got {max_per_class}")
    seen: dict[int, int] = {}
    keep = []
    for i, y in enumerate(labels):
        if seen.get(y, 0) < max_per_class:
            seen[y] = seen.get(y, 0) + 1
            keep.append(i)
    return keep


def carve_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified seeded split of items into ``(kept, held_out)`` index lists.

    Each class contributes ``round(fraction * count)`` items (at least one when it has two or more) to the
    held-out part. Both lists are sorted.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(int(seed))
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    kept: list[int] = []
    held: list[int] = []
    for y in sorted(by_class):
        idx = by_class[y]
        perm = torch.randperm(len(idx), generator=g).tolist()
        n_held = round(fraction * len(idx))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.extend(idx[p] for p in perm[:n_held])
        kept.extend(idx[p] for p in perm[n_held:])
    return sorted(kept), sorted(held)


class _Subset(Dataset[tuple[Tensor, int]]):
    """``torch.utils.data.Subset`` that also answers ``targets()`` without decoding."""

    def __init__(self, dataset: Dataset[tuple[Tensor, int]], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.data_files = list(getattr(dataset, "data_files", []))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[self.indices[index]]

    def targets(self) -> list[int]:
        all_targets = _targets(self.dataset)
        return [all_targets[i] for i in self.indices]


def subset(dataset: Dataset[tuple[Tensor, int]], indices: Sequence[int]) -> Dataset[tuple[Tensor, int]]:
    """A view on ``dataset`` restricted to ``indices`` (``targets()`` stays cheap)."""
    if isinstance(dataset, TensorImageDataset):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return TensorImageDataset(dataset.images[idx], dataset.labels[idx], dataset.data_files)
    if isinstance(dataset, EncodedImageDataset):
        return EncodedImageDataset(
            dataset.reader, [dataset.samples[i] for i in indices], mode=dataset.mode, size=dataset.size
        )
    return _Subset(dataset, indices)


def materialize(dataset: Dataset[tuple[Tensor, int]]) -> TensorImageDataset:
    """Decode every item once into an in-memory :class:`TensorImageDataset`.

    Worth it when the same lazily decoded subset is iterated for many epochs (e.g. 10k JPEGs from a zip).
    """
    if isinstance(dataset, TensorImageDataset):
        return dataset
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DataError("cannot materialise an empty dataset")
    first, _ = dataset[0]
    images = torch.empty((n, *first.shape), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    for i in range(n):
        img, y = dataset[i]
        images[i] = img
        labels[i] = y
    return TensorImageDataset(images, labels, getattr(dataset, "data_files", []))


def channel_stats(
    dataset: Dataset[tuple[Tensor, int]], max_items: int = 1000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (images scaled to ``[0, 1]``) over evenly spaced items.

    Deterministic: items ``0, n/k, 2n/k, ...`` are used, no random draw.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DataError("cannot compute channel statistics of an empty dataset")
    k = min(n, max_items)
    idx = [int(i * n / k) for i in range(k)]
    if isinstance(dataset, TensorImageDataset):
        x = dataset.images[torch.as_tensor(idx)].to(torch.float64) / 255.0
    else:
        x = torch.stack([dataset[i][0] for i in idx]).to(torch.float64) / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
