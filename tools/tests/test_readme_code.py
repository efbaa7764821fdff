"""The Python code blocks of README.md and packages/*/README.md run verbatim.

Every fenced ``python`` block runs, unless the line before its fence (blank lines aside) is an HTML comment
``<!-- not-run: reason -->`` (a block that needs data files, a GPU, ...). The runnable blocks of one README
run in order in one namespace (later blocks use the names of earlier ones), in a fresh Python process whose
working directory is a temporary folder; a failing block fails the test with its README line number.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = sorted([ROOT / "README.md", *ROOT.glob("packages/*/README.md")])

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->\s*$")

# runs the blocks given as JSON on stdin in one namespace; exit status 3 names the failing block
_DRIVER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for block in blocks:
    try:
        exec(compile(block["code"], f"{block['file']}:{block['line']}", "exec"), ns)
    except BaseException:
        traceback.print_exc()
        sys.stderr.write(f"\nREADME block failed: {block['file']} line {block['line']}\n")
        sys.exit(3)
"""


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None


def code_blocks(text: str, file: str = "README.md") -> list[Block]:
    """Fenced code blocks of a Markdown text, with the ``not-run`` reason of the comment before each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        reason = _NOT_RUN.match(lines[k].strip()) if k >= 0 else None
        code = "\n".join(lines[start + 1 : j]) + "\n"
        blocks.append(Block(file, start + 1, lang, code, reason.group(1) if reason else None))
        i = j + 1
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in ("python", "py") and b.skip_reason is None]


def run_blocks(blocks: list[Block], cwd: Path, *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    payload = json.dumps([{"file": b.file, "line": b.line, "code": b.code} for b in blocks])
    return subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=payload,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_blocks_are_found_and_not_run_comments_are_honoured(tmp_path: Path) -> None:
    text = (
        "# t\n\n```python\nx = 1\n```\n\n<!-- not-run: needs data -->\n\n```python\nraise SystemExit(9)\n```\n"
        "```bash\nls\n```\n```python\nassert x == 1\nopen('out.txt', 'w').write('ok')\n```\n"
    )
    blocks = code_blocks(text)
    assert [(b.lang, b.line, b.skip_reason) for b in blocks] == [
        ("python", 3, None),
        ("python", 9, "needs data"),
        ("bash", 12, None),
        ("python", 15, None),
    ]
    res = run_blocks(runnable(blocks), tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.txt").read_text() == "ok"  # blocks share a namespace and run in cwd


def test_a_failing_block_fails_with_its_line(tmp_path: Path) -> None:
    blocks = code_blocks("intro\n\n```python\nx = 1\n```\n\n```python\n1 / 0\n```\n", "X.md")
    res = run_blocks(runnable(blocks), tmp_path, timeout=120)
    assert res.returncode == 3 and "ZeroDivisionError" in res.stderr
    assert "README block failed: X.md line 7" in res.stderr


def test_every_python_block_runs_or_says_why_not() -> None:
    """A Python block that cannot run must carry a reason (and a reason must not be empty)."""
    found = 0
    for readme in READMES:
        for b in code_blocks(readme.read_text(encoding="utf-8"), _rel(readme)):
            if b.lang in ("python", "py"):
                found += 1
                assert b.skip_reason is None or b.skip_reason.strip(), f"{b.file}:{b.line}"
    assert found > 0


@pytest.mark.slow
@pytest.mark.parametrize("readme", READMES, ids=[_rel(p) for p in READMES])
def test_readme_python_blocks_run_verbatim(readme: Path, tmp_path: Path) -> None:
    blocks = runnable(code_blocks(readme.read_text(encoding="utf-8"), _rel(readme)))
    if not blocks:
        pytest.skip(f"{_rel(readme)} has no runnable Python block")
    if "datanas-seg" in str(readme) and any("mmseg" in b.code for b in blocks):
        pytest.importorskip("mmseg")
    res = run_blocks(blocks, tmp_path)
    assert res.returncode == 0, f"{res.stderr[-4000:]}"
