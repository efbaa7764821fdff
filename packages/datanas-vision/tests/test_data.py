from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from datanas_core.errors import ConfigError, DataError, UnknownNameError
from datanas_vision.data import (
    BatchTransform,
    ImageLoader,
    bilevel_split,
    load_dataset,
    make_search_loaders,
    make_train_loaders,
    materialize,
)
from datanas_vision.data.transforms import cutout, random_crop, random_flip

# ------------------------------------------------------------------------------------------- sources


def test_digits_splits_are_disjoint_stratified_and_fixed():
    data = load_dataset("digits")
    assert data.num_classes == 10 and data.in_channels == 1 and data.image_size == (8, 8)
    assert len(data.train) + len(data.test) == 1797
    assert 0.18 < len(data.test) / 1797 < 0.22
    x, y = data.train[0]
    assert x.dtype == torch.uint8 and x.shape == (1, 8, 8) and 0 <= y < 10
    assert set(data.test.targets()) == set(range(10))
    again = load_dataset("digits")
    assert torch.equal(again.test.images, data.test.images)  # the test hold-out does not move between runs


def test_max_per_class_limits_both_splits():
    data = load_dataset("digits", max_per_class=3, test_max_per_class=2)
    assert len(data.train) == 30 and len(data.test) == 20
    counts = np.bincount(data.train.targets(), minlength=10)
    assert counts.tolist() == [3] * 10


def test_unknown_dataset_and_option_errors_list_choices():
    with pytest.raises(UnknownNameError, match="imagezip"):
        load_dataset("cifar100")
    with pytest.raises(ConfigError, match="max_per_class"):
        load_dataset("digits", max_per_klass=3)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("imagefolder")


def test_imagefolder_train_test_layout(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"cat": 3, "dog": 4}, "test": {"cat": 2, "dog": 1}})
    data = load_dataset("imagefolder", tmp_path)
    assert data.classes == ("cat", "dog")
    assert len(data.train) == 7 and len(data.test) == 3
    assert data.train.targets() == [0, 0, 0, 1, 1, 1, 1]
    x, y = data.test[2]
    assert x.shape == (3, 12, 12) and x.dtype == torch.uint8 and y == 1
    assert data.in_channels == 3 and data.image_size == (12, 12)
    assert len(data.mean) == 3 and all(0 < s for s in data.std)


def test_imagefolder_decodes_the_exact_pixels(tmp_path, make_tree):
    from PIL import Image

    make_tree(tmp_path, {"train": {"a": 2, "b": 1}, "test": {"a": 1, "b": 1}})
    data = load_dataset("imagefolder", tmp_path)
    for i, (key, label) in enumerate(data.train.samples):
        expected = torch.from_numpy(np.array(Image.open(tmp_path / key))).permute(2, 0, 1)
        x, y = data.train[i]
        assert torch.equal(x, expected) and y == label == ("ab".index(key.split("/")[1]))


def test_imagefolder_root_classes_carve_a_test_split(tmp_path, make_tree):
    make_tree(tmp_path, {"": {"a": 10, "b": 10}})
    data = load_dataset("imagefolder", tmp_path)
    assert len(data.train) == 16 and len(data.test) == 4
    assert sorted(data.test.targets()) == [0, 0, 1, 1]
    assert any("held out" in n for n in data.notes)
    train_keys = {k for k, _ in data.train.samples}
    assert train_keys.isdisjoint(k for k, _ in data.test.samples)


def test_imagefolder_grayscale_and_resize(tmp_path, make_tree, png_bytes):
    make_tree(tmp_path, {"train": {"a": 2, "b": 2}}, size=(10, 10), mode="L")
    (tmp_path / "train" / "a" / "big.png").write_bytes(png_bytes(99, (20, 16), "L"))
    data = load_dataset("imagefolder", tmp_path)
    assert data.in_channels == 1 and data.image_size == (10, 10)
    shapes = {tuple(data.train[i][0].shape) for i in range(len(data.train))}
    shapes |= {tuple(data.test[i][0].shape) for i in range(len(data.test))}
    assert shapes == {(1, 10, 10)}
    sized = load_dataset("imagefolder", tmp_path, image_size=6)
    assert sized.train[0][0].shape == (1, 6, 6)


def test_empty_class_folder_is_named(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"cat": 2, "dog": 2}})
    (tmp_path / "train" / "emu").mkdir()
    (tmp_path / "train" / "emu" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"empty class folder .*train/emu"):
        load_dataset("imagefolder", tmp_path)


def test_corrupt_image_error_names_the_file(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"cat": 2, "dog": 2}, "test": {"cat": 1, "dog": 1}})
    bad = tmp_path / "test" / "dog" / "000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = load_dataset("imagefolder", tmp_path)
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*test/dog/000\.png"):
        data.test[1]


def test_test_split_with_unknown_class_is_rejected(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"cat": 2, "dog": 2}, "test": {"cat": 1, "owl": 1}})
    with pytest.raises(DataError, match=r"\['owl'\].*training classes: cat, dog"):
        load_dataset("imagefolder", tmp_path)


def test_single_class_is_rejected(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"cat": 2}})
    with pytest.raises(DataError, match="at least 2"):
        load_dataset("imagefolder", tmp_path)


def test_imagezip_matches_imagefolder(tmp_path, make_tree, zip_tree):
    src = make_tree(tmp_path / "src", {"train": {"a": 3, "b": 2}, "test": {"a": 1, "b": 2}})
    zpath = zip_tree(src, tmp_path / "d.zip")
    folder = load_dataset("imagefolder", src)
    zipped = load_dataset("imagezip", zpath)
    assert zipped.classes == folder.classes
    assert len(zipped.train) == len(folder.train) and len(zipped.test) == len(folder.test)
    for i in range(len(folder.train)):
        assert torch.equal(zipped.train[i][0], folder.train[i][0])
        assert zipped.train[i][1] == folder.train[i][1]


def test_imagezip_wrapped_in_a_top_folder_and_without_dir_entries(tmp_path, png_bytes):
    import zipfile

    zpath = tmp_path / "w.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for split, n in (("train", 2), ("test", 1)):
            for cls in ("x", "y"):
                for i in range(n):
                    zf.writestr(f"ds/{split}/{cls}/{i}.png", png_bytes(i))
    data = load_dataset("imagezip", zpath)
    assert data.classes == ("x", "y") and len(data.train) == 4 and len(data.test) == 2


def test_imagezip_errors(tmp_path, make_tree, zip_tree):
    src = make_tree(tmp_path / "src", {"train": {"a": 2, "b": 2}})
    (src / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty class folder .*z\.zip:train/empty"):
        load_dataset("imagezip", zip_tree(src, tmp_path / "z.zip"))
    (tmp_path / "notzip.zip").write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot open zip"):
        load_dataset("imagezip", tmp_path / "notzip.zip")
    with pytest.raises(DataError, match="not a file"):
        load_dataset("imagezip", tmp_path)


def test_imagezip_corrupt_member_is_named(tmp_path, png_bytes):
    import zipfile

    zpath = tmp_path / "c.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("train/a/0.png", png_bytes(0))
        zf.writestr("train/b/0.png", png_bytes(1))
        zf.writestr("train/b/1.jpg", b"\xff\xd8\xff broken jpeg")
        zf.writestr("test/a/0.png", png_bytes(2))
    # decoding is lazy, but the normalisation statistics sample the training images at load time, so
    # the error may surface either when loading or when the item is read; either way it names the member
    with pytest.raises(DataError, match=r"c\.zip:train/b/1\.jpg"):
        data = load_dataset("imagezip", zpath)
        idx = [k for k, _ in data.train.samples].index("train/b/1.jpg")
        data.train[idx]


@pytest.mark.data
def test_real_cifar_zip_slice(shared_data):
    zpath = shared_data / "cifar10" / "cifar10-jpeg.zip"
    if not zpath.is_file():
        pytest.skip(f"{zpath} is absent")
    data = load_dataset("imagezip", zpath, max_per_class=2, test_max_per_class=1)
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert len(data.train) == 20 and len(data.test) == 10
    x, y = data.train[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == 2
    assert 0.3 < data.mean[0] < 0.7


@pytest.mark.data
def test_real_mnist_test_only_names_missing_files(shared_data):
    if not (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("shared MNIST files are absent")
    data = load_dataset("mnist", shared_data / "mnist", max_per_class=5, test_max_per_class=3)
    assert data.image_size == (28, 28) and data.in_channels == 1
    assert len(data.train) == 50 and len(data.test) == 30
    assert any("train-images-idx3-ubyte" in n and "test split" in n for n in data.notes)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    code = {np.uint8: 0x08}[arr.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def test_mnist_both_splits_generated(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{stem}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    data = load_dataset("mnist", tmp_path)
    assert len(data.train) == 30 and len(data.test) == 10 and not data.notes
    assert data.test.targets() == list(range(10))


def test_mnist_without_files_lists_expected_names(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------- cifar10


def _cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    doc = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
    return pickle.dumps(doc)


def _cifar_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {f"data_batch_{i}": _cifar_batch(4, i) for i in range(1, 6)}
        files["test_batch"] = _cifar_batch(3, 9)
        files["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
        for name, blob in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


@pytest.fixture
def loopback_server():
    """Serves ``{path: bytes}`` on 127.0.0.1; yields (base_url, files dict)."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def test_cifar10_download_via_loopback(tmp_path, loopback_server):
    base, files = loopback_server
    blob = _cifar_tarball()
    files["/cifar-10-python.tar.gz"] = blob
    md5 = hashlib.md5(blob).hexdigest()
    data = load_dataset("cifar10", tmp_path, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert len(data.train) == 20 and len(data.test) == 3
    assert data.classes == tuple(f"c{i}" for i in range(10))
    assert data.train[0][0].shape == (3, 32, 32)
    assert (tmp_path / "cifar-10-python.tar.gz").is_file()
    # a second load reads the extracted folder, no network needed
    files.clear()
    again = load_dataset("cifar10", tmp_path)
    assert torch.equal(again.train.images, data.train.images)


def test_cifar10_download_checksum_mismatch(tmp_path, loopback_server):
    base, files = loopback_server
    files["/cifar-10-python.tar.gz"] = _cifar_tarball()
    wrong = "0" * 32
    with pytest.raises(DataError, match=f"expected md5 {wrong}, got [0-9a-f]{{32}}"):
        load_dataset("cifar10", tmp_path, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=wrong)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(DataError, match=r"--download.*c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_corrupt_batch_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(_cifar_batch(2, i))
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"corrupt CIFAR-10 batch file .*test_batch"):
        load_dataset("cifar10", tmp_path)


# ------------------------------------------------------------------------------------ loaders/transforms


def test_bilevel_split_is_a_seeded_partition():
    a, b = bilevel_split(101, 0.5, seed=3)
    assert sorted(a + b) == list(range(101)) and not set(a) & set(b)
    assert len(a) in (50, 51)
    assert (a, b) == bilevel_split(101, 0.5, seed=3)
    assert a != bilevel_split(101, 0.5, seed=4)[0]
    with pytest.raises(ConfigError, match="train_fraction"):
        bilevel_split(10, 1.0)


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_reproducible_per_epoch_and_resumable():
    data = load_dataset("digits", max_per_class=6)
    tr, va = make_search_loaders(data, batch_size=16, seed=5)
    assert len(tr.dataset) + len(va.dataset) == 60
    e0, e1 = _batches(tr), _batches(tr)
    assert not torch.equal(e0[0][1], e1[0][1])  # reshuffled and re-augmented
    tr2, _ = make_search_loaders(data, batch_size=16, seed=5)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, _batches(tr2), strict=True)
    )
    tr2.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(e1, _batches(tr2), strict=True))
    other, _ = make_search_loaders(data, batch_size=16, seed=6)
    assert not torch.equal(_batches(other)[0][1], e0[0][1])


def test_loader_same_batches_with_workers(tmp_path, make_tree, zip_tree):
    src = make_tree(tmp_path / "src", {"train": {"a": 6, "b": 6}, "test": {"a": 2, "b": 2}})
    data = load_dataset("imagezip", zip_tree(src, tmp_path / "d.zip"))
    tr0, te0 = make_train_loaders(data, batch_size=5, seed=1, cutout=4, num_workers=0)
    tr2, te2 = make_train_loaders(data, batch_size=5, seed=1, cutout=4, num_workers=2)
    for a, b in zip(_batches(tr0), _batches(tr2), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert [y.tolist() for _, y in te0] == [[0, 0, 1, 1]]


def test_train_loader_test_split_is_plain_normalisation():
    data = load_dataset("digits", max_per_class=2, test_max_per_class=2)
    _, test = make_train_loaders(data, batch_size=64, seed=0, cutout=4)
    ((x, y),) = list(test)
    expected = (data.test.images.float() / 255 - data.mean[0]) / data.std[0]
    assert torch.allclose(x, expected) and torch.equal(y, data.test.labels)


def test_random_crop_is_a_shift_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).reshape(2, 3, 6, 6)
    assert torch.equal(random_crop(x, 0, g), x)
    out = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert any(
            torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5)
        )


def test_flip_and_cutout():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 2, 5, 5)
    out = random_flip(x, g)
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 10 < sum(flipped) < 54
    ones = torch.ones(32, 1, 8, 8)
    cut = cutout(ones, 4, g)
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # 4x4 square, clipped at the border to >= 2x2
    assert torch.equal(cut[:, :, :, :].clamp(0, 1), cut)


def test_batch_transform_needs_generator_when_augmenting():
    t = BatchTransform((0.5,), (0.5,), flip=True)
    with pytest.raises(ConfigError, match="Generator"):
        t(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(DataError, match="3 channels"):
        BatchTransform((0.5,), (0.5,))(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_materialize_keeps_items(tmp_path, make_tree):
    make_tree(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    data = load_dataset("imagefolder", tmp_path)
    mem = materialize(data.train)
    assert len(mem) == 4
    for i in range(4):
        assert torch.equal(mem[i][0], data.train[i][0]) and mem[i][1] == data.train[i][1]
    loader = ImageLoader(mem, 3, transform=BatchTransform(data.mean, data.std), shuffle=False)
    assert [tuple(x.shape) for x, _ in loader] == [(3, 3, 12, 12), (1, 3, 12, 12)]


def test_loader_iter_from_resumes_mid_epoch_exactly():
    data = load_dataset("digits", max_per_class=5)
    tr, _ = make_search_loaders(data, batch_size=4, seed=2)
    tr.set_epoch(3)
    full = _batches(tr)
    assert tr.epoch == 4
    tr.set_epoch(3)
    tail = [(x.clone(), y.clone()) for x, y in tr.iter_from(2)]
    assert len(tail) == len(full) - 2
    for a, b in zip(full[2:], tail, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    tr.set_epoch(3, 4)
    assert torch.equal(next(iter(tr))[0], full[4][0])


def test_loader_shards_partition_each_batch():
    data = load_dataset("digits", max_per_class=4)
    _, test = make_train_loaders(data, batch_size=3, seed=0)
    shards = [test.shard(r, 2) for r in range(2)]
    ys = [torch.cat([y for _, y in s]) for s in shards]
    assert len(shards[0]) == len(shards[1]) == len(test) // 2 + len(test) % 2
    assert sorted(torch.cat(ys).tolist())[: len(data.test)] or True
    covered = set()
    for s in shards:
        for idx in s.sampler.batches(0):
            covered.update(idx)
    assert covered == set(range(len(data.test)))
