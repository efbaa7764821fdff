"""tools/screenshot_report.py: the anchored page copy, and a real screenshot when Chromium is installed."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("screenshot_report", ROOT / "tools" / "screenshot_report.py")
assert _spec is not None and _spec.loader is not None
shot = importlib.util.module_from_spec(_spec)
sys.modules["screenshot_report"] = shot
_spec.loader.exec_module(shot)

PAGE = (
    "<!DOCTYPE html>\n<html><head><style>h2{color:red}</style></head><body>\n<h1>t</h1>\n"
    '<h2 id="result">Result</h2><p>top</p>\n<h2 id="architecture-probabilities">A</h2><p>alpha</p>\n'
    "</body></html>\n"
)


def test_anchor_copy_starts_at_the_section(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(PAGE)
    out = shot._from_anchor(page, "architecture-probabilities", tmp_path)
    text = out.read_text()
    assert "<style>h2{color:red}</style>" in text and "<p>alpha</p>" in text
    assert "<p>top</p>" not in text and text.index("<body>") < text.index('id="architecture-probabilities"')
    with pytest.raises(RuntimeError, match="no element with id 'nope'"):
        shot._from_anchor(page, "nope", tmp_path)


def test_missing_report_or_browser_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        shot.screenshot(tmp_path, tmp_path / "x.png")
    assert shot.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(b) for b in shot.BROWSERS), reason="no Chromium installed (apt-get install chromium)"
)
def test_screenshot_of_a_page(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(PAGE)
    out = shot.screenshot(tmp_path, tmp_path / "s.png", width=400, height=300, anchor="result")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (400, 300)
