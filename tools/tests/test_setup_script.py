"""Tests of tools/setup.sh paths that install nothing: Python version gate, stamp, build-tool check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "tools" / "setup.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("EXTRAS", "FORCE", "CC", "PYTHON", "VENV")}
    full_env.update(env)
    return subprocess.run(
        ["bash", str(SETUP), *args], capture_output=True, text=True, env=full_env, timeout=60
    )


def _fake_python(path: Path, version: str, include: str = "/nonexistent") -> Path:
    """A stand-in interpreter: reports `version` to the version gate and `include` as its header dir."""
    major, minor = (int(x) for x in version.split(".")[:2])
    ok = (3, 10) <= (major, minor) < (3, 13)
    path.write_text(
        "#!/bin/sh\n"
        'case "$2" in *sysconfig*) echo ' + include + "; exit 0 ;; esac\n"
        f"echo {version}\nexit {0 if ok else 1}\n"
    )
    path.chmod(0o755)
    return path


def _fake_venv(tmp_path: Path, python: Path | None = None) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(python or Path(sys.executable))
    return venv


def test_unsupported_interpreter_stops_with_instructions(tmp_path: Path) -> None:
    py = _fake_python(tmp_path / "python3.9", "3.9.18")
    proc = _run(PYTHON=str(py), VENV=str(tmp_path / "new-venv"))
    assert proc.returncode == 2
    assert "Python 3.9.18" in proc.stderr and "3.10, 3.11 or 3.12" in proc.stderr
    assert "make setup PYTHON=python3.11" in proc.stderr
    assert not (tmp_path / "new-venv").exists()


def test_missing_interpreter_is_reported(tmp_path: Path) -> None:
    proc = _run(PYTHON=str(tmp_path / "no-such-python"), VENV=str(tmp_path / "new-venv"))
    assert proc.returncode == 2 and "No interpreter" in proc.stderr


def test_existing_venv_with_wrong_python_is_reported(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, _fake_python(tmp_path / "py313", "3.13.1"))
    proc = _run(VENV=str(venv))
    assert proc.returncode == 2 and "uses Python 3.13.1" in proc.stderr and "rm -rf" in proc.stderr


def test_matching_stamp_makes_setup_a_no_op(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    stamp_hash = _run("--stamp-hash", VENV=str(venv))
    assert stamp_hash.returncode == 0 and len(stamp_hash.stdout.strip()) == 64
    (venv / ".datanas-setup.stamp").write_text(stamp_hash.stdout)
    start = time.monotonic()
    proc = _run(VENV=str(venv))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    assert time.monotonic() - start < 10


def test_stamp_hash_depends_on_extras(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    hashes = {
        _run("--stamp-hash", VENV=str(venv), **env).stdout
        for env in ({}, {"EXTRAS": "mmseg"}, {"EXTRAS": ""})
    }
    assert len(hashes) == 3


def test_missing_compiler_is_explained(tmp_path: Path) -> None:
    proc = _run("--check-build-tools", CC=str(tmp_path / "no-cc"), VENV=str(tmp_path / "none"))
    assert proc.returncode != 0
    assert "no C compiler" in proc.stderr and "build-essential" in proc.stderr
    assert "make setup EXTRAS=mmseg" in proc.stderr


def test_missing_python_headers_are_explained(tmp_path: Path) -> None:
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\n")
    cc.chmod(0o755)
    py = _fake_python(tmp_path / "python3.11", "3.11.7", include=str(tmp_path / "include"))
    proc = _run("--check-build-tools", CC=str(cc), PYTHON=str(py), VENV=str(tmp_path / "none"))
    assert proc.returncode != 0
    assert "Python.h" in proc.stderr and "python3-dev" in proc.stderr


@pytest.mark.skipif(not any(Path(d, "cc").exists() for d in os.environ["PATH"].split(":")), reason="no cc")
def test_build_tools_present_pass() -> None:
    proc = _run("--check-build-tools", VENV=str(ROOT / ".venv"))
    assert proc.returncode == 0 and "ok" in proc.stdout


def test_unknown_option_is_rejected() -> None:
    proc = _run("--frobnicate")
    assert proc.returncode == 2 and "usage" in proc.stderr
