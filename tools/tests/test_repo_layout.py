"""Tests of the repository wiring: package files, entry points, README commands, CI script, Makefile."""

from __future__ import annotations

import importlib
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("datanas-*/pyproject.toml"))


def _project(pkg: Path) -> dict:
    return tomllib.loads((pkg / "pyproject.toml").read_text())["project"]


def test_five_packages() -> None:
    names = [p.name for p in PACKAGES]
    assert names == ["datanas-core", "datanas-fewshot", "datanas-lm", "datanas-seg", "datanas-vision"]


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_package_files_and_metadata(pkg: Path) -> None:
    for name in ("README.md", "LICENSE", "CHANGELOG.md"):
        assert (pkg / name).is_file(), f"{pkg.name}/{name} missing"
    project = _project(pkg)
    assert project["name"] == pkg.name
    assert project["readme"] == "README.md"
    assert project["requires-python"] == ">=3.10,<3.13"
    assert f"## [{project['version']}]" in (pkg / "CHANGELOG.md").read_text(), "changelog lacks the version"
    build = tomllib.loads((pkg / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "poetry.core.masonry.api"
    poetry = tomllib.loads((pkg / "pyproject.toml").read_text())["tool"]["poetry"]
    expected = [{"include": pkg.name.replace("-", "_"), "from": "src"}]
    if pkg.name == "datanas-core":  # also ships the `datanas` console-script dispatcher (imports no torch)
        expected.append({"include": "datanas", "from": "src"})
    assert poetry["packages"] == expected


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_registered_commands_resolve(pkg: Path) -> None:
    """Every ``datanas.commands`` entry point names a ``main`` function of an existing module file."""
    commands = _project(pkg).get("entry-points", {}).get("datanas.commands", {})
    assert commands, f"{pkg.name} registers no command of the datanas console script"
    for name, target in commands.items():
        module, _, func = target.partition(":")
        assert func == "main", f"{name} -> {target}"
        rel = Path("src", *module.split("."))
        assert (pkg / rel.with_suffix(".py")).is_file(), f"{name} -> {target}: no {rel}.py"


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_advertised_spaces_resolve(pkg: Path) -> None:
    """Every ``datanas.spaces`` entry point names an importable class."""
    advertised = _project(pkg).get("entry-points", {}).get("datanas.spaces", {})
    for name, target in advertised.items():
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        assert isinstance(obj, type), (name, target)
        assert name.split(".", 1)[0] == pkg.name.removeprefix("datanas-"), f"{name} lacks the domain prefix"


def test_readme_names_the_two_commands_and_ci_runs_them() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "set -euo pipefail" in text
    assert "make test" in text and "make lint" in text


def test_make_test_runs_the_default_suite_then_the_slow_tests() -> None:
    # Strip make's own variables: under `make test` this runs as a sub-make, which prints directory lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env=env,
    ).stdout
    lines = [line for line in out.splitlines() if "pytest" in line]
    assert lines == [".venv/bin/python -m pytest -q", ".venv/bin/python -m pytest -q -m slow"]
    assert "setup.sh" in out.splitlines()[0]
