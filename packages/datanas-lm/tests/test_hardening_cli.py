"""LM data: nothing is downloaded without --download, and a failed download creates nothing."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from datanas_core.errors import DataError
from datanas_lm import search
from datanas_lm.data import ptb as ptb_module


def test_missing_data_dir_creates_nothing_and_does_not_download(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*a: Any, **k: Any) -> None:
        raise AssertionError("download attempted without --download")

    monkeypatch.setattr(ptb_module, "download", no_network)
    caplog.set_level(logging.ERROR)
    missing = tmp_path / "nonexistent"
    assert search.main(["--data", "ptb", "--data-dir", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert not missing.exists()
    assert "ptb.train.txt" in caplog.text and "--download" in caplog.text


def test_failed_download_leaves_no_directories(tmp_path: Path) -> None:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(DataError, match="download failed"):
            ptb_module.ensure_ptb(tmp_path / "new" / "ptb", base_url=url, download_missing=True)  # 404
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "new").exists()
