"""Dataset sources: digits, CIFAR-10, MNIST, class-per-folder directories and zips.

Each source turns a ``data_dir`` (a directory or, for ``imagezip``, a zip file) into a :class:`VisionData`
with a training and a test split. Sources never hard-code a location; ``digits`` needs none (it is bundled
with scikit-learn).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from datanas_core.errors import ConfigError, DataError
from datanas_core.io import download as _download
from datanas_core.io import read_idx, verify_checksum
from datanas_core.registry import Registry
from datanas_vision.data.base import (
    IMAGE_EXTENSIONS,
    AugmentSpec,
    EncodedImageDataset,
    FolderReader,
    TensorImageDataset,
    VisionData,
    ZipReader,
    _targets,
    carve_split,
    channel_stats,
    decode_image,
    limit_per_class,
    subset,
)

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATASETS",
    "DataOptions",
    "ensure_cifar10",
    "load_dataset",
]

logger = logging.getLogger(__name__)

#: Where torchvision and the original page publish the python version of CIFAR-10, and its md5.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = ("test_batch",)
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: Seed of the held-out split carved from a dataset that ships no test split (fixed, so every run of a
#: dataset sees the same test images whatever its own ``--seed``).
SPLIT_SEED = 0
#: Fraction of such a dataset held out as the test split.
CARVED_TEST_FRACTION = 0.2

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@dataclass(frozen=True)
class DataOptions:
    """Options shared by every source.

    Attributes:
        max_per_class: keep at most this many training images per class (first ones in file order).
        test_max_per_class: the same for the test split.
        image_size: resize folder/zip images to ``image_size x image_size`` (default: the first image's size).
        download: allow downloading missing files (CIFAR-10 only).
        url, md5: where to download CIFAR-10 from and its checksum (overridable for mirrors and tests).
    """

    max_per_class: int | None = None
    test_max_per_class: int | None = None
    image_size: int | None = None
    download: bool = False
    url: str = CIFAR10_URL
    md5: str = CIFAR10_MD5


Source = Callable[[Path | None, DataOptions], VisionData]

#: Dataset name -> source function ``(data_dir, options) -> VisionData``.
DATASETS: Registry[Source] = Registry("dataset")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    options: DataOptions | None = None,
    **kwargs: object,
) -> VisionData:
    """Load a dataset by name.

    Args:
        name: one of ``DATASETS.names()``: ``digits``, ``cifar10``, ``imagefolder``, ``imagezip``, ``mnist``.
        data_dir: directory (or zip file for ``imagezip``); unused by ``digits``.
        options: :class:`DataOptions`; keyword arguments override its fields.

    Returns:
        The dataset with its train and test splits.

    Raises:
        UnknownNameError: unknown ``name`` (the message lists the valid ones).
        DataError: files missing, corrupt or inconsistent.

    Example:
        >>> data = load_dataset("digits", max_per_class=5)
        >>> data.num_classes, data.image_size
        (10, (8, 8))
    """
    source = DATASETS.get(name)
    opts = options or DataOptions()
    if kwargs:
        valid = set(DataOptions.__dataclass_fields__)
        bad = sorted(set(kwargs) - valid)
        if bad:
            raise ConfigError(f"unknown data option(s) {bad}; valid options: {', '.join(sorted(valid))}")
        opts = DataOptions(**{**opts.__dict__, **kwargs})  # type: ignore[arg-type]
    path = None if data_dir is None else Path(data_dir).expanduser()
    return source(path, opts)


def _apply_limits(data: VisionData, opts: DataOptions) -> VisionData:
    if opts.max_per_class is not None:
        data.train = subset(data.train, limit_per_class(_targets(data.train), opts.max_per_class))
    if opts.test_max_per_class is not None:
        data.test = subset(data.test, limit_per_class(_targets(data.test), opts.test_max_per_class))
    return data


def _require_dir(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise DataError(f"--data {name} needs --data-dir (the directory that holds the dataset)")
    return data_dir


# ----------------------------------------------------------------------------------------------- digits


@DATASETS.register("digits")
def _load_digits(data_dir: Path | None, opts: DataOptions) -> VisionData:
    """scikit-learn's bundled 8x8 digits (1,797 images); 20 % is held out (seeded, stratified) as test."""
    from sklearn.datasets import load_digits

    if data_dir is not None:
        logger.warning(
            "--data-dir %s is ignored: digits is bundled with scikit-learn (--data-dir is read by %s)",
            data_dir,
            ", ".join(n for n in DATASETS.names() if n != "digits"),
        )
    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = carve_split(labels.tolist(), CARVED_TEST_FRACTION, SPLIT_SEED)
    full = TensorImageDataset(images, labels)
    train, test = subset(full, train_idx), subset(full, test_idx)
    mean, std = channel_stats(train)
    data = VisionData(
        name="digits",
        train=train,
        test=test,
        classes=tuple(str(i) for i in range(10)),
        in_channels=1,
        image_size=(8, 8),
        mean=mean,
        std=std,
        augment=AugmentSpec(crop_padding=1, flip=False),
        notes=[f"scikit-learn digits: seeded stratified {int(CARVED_TEST_FRACTION * 100)} % test hold-out"],
    )
    return _apply_limits(data, opts)


# ---------------------------------------------------------------------------------------------- cifar10


def ensure_cifar10(
    data_dir: str | os.PathLike[str],
    *,
    download: bool = False,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
) -> Path:
    """Return ``data_dir/cifar-10-batches-py``, downloading and extracting the archive if allowed.

    The archive is verified against ``md5`` before it is used and is extracted with tarfile's ``data``
    filter (no absolute paths, links or devices).

    Raises:
        DataError: files missing and ``download`` is false, the download fails, or the checksum differs.
    """
    root = Path(data_dir)
    folder = root / _CIFAR10_DIR
    needed = [*_CIFAR10_TRAIN, *_CIFAR10_TEST]
    missing = [f for f in needed if not (folder / f).is_file()]
    if not missing:
        return folder
    archive = root / url.rsplit("/", 1)[-1]
    if not archive.is_file():
        if not download:
            raise DataError(
                f"CIFAR-10 files {missing} are missing from {str(folder)!r} and downloading is off. "
                f"Pass --download (or download=True), or put torchvision's '{_CIFAR10_DIR}' folder there "
                f"(from {url}, md5 {md5})."
            )
        logger.info("downloading CIFAR-10 from %s", url)
        _download(url, archive, md5=md5)
    else:
        verify_checksum(archive, md5=md5)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot extract CIFAR-10 archive {str(archive)!r}: {exc}") from exc
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 archive {str(archive)!r} did not contain {missing} under '{_CIFAR10_DIR}/'"
        )
    return folder


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles of ``bytes`` use it, for the latin-1 codec only."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1")


def _plain_dtype(*args: object) -> np.dtype:
    """``numpy.dtype`` for numeric and byte types only (an object dtype would unpickle arbitrary objects)."""
    dt = np.dtype(*args)  # type: ignore[call-overload]
    if dt.hasobject:
        raise pickle.UnpicklingError("refused a NumPy object dtype")
    return dt


#: The only globals a CIFAR python-format file needs: NumPy array reconstruction (NumPy 1 and 2 module
#: paths), numeric dtypes, and latin-1 encoding of byte strings.
_CIFAR_GLOBALS: dict[tuple[str, str], object] = {
    **{
        (m, "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0]
        for m in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _CIFAR_GLOBALS[(_m, "_frombuffer")] = np.ndarray.__reduce_ex__(np.zeros(0), 5)[0]


class _CifarUnpickler(pickle.Unpickler):
    """Reads CIFAR python-format files: dicts, lists, strings, bytes, numbers and numeric NumPy arrays.

    Any other global (a function or class the file names) is refused, so a crafted file cannot run code.
    """

    def find_class(self, module: str, name: str) -> object:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused {module}.{name}: a CIFAR batch holds only arrays, lists, dicts, strings and numbers"
            ) from None


def read_cifar_pickle(path: Path, what: str = "CIFAR-10 batch") -> dict[str, object]:
    """Read one CIFAR python-format file with the restricted unpickler.

    Raises:
        DataError: unreadable, not a pickle, names anything but the format's types, or not a dict.
    """
    try:
        with path.open("rb") as fh:
            # latin-1: the encoding torchvision and the original page use for the Python 2 strings
            doc = _CifarUnpickler(fh, encoding="latin1").load()
    except RecursionError:
        raise DataError(f"corrupt {what} file {str(path)!r}: nested too deeply") from None
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise DataError(f"corrupt {what} file {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"corrupt {what} file {str(path)!r}: expected a dict, got {type(doc).__name__}")
    return doc


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    doc = read_cifar_pickle(path)
    try:
        data = np.asarray(doc["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        raw_labels = doc.get("labels", doc.get("fine_labels", []))
        labels = [int(v) for v in raw_labels]  # type: ignore[union-attr]
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"corrupt CIFAR-10 batch file {str(path)!r}: {exc}") from None
    if len(labels) != data.shape[0]:
        raise DataError(
            f"CIFAR-10 batch file {str(path)!r} has {data.shape[0]} images but {len(labels)} labels"
        )
    return data, labels


@DATASETS.register("cifar10")
def _load_cifar10(data_dir: Path | None, opts: DataOptions) -> VisionData:
    """torchvision's on-disk CIFAR-10 (``cifar-10-batches-py``) under ``data_dir``."""
    root = _require_dir(data_dir, "cifar10")
    folder = ensure_cifar10(root, download=opts.download, url=opts.url, md5=opts.md5)

    def read(files: Sequence[str]) -> TensorImageDataset:
        arrays, labels = [], []
        for f in files:
            a, y = _read_cifar_batch(folder / f)
            arrays.append(a)
            labels.extend(y)
        return TensorImageDataset(
            torch.from_numpy(np.concatenate(arrays)), torch.tensor(labels), [folder / f for f in files]
        )

    classes: tuple[str, ...] = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    )  # fmt: skip
    meta = folder / "batches.meta"
    if meta.is_file():
        doc = read_cifar_pickle(meta, "CIFAR-10 meta")
        names = doc.get("label_names")
        if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
            raise DataError(f"corrupt CIFAR-10 meta file {str(meta)!r}: 'label_names' is not a list of names")
        classes = tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)
    data = VisionData(
        name="cifar10",
        train=read(_CIFAR10_TRAIN),
        test=read(_CIFAR10_TEST),
        classes=classes,
        in_channels=3,
        image_size=(32, 32),
        mean=_CIFAR10_MEAN,
        std=_CIFAR10_STD,
        augment=AugmentSpec(crop_padding=4, flip=True),
    )
    return _apply_limits(data, opts)


# ------------------------------------------------------------------------------------------------ mnist

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


@DATASETS.register("mnist")
def _load_mnist(data_dir: Path | None, opts: DataOptions) -> VisionData:
    """MNIST-format idx files (plain or ``.gz``) in ``data_dir`` (or ``data_dir/MNIST/raw``).

    Whatever splits exist are used; when only one split is present, a seeded stratified 20 % of it is held
    out as the test split and the missing files are named in ``notes`` and the log.
    """
    root = _require_dir(data_dir, "mnist")
    found: dict[str, TensorImageDataset] = {}
    missing: list[str] = []
    for split, (img_stem, lab_stem) in _MNIST_FILES.items():
        img_path, lab_path = _find_idx(root, img_stem), _find_idx(root, lab_stem)
        if img_path is None or lab_path is None:
            missing += [s + "[.gz]" for s, p in ((img_stem, img_path), (lab_stem, lab_path)) if p is None]
            continue
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.dim() != 3 or images.dtype != torch.uint8:
            raise DataError(
                f"{str(img_path)!r}: expected uint8 images (N, H, W), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{str(lab_path)!r} has {tuple(labels.shape)} labels for {images.shape[0]} images "
                f"in {str(img_path)!r}"
            )
        found[split] = TensorImageDataset(
            images.unsqueeze(1).contiguous(), labels.to(torch.long), [img_path, lab_path]
        )
    if not found:
        raise DataError(
            f"no MNIST idx files in {str(root)!r}: looked for {', '.join(missing)} (also under MNIST/raw/)"
        )
    notes = []
    if len(found) == 1:
        ((have, ds),) = found.items()
        idx_keep, idx_held = carve_split(ds.targets(), CARVED_TEST_FRACTION, SPLIT_SEED)
        train, test = subset(ds, idx_keep), subset(ds, idx_held)
        notes.append(
            f"missing {', '.join(missing)}; only the {have} split exists, so a seeded stratified "
            f"{int(CARVED_TEST_FRACTION * 100)} % of it ({len(idx_held)} images) is held out as the test "
            "split "
            f"and the other {len(idx_keep)} are used for training"
        )
        logger.warning("mnist: %s", notes[-1])
    else:
        train, test = found["train"], found["test"]
    mean, std = channel_stats(train)
    h, w = (int(s) for s in train[0][0].shape[1:])
    data = VisionData(
        name="mnist",
        train=train,
        test=test,
        classes=tuple(str(i) for i in range(10)),
        in_channels=1,
        image_size=(h, w),
        mean=mean,
        std=std,
        augment=AugmentSpec(crop_padding=2, flip=False),
        notes=notes,
    )
    return _apply_limits(data, opts)


# ------------------------------------------------------------------------------- class-per-folder trees


def _is_hidden(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class _Tree:
    """Files and directories of a folder or a zip, as POSIX paths relative to its root."""

    def __init__(self, files: list[str], dirs: set[str], describe: Callable[[str], str]) -> None:
        self.files = sorted(f for f in files if not _is_hidden(PurePosixPath(f).parts))
        self.dirs = {d for d in dirs if not _is_hidden(PurePosixPath(d).parts)}
        for f in self.files:  # directories implied by file paths (zips may omit directory entries)
            parts = PurePosixPath(f).parts
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))
        self.describe = describe

    def subdirs(self, prefix: str) -> list[str]:
        depth = len(PurePosixPath(prefix).parts) if prefix else 0
        out = set()
        for d in self.dirs:
            parts = PurePosixPath(d).parts
            if len(parts) == depth + 1 and (not prefix or d.startswith(prefix + "/")):
                out.add(parts[-1])
        return sorted(out)

    def images_under(self, prefix: str) -> list[str]:
        return [f for f in self.files if f.startswith(prefix + "/") and f.lower().endswith(IMAGE_EXTENSIONS)]


def _folder_tree(root: Path) -> _Tree:
    files, dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel = Path(dirpath).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        dirnames.sort()
        for d in dirnames:
            dirs.add(f"{rel}/{d}" if rel else d)
        for f in filenames:
            files.append(f"{rel}/{f}" if rel else f)
    return _Tree(files, dirs, lambda key: str(root / key) if key else str(root))


def _zip_tree(path: Path) -> _Tree:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot open zip archive {str(path)!r}: {exc}") from exc
    files = [n for n in names if not n.endswith("/")]
    dirs = {n.rstrip("/") for n in names if n.endswith("/")}
    return _Tree(files, dirs, lambda key: f"{path}:{key}/" if key else str(path))


def _class_samples(
    tree: _Tree, prefix: str, classes: tuple[str, ...] | None
) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    found = tuple(tree.subdirs(prefix))
    where = tree.describe(prefix)
    if classes is None:
        if len(found) < 2:
            raise DataError(
                f"{where} must hold one sub-folder per class (at least 2), found {list(found) or 'none'}"
            )
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(
                f"{where} has class folder(s) {extra} that the training split does not have "
                f"(training classes: {', '.join(classes)})"
            )
    samples: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        if cls not in found:
            logger.warning("%s has no folder for class %r", where, cls)
            continue
        key = f"{prefix}/{cls}" if prefix else cls
        imgs = tree.images_under(key)
        if not imgs:
            raise DataError(
                f"empty class folder {tree.describe(key)}: no image files "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        samples.extend((f, label) for f in imgs)
    return classes, samples


def _find_layout(tree: _Tree) -> tuple[str | None, str | None]:
    """``(train_prefix, test_prefix)``; ``train_prefix`` None means classes sit at the root."""
    top = tree.subdirs("")
    base = ""
    if "train" not in top and len(top) == 1 and "train" in tree.subdirs(top[0]):
        base = top[0]
        top = tree.subdirs(base)
    if "train" not in top:
        return None, None
    join = (lambda d: f"{base}/{d}") if base else (lambda d: d)
    test = next((join(d) for d in ("test", "val", "valid", "validation") if d in top), None)
    return join("train"), test


def _image_mode(reader: FolderReader | ZipReader, key: str) -> str:
    """``"L"`` for grayscale files, else ``"RGB"``."""
    from PIL import Image, UnidentifiedImageError

    where = reader.describe(key)
    try:
        with Image.open(io.BytesIO(reader.read(key))) as img:
            return "L" if img.mode in _GRAY_MODES else "RGB"
    except (UnidentifiedImageError, OSError, KeyError, ValueError, SyntaxError) as exc:
        raise DataError(f"corrupt or unreadable image {where}: {exc}") from exc


def _load_tree(name: str, tree: _Tree, reader: FolderReader | ZipReader, opts: DataOptions) -> VisionData:
    train_prefix, test_prefix = _find_layout(tree)
    notes = []
    if train_prefix is None:
        classes, samples = _class_samples(tree, "", None)
        keep, held = carve_split([y for _, y in samples], CARVED_TEST_FRACTION, SPLIT_SEED)
        train_s, test_s = [samples[i] for i in keep], [samples[i] for i in held]
        notes.append(
            f"no train/ and test/ folders: a seeded stratified {int(CARVED_TEST_FRACTION * 100)} % "
            f"({len(test_s)} images) is held out as the test split"
        )
    else:
        classes, train_s = _class_samples(tree, train_prefix, None)
        if test_prefix is None:
            keep, held = carve_split([y for _, y in train_s], CARVED_TEST_FRACTION, SPLIT_SEED)
            test_s = [train_s[i] for i in held]
            train_s = [train_s[i] for i in keep]
            notes.append(
                f"no test/ (or val/) folder beside {train_prefix}/: a seeded stratified "
                f"{int(CARVED_TEST_FRACTION * 100)} % of train/ ({len(test_s)} images) is held out as "
                "the test split"
            )
        else:
            _, test_s = _class_samples(tree, test_prefix, classes)
    first_key = train_s[0][0]
    mode = _image_mode(reader, first_key)
    first = decode_image(reader.read(first_key), mode=mode, size=None, where=reader.describe(first_key))
    if opts.image_size is not None:
        if opts.image_size <= 0:
            raise ConfigError(f"image_size must be a positive integer, got {opts.image_size}")
        size = (opts.image_size, opts.image_size)
    else:
        size = (int(first.shape[1]), int(first.shape[2]))
    train = EncodedImageDataset(reader, train_s, mode=mode, size=size)
    test = EncodedImageDataset(reader, test_s, mode=mode, size=size)
    data = VisionData(
        name=name,
        train=train,
        test=test,
        classes=classes,
        in_channels=1 if mode == "L" else 3,
        image_size=size,
        mean=(0.5,) * (1 if mode == "L" else 3),
        std=(0.25,) * (1 if mode == "L" else 3),
        augment=AugmentSpec(crop_padding=max(1, size[0] // 8), flip=True),
        notes=notes,
    )
    data = _apply_limits(data, opts)
    data.mean, data.std = channel_stats(data.train, max_items=500)
    return data


@DATASETS.register("imagefolder")
def _load_imagefolder(data_dir: Path | None, opts: DataOptions) -> VisionData:
    """Class-per-folder images: ``data_dir/{train,test}/<class>/*`` or ``data_dir/<class>/*``."""
    root = _require_dir(data_dir, "imagefolder")
    if not root.is_dir():
        raise DataError(f"--data imagefolder: {str(root)!r} is not a directory")
    return _load_tree("imagefolder", _folder_tree(root), FolderReader(root), opts)


@DATASETS.register("imagezip")
def _load_imagezip(data_dir: Path | None, opts: DataOptions) -> VisionData:
    """A zip of class-per-folder images (``train/<class>/*``, ``test/<class>/*``), read without extracting."""
    path = _require_dir(data_dir, "imagezip")
    if not path.is_file():
        raise DataError(
            f"--data imagezip needs --data-dir pointing at a .zip file; {str(path)!r} is not a file"
        )
    return _load_tree("imagezip", _zip_tree(path), ZipReader(path), opts)
