"""Segmentation data: ISBI-2012 membranes and user folders of images + class-id masks.

Everything is loaded into memory as tensors (the datasets this package targets on CPU are small) and split
**by image** (never by crop), so no pixel of a test image is seen during search or training.

Layouts:

* ``isbi2012``: ``membrane_train.zip`` (``data/membrane/train/image/N.png`` and ``.../label/N.png``, 30
  grayscale 512x512 images, masks 0/255) found as ``DATA_DIR/membrane_train.zip``,
  ``DATA_DIR/isbi2012/membrane_train.zip`` or extracted (``DATA_DIR/data/membrane/train/{image,label}``).
  Mask value 0 (membrane) becomes class 0 and 255 (cell interior) class 1.
* ``segfolder``: ``DATA_DIR/images/<stem>.<png|jpg|jpeg|tif|tiff|bmp>`` and ``DATA_DIR/masks/<stem>.png``
  holding class ids ``0..num_classes-1`` (and optionally ``ignore_index``).
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datanas_core.errors import ConfigError, DataError, MissingDependencyError
from datanas_core.runtime.data import DeterministicLoader

__all__ = [
    "DATASETS",
    "IMAGE_SUFFIXES",
    "CropLoader",
    "EvalImageDataset",
    "RandomCropDataset",
    "SegImages",
    "find_isbi2012",
    "load_dataset",
    "load_isbi2012",
    "load_segfolder",
    "median_frequency_weights",
    "split_by_image",
    "write_segfolder",
]

logger = logging.getLogger(__name__)

#: Dataset names accepted by :func:`load_dataset` and the CLIs' ``--data``.
DATASETS = ("isbi2012", "segfolder")

#: Image file suffixes recognised in a segfolder's ``images/``.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_ISBI_ZIP = "membrane_train.zip"
_ISBI_PREFIX = "data/membrane/train/"


def _pil():  # noqa: ANN202 - module object
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow ships with torchvision
        raise MissingDependencyError(
            'reading image files needs Pillow: pip install pillow (or pip install "datanas-seg")'
        ) from exc
    return Image


@dataclass
class SegImages:
    """A set of whole images and their class-id masks.

    Attributes:
        images: per image a ``uint8`` tensor ``(C, H, W)``.
        masks: per image an ``int64`` tensor ``(H, W)`` of class ids (or ``ignore_index``).
        names: per image an identifier (file stem).
        num_classes: number of classes.
        class_names: a name per class.
        ignore_index: mask value that is excluded from loss and metrics.
    """

    images: list[Tensor]
    masks: list[Tensor]
    names: list[str]
    num_classes: int
    class_names: tuple[str, ...]
    ignore_index: int = 255

    def __len__(self) -> int:
        return len(self.images)

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[0]) if self.images else 0

    def subset(self, indices: Sequence[int]) -> SegImages:
        """The images at ``indices`` (same classes)."""
        idx = list(indices)
        return SegImages(
            [self.images[i] for i in idx],
            [self.masks[i] for i in idx],
            [self.names[i] for i in idx],
            self.num_classes,
            self.class_names,
            self.ignore_index,
        )


def _decode_image(data: bytes, where: str) -> np.ndarray:
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
            return np.array(im)
    except OSError as exc:
        raise DataError(f"cannot decode image {where}: {exc}") from exc


def _decode_mask(data: bytes, where: str) -> np.ndarray:
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.array(im)
    except OSError as exc:
        raise DataError(f"cannot decode mask {where}: {exc}") from exc
    if arr.ndim != 2:
        raise DataError(
            f"mask {where} has shape {arr.shape}; masks must be single-channel images of class ids "
            "(mode 'L', 'P' or 'I'), not colour images"
        )
    return arr


def _image_tensor(arr: np.ndarray) -> Tensor:
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    if arr.dtype != np.uint8:
        raise DataError(f"images must be 8-bit, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _check_pair(image: Tensor, mask: np.ndarray, name: str) -> None:
    ih, iw = image.shape[-2:]
    if (ih, iw) != mask.shape:
        raise DataError(
            f"image {name!r} is {iw}x{ih} (WxH) but its mask is {mask.shape[1]}x{mask.shape[0]}; "
            "an image and its mask must have the same size"
        )


def find_isbi2012(data_dir: str | os.PathLike[str]) -> Path:
    """Locate the ISBI-2012 zip (or its extracted folder) under ``data_dir``.

    Raises:
        DataError: nothing recognisable was found; the message lists the places searched.
    """
    root = Path(data_dir)
    candidates = [root / _ISBI_ZIP, root / "isbi2012" / _ISBI_ZIP, root / "data" / "membrane" / "train"]
    if root.is_file() and root.suffix == ".zip":
        return root
    for c in candidates:
        if c.exists():
            return c
    raise DataError(
        f"ISBI-2012 data not found under {str(root)!r}; looked for "
        + ", ".join(repr(str(c)) for c in candidates)
        + ". Place membrane_train.zip (data/membrane/train/{image,label}/N.png) there."
    )


def load_isbi2012(data_dir: str | os.PathLike[str]) -> SegImages:
    """Load the 30 ISBI-2012 training images with masks mapped 0 -> class 0 (membrane), 255 -> class 1.

    Raises:
        DataError: missing files, image/label mismatch, or label values other than 0 and 255.
    """
    src = find_isbi2012(data_dir)
    files: dict[str, bytes] = {}
    if src.is_dir():
        for sub in ("image", "label"):
            for p in sorted((src / sub).glob("*.png")):
                files[f"{sub}/{p.name}"] = p.read_bytes()
    else:
        try:
            with zipfile.ZipFile(src) as zf:
                for info in zf.infolist():
                    if info.filename.startswith(_ISBI_PREFIX) and info.filename.endswith(".png"):
                        files[info.filename[len(_ISBI_PREFIX) :]] = zf.read(info)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{str(src)!r} is not a valid zip file: {exc}") from exc
    stems = sorted({Path(k).stem for k in files if k.startswith("image/")}, key=lambda s: (len(s), s))
    if not stems:
        raise DataError(f"no images under {_ISBI_PREFIX}image/ in {str(src)!r}")
    images, masks = [], []
    for stem in stems:
        label_key = f"label/{stem}.png"
        if label_key not in files:
            raise DataError(f"ISBI-2012 image {stem}.png in {str(src)!r} has no label/{stem}.png")
        img = _image_tensor(_decode_image(files[f"image/{stem}.png"], f"{src}:image/{stem}.png"))
        raw = _decode_mask(files[label_key], f"{src}:{label_key}")
        values = np.unique(raw)
        bad = sorted(set(values.tolist()) - {0, 255})
        if bad:
            raise DataError(
                f"ISBI-2012 label {label_key} in {str(src)!r} has values {bad[:10]}; "
                "expected only 0 (membrane) and 255 (cell interior)"
            )
        _check_pair(img, raw, stem)
        images.append(img)
        masks.append(torch.from_numpy((raw == 255).astype(np.int64)))
    return SegImages(images, masks, stems, 2, ("membrane", "cell"))


def load_segfolder(
    data_dir: str | os.PathLike[str], *, num_classes: int | None = None, ignore_index: int = 255
) -> SegImages:
    """Load ``DATA_DIR/images/*`` with class-id masks ``DATA_DIR/masks/<stem>.png``.

    Args:
        data_dir: folder holding ``images/`` and ``masks/``.
        num_classes: number of classes; inferred as ``max(mask) + 1`` (ignoring ``ignore_index``) if None.
        ignore_index: mask value excluded from loss and metrics.

    Raises:
        DataError: missing folders or masks, masks whose size differs from their image, or mask values outside
            ``0..num_classes-1`` and ``ignore_index``.
    """
    root = Path(data_dir)
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(
                f"segfolder {str(root)!r} needs sub-folders 'images/' and 'masks/'; {str(d)!r} does not exist"
            )
    img_files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not img_files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(img_dir)!r}")
    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    images, raw_masks, names = [], [], []
    for p in img_files:
        mp = mask_dir / f"{p.stem}.png"
        if not mp.is_file():
            raise DataError(f"image {str(p)!r} has no mask {str(mp)!r}")
        img = _image_tensor(_decode_image(p.read_bytes(), str(p)))
        raw = _decode_mask(mp.read_bytes(), str(mp))
        _check_pair(img, raw, str(p))
        images.append(img)
        raw_masks.append((raw, mp))
        names.append(p.stem)
    channels = {int(i.shape[0]) for i in images}
    if len(channels) > 1:
        raise DataError(
            f"images in {str(img_dir)!r} mix channel counts {sorted(channels)}; convert them first"
        )
    if num_classes is None:
        top = max(int(r[r != ignore_index].max(initial=0)) for r, _ in raw_masks)
        num_classes = max(top + 1, 2)
        logger.info("segfolder %s: inferred num_classes=%d", root, num_classes)
    masks = []
    for raw, mp in raw_masks:
        values = set(np.unique(raw).tolist())
        bad = sorted(v for v in values if not (0 <= v < num_classes) and v != ignore_index)
        if bad:
            raise DataError(
                f"mask {str(mp)!r} has values {bad[:10]}; valid values are class ids 0..{num_classes - 1} "
                f"and ignore_index {ignore_index}"
            )
        masks.append(torch.from_numpy(raw.astype(np.int64)))
    class_names = tuple(f"class{i}" for i in range(num_classes))
    return SegImages(images, masks, names, num_classes, class_names, ignore_index)


def load_dataset(name: str, data_dir: str | os.PathLike[str], **kwargs: object) -> SegImages:
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``data_dir``.

    Raises:
        UnknownNameError-like ConfigError: ``name`` is not one of :data:`DATASETS`.
    """
    if name == "isbi2012":
        return load_isbi2012(data_dir)
    if name == "segfolder":
        return load_segfolder(data_dir, **kwargs)  # type: ignore[arg-type]
    raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")


def median_frequency_weights(data: SegImages) -> list[float]:
    """Median-frequency class weights ``median(f) / f_c`` from the pixel frequencies ``f_c`` of ``data``.

    Classes absent from ``data`` get weight 0 (they cannot be balanced). Use them as the loss' class weights
    on imbalanced data (ISBI-2012: ~22% membrane pixels) so mIoU, a class-balanced metric, is what is trained.

    Raises:
        DataError: ``data`` holds no labelled pixel.
    """
    counts = torch.zeros(data.num_classes, dtype=torch.float64)
    for m in data.masks:
        keep = (m >= 0) & (m < data.num_classes)
        counts += torch.bincount(m[keep].flatten(), minlength=data.num_classes).double()
    if counts.sum() == 0:
        raise DataError("cannot compute class weights: no labelled pixels")
    freq = counts / counts.sum()
    present = freq > 0
    med = float(freq[present].quantile(0.5))
    return [med / float(f) if f > 0 else 0.0 for f in freq]


def split_by_image(
    n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Seeded split of ``n`` image indices into (train, val, test).

    Each part gets at least one image; the fractions are normalised.

    Raises:
        ConfigError: fewer than 3 images or a bad fractions triple.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise ConfigError(
            f"fractions must be three positive numbers (train, val, test), got {tuple(fractions)}"
        )
    if n < 3:
        raise ConfigError(f"need at least 3 images to split into train/val/test, got {n}")
    total = float(sum(fractions))
    n_val = max(1, round(n * fractions[1] / total))
    n_test = max(1, round(n * fractions[2] / total))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"split fractions {tuple(fractions)} leave no training image out of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[:n_train]), sorted(perm[n_train : n_train + n_val]), sorted(perm[n_train + n_val :])


def _normalise(img: Tensor) -> Tensor:
    return (img.float() / 255.0 - 0.5) / 0.25


class RandomCropDataset(Dataset[tuple[Tensor, Tensor]]):
    """Random crops (with random flips) of a set of images; one epoch has ``samples_per_epoch`` crops.

    The crop of item ``i`` is drawn from a generator seeded with ``(seed, epoch, i)``, so epochs are
    reproducible regardless of the DataLoader's worker count; call :meth:`set_epoch` to get new crops.

    Args:
        data: images and masks.
        crop_size: side of the square crop (images smaller than it are padded with ``ignore_index``).
        samples_per_epoch: number of crops per epoch.
        seed: base seed.
        flip: random horizontal/vertical flips.

    Items are ``(image, mask)``: ``float32 (C, crop, crop)`` normalised to about zero mean, and ``int64
    (crop, crop)``.
    """

    def __init__(
        self, data: SegImages, crop_size: int, samples_per_epoch: int, *, seed: int = 0, flip: bool = True
    ) -> None:
        if len(data) == 0:
            raise DataError("cannot crop from an empty image set")
        if crop_size < 1 or samples_per_epoch < 1:
            raise ConfigError(
                f"crop_size and samples_per_epoch must be >= 1, got {crop_size} and {samples_per_epoch}"
            )
        self.data = data
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.flip = flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch * 100_003 + index) % (2**63 - 1)
        )
        k = int(torch.randint(len(self.data), (1,), generator=g))
        img, mask = self.data.images[k], self.data.masks[k]
        c = self.crop_size
        h, w = mask.shape
        if h < c or w < c:
            ph, pw = max(0, c - h), max(0, c - w)
            img = torch.nn.functional.pad(img, (0, pw, 0, ph))
            mask = torch.nn.functional.pad(mask, (0, pw, 0, ph), value=self.data.ignore_index)
            h, w = mask.shape
        y = int(torch.randint(h - c + 1, (1,), generator=g))
        x = int(torch.randint(w - c + 1, (1,), generator=g))
        img = img[:, y : y + c, x : x + c]
        mask = mask[y : y + c, x : x + c]
        if self.flip:
            if bool(torch.rand((), generator=g) < 0.5):
                img, mask = img.flip(-1), mask.flip(-1)
            if bool(torch.rand((), generator=g) < 0.5):
                img, mask = img.flip(-2), mask.flip(-2)
        return _normalise(img), mask.clone()


class CropLoader(DeterministicLoader):
    """A :class:`~datanas_core.runtime.DeterministicLoader` over a :class:`RandomCropDataset` that draws new
    crops every epoch: before each epoch the dataset's epoch is set to the loader's, so both the order and the
    crops are pure functions of ``(seed, epoch)`` (resumable mid-epoch)."""

    def __iter__(self):  # noqa: ANN204 - same iterator type as DeterministicLoader
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            # the epoch this iteration will run (DeterministicLoader keeps it on its sampler)
            set_epoch(int(self.sampler.next_epoch))
        return super().__iter__()


class EvalImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Whole images for evaluation, padded on the bottom/right to a multiple of ``size_divisor``.

    Padding pixels get ``ignore_index`` in the mask, so metrics see only real pixels. Items are
    ``(image float32 (C, H', W'), mask int64 (H', W'))``; use batch size 1 when image sizes differ.
    """

    def __init__(self, data: SegImages, *, size_divisor: int = 32) -> None:
        self.data = data
        self.size_divisor = size_divisor

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        img, mask = self.data.images[index], self.data.masks[index]
        h, w = mask.shape
        d = self.size_divisor
        ph, pw = (-h) % d, (-w) % d
        img = torch.nn.functional.pad(_normalise(img), (0, pw, 0, ph))
        mask = torch.nn.functional.pad(mask, (0, pw, 0, ph), value=self.data.ignore_index)
        return img, mask


def write_segfolder(data: SegImages, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``data`` as a segfolder (``images/<name>.png``, ``masks/<name>.png`` with class ids).

    Useful to hand ISBI-2012 (or any loaded set) to mmseg's ``BaseSegDataset`` via an exported config.
    """
    Image = _pil()
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for img, mask, name in zip(data.images, data.masks, data.names, strict=True):
        arr = img.numpy()
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(arr)).save(root / "images" / f"{name}.png")
        if int(mask.max()) > 255 or int(mask.min()) < 0:
            raise DataError(f"mask {name!r} has values outside 0..255 and cannot be written as 8-bit PNG")
        Image.fromarray(mask.numpy().astype(np.uint8)).save(root / "masks" / f"{name}.png")
    return root
