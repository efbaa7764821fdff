"""Screenshot a run report (``report.html``) with headless Chromium.

Usage::

    python tools/screenshot_report.py RUN_DIR_OR_HTML --out shot.png [--width 1200 --height 1600]
    python tools/screenshot_report.py RUN_DIR --out alpha.png --anchor architecture-probabilities

Chromium (or Chrome) must be installed (``apt-get install -y chromium``); it runs headless, without
network, sandbox, GPU or a user profile (a temporary one is used). The picture is the top
``--width`` x ``--height`` pixels of the page (the headline of a report is at the top), or of the page
scrolled to a section with ``--anchor`` (the section's id: its title in lower case, non-alphanumerics as
``-``). With Pillow
installed the PNG is reduced to a 256-colour palette (``--colors``, 0 keeps it as Chromium wrote it), which
keeps a report screenshot well under 300 KB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser(explicit: str | None = None) -> str:
    """Path of a Chromium-like browser (``explicit``, ``$CHROMIUM`` or the first of :data:`BROWSERS`)."""
    for name in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if name:
            path = shutil.which(name)
            if path:
                return path
    raise FileNotFoundError(
        "no Chromium found (tried " + ", ".join(BROWSERS) + "); install it (apt-get install -y chromium) "
        "or pass --browser"
    )


def screenshot(
    report: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    width: int = 1200,
    height: int = 1600,
    browser: str | None = None,
    colors: int = 256,
    timeout: float = 120.0,
    anchor: str | None = None,
) -> Path:
    """Write a PNG of the top of ``report`` (a ``report.html`` or a run directory holding one)."""
    page = Path(report)
    if page.is_dir():
        page = page / "report.html"
    if not page.is_file():
        raise FileNotFoundError(f"{str(page)!r} does not exist")
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exe = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="datanas-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out_path}",
            f"--window-size={width},{height}",
            (_from_anchor(page, anchor, Path(profile)) if anchor else page.resolve()).as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0 or not out_path.is_file():
        raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    if colors:
        _quantize(out_path, colors)
    return out_path


def _from_anchor(page: Path, anchor: str, tmp: Path) -> Path:
    """A copy of ``page`` whose body starts at the element with ``id=anchor`` (a scrolled screenshot without
    relying on the browser scrolling before it paints). Report pages are self-contained (inline SVG)."""
    text = page.read_text(encoding="utf-8")
    at = text.find(f'id="{anchor}"')
    body = text.find("<body>")
    if at < 0 or body < 0:
        raise RuntimeError(f"{str(page)!r} has no element with id {anchor!r}")
    start = text.rfind("<", 0, at)
    out = tmp / "page.html"
    out.write_text(text[: body + len("<body>")] + "\n" + text[start:], encoding="utf-8")
    return out


def _quantize(path: Path, colors: int) -> None:
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=0)
    small.save(path, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="a report.html or a run directory holding one")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--width", type=int, default=1200, help="window width in pixels (default: 1200)")
    p.add_argument("--height", type=int, default=1600, help="window height in pixels (default: 1600)")
    p.add_argument("--browser", help="Chromium executable (default: $CHROMIUM or the first found on PATH)")
    p.add_argument("--colors", type=int, default=256, help="palette size, 0 for none (default: 256)")
    p.add_argument("--anchor", help="scroll to this section id first (e.g. architecture-probabilities)")
    args = p.parse_args(argv)
    try:
        path = screenshot(
            args.report,
            args.out,
            width=args.width,
            height=args.height,
            browser=args.browser,
            colors=args.colors,
            anchor=args.anchor,
        )
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{path} ({path.stat().st_size // 1024} KB)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
