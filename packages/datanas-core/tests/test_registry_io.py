from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import pytest
import torch

from datanas_core.errors import ConfigError, DataError, UnknownNameError
from datanas_core.io import atomic_write_text, download, file_digest, read_idx, verify_checksum
from datanas_core.registry import Registry


def test_registry_lookup_error_lists_names_and_suggests() -> None:
    r: Registry[type] = Registry("estimator")
    r.register("egs", dict)
    r.register("gdas", list)
    with pytest.raises(
        UnknownNameError,
        match=r"unknown estimator 'eggs'; valid estimator names: egs, gdas\. Did you mean 'egs'",
    ):
        r.get("eggs")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch builtins
        r.get("x")
    with pytest.raises(ConfigError, match="already registered"):
        r.register("egs", set)


def test_registry_build_checks_kwargs() -> None:
    r: Registry[object] = Registry("thing")

    def make(a: int, b: int = 2) -> tuple[int, int]:
        return (a, b)

    r.register("make", make)
    assert r.build({"type": "make", "a": 1}) == (1, 2)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['c'\]; valid options: a, b"):
        r.build({"type": "make", "a": 1, "c": 3})
    with pytest.raises(ConfigError, match="needs a 'type' key"):
        r.build({"a": 1})


def test_atomic_write_and_checksums(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "a" / "f.txt", "hello")
    assert p.read_text() == "hello"
    assert file_digest(p, "md5") == hashlib.md5(b"hello").hexdigest()
    verify_checksum(p, md5=hashlib.md5(b"hello").hexdigest())
    with pytest.raises(DataError, match=r"expected md5 0+, got 5d41"):
        verify_checksum(p, md5="0" * 32)


def _serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


def test_download_from_loopback_verifies_checksum(tmp_path: Path) -> None:
    src = tmp_path / "srv"
    src.mkdir()
    (src / "data.bin").write_bytes(b"x" * 1000)
    server = _serve(src)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.bin"
        good = hashlib.md5(b"x" * 1000).hexdigest()
        out = download(url, tmp_path / "dl" / "data.bin", md5=good)
        assert out.read_bytes() == b"x" * 1000
        with pytest.raises(DataError, match="checksum mismatch"):
            download(url, tmp_path / "dl2" / "data.bin", md5="1" * 32)
        assert not (tmp_path / "dl2" / "data.bin").exists()
        assert not (tmp_path / "dl2").exists()  # no partial file, and the directory it made is gone
        with pytest.raises(DataError, match="place the file"):
            download(url + "-missing", tmp_path / "dl3" / "x.bin")
    finally:
        server.shutdown()


def test_read_idx_uint8_and_int32(tmp_path: Path) -> None:
    data = bytes(range(6))
    (tmp_path / "a.idx").write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + data)
    t = read_idx(tmp_path / "a.idx")
    assert t.shape == (2, 3) and t.dtype == torch.uint8 and t.flatten().tolist() == list(range(6))
    with gzip.open(tmp_path / "b.idx.gz", "wb") as fh:
        fh.write(b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + struct.pack(">ii", -5, 7))
    assert read_idx(tmp_path / "b.idx.gz").tolist() == [-5, 7]
    (tmp_path / "c.idx").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x01")
    with pytest.raises(DataError, match="expected 10"):
        read_idx(tmp_path / "c.idx")
    (tmp_path / "d.idx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "d.idx")
