"""Check that pytest is configured in one place: the root pyproject.toml.

pytest picks the first configuration it finds walking up from the directories it is given, so a package
that carried its own ``[tool.pytest.ini_options]`` (or a ``pytest.ini``/``tox.ini``/``setup.cfg`` section)
would run with other options and markers when tested from its directory than from the root. The rule:

* a package may not have a ``pytest.ini``, a ``[pytest]`` section in ``tox.ini`` or a ``[tool:pytest]``
  section in ``setup.cfg``;
* a package ``pyproject.toml`` may have ``[tool.pytest.ini_options]`` only if its marker names equal the
  root's (the same list, so ``--strict-markers`` behaves the same everywhere);
* no ``conftest.py`` registers markers of its own (``config.addinivalue_line("markers", ...)``).

Usage: ``python tools/check_markers.py`` (exit status 1 and one line per problem when the rule is broken).
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

_ADD_MARKER = re.compile(r"addinivalue_line\(\s*[\"']markers[\"']")


def marker_names(markers: Iterable[str]) -> list[str]:
    """Names of pytest ``markers`` ini entries (``"slow: long test"`` -> ``"slow"``), in order."""
    return [m.split(":", 1)[0].split("(", 1)[0].strip() for m in markers]


def pytest_section(pyproject: Path) -> dict | None:
    """The ``[tool.pytest.ini_options]`` table of a pyproject.toml, or None."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return data.get("tool", {}).get("pytest", {}).get("ini_options")


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def check_package(pkg_dir: Path, root_markers: Sequence[str], root: Path = ROOT) -> list[str]:
    """Problems with the pytest configuration of one package directory."""
    problems = []
    rel = _rel(pkg_dir, root)
    if (pkg_dir / "pytest.ini").exists():
        problems.append(f"{rel}/pytest.ini: pytest is configured in the root pyproject.toml only; remove it")
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        path = pkg_dir / name
        if path.exists():
            cfg = configparser.ConfigParser()
            cfg.read(path, encoding="utf-8")
            if cfg.has_section(section):
                problems.append(
                    f"{rel}/{name}: [{section}] configures pytest; keep it in the root pyproject.toml"
                )
    pyproject = pkg_dir / "pyproject.toml"
    if pyproject.exists():
        section = pytest_section(pyproject)
        if section is not None:
            names = marker_names(section.get("markers", []))
            if names != list(root_markers):
                expected = list(root_markers)
                problems.append(
                    f"{rel}/pyproject.toml: pytest markers {names} differ from the root's {expected}"
                )
    for conftest in sorted(pkg_dir.rglob("conftest.py")):
        if _ADD_MARKER.search(conftest.read_text(encoding="utf-8")):
            problems.append(
                f"{_rel(conftest, root)}: registers pytest markers; declare them in the root pyproject.toml"
            )
    return problems


def check(root: Path = ROOT) -> list[str]:
    """Problems across every package under ``root/packages``."""
    section = pytest_section(root / "pyproject.toml")
    if section is None:
        return ["pyproject.toml: the root has no [tool.pytest.ini_options]"]
    root_markers = marker_names(section.get("markers", []))
    problems = []
    for pkg_dir in sorted(p for p in (root / "packages").iterdir() if p.is_dir()):
        problems += check_package(pkg_dir, root_markers, root)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    problems = check(args.root.resolve())
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print("check_markers: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
