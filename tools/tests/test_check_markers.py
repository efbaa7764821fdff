"""Tests of tools/check_markers.py (pytest configured only in the root pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import check_markers as cm

ROOT_PYPROJECT = """
[tool.pytest.ini_options]
markers = ["slow: long", "gpu: cuda", "data: dataset", "mmseg: host", "l2l: host"]
"""


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(ROOT_PYPROJECT)
    for name in ("datanas-core", "datanas-seg"):
        (tmp_path / "packages" / name / "tests").mkdir(parents=True)
        (tmp_path / "packages" / name / "pyproject.toml").write_text('[project]\nname = "x"\n')
    return tmp_path


def test_marker_names_strip_descriptions() -> None:
    assert cm.marker_names(["slow: long-running", "gpu", "param(x): with args"]) == ["slow", "gpu", "param"]


def test_the_repository_follows_the_rule() -> None:
    assert cm.check() == []


def test_packages_without_pytest_config_pass(tmp_path: Path) -> None:
    assert cm.check(_repo(tmp_path)) == []


def test_package_with_the_same_markers_passes(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "packages/datanas-seg/pyproject.toml").write_text(ROOT_PYPROJECT.replace("long", "other words"))
    assert cm.check(root) == []


def test_package_with_different_markers_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "packages/datanas-seg/pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["slow: long", "mmseg: host"]\n'
    )
    problems = cm.check(root)
    assert len(problems) == 1
    assert "packages/datanas-seg/pyproject.toml" in problems[0] and "['slow', 'mmseg']" in problems[0]


def test_other_pytest_config_files_fail(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "packages/datanas-core/pytest.ini").write_text("[pytest]\n")
    (root / "packages/datanas-core/setup.cfg").write_text("[tool:pytest]\naddopts = -x\n")
    (root / "packages/datanas-seg/tox.ini").write_text("[tox]\nenvlist = py311\n")  # no [pytest]: fine
    problems = cm.check(root)
    assert len(problems) == 2
    assert any("pytest.ini" in p for p in problems) and any("[tool:pytest]" in p for p in problems)


def test_conftest_registering_markers_fails(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "packages/datanas-seg/tests/conftest.py").write_text(
        "def pytest_configure(config):\n    config.addinivalue_line('markers', 'mine: x')\n"
    )
    problems = cm.check(root)
    assert len(problems) == 1
    assert problems[0].startswith("packages/datanas-seg/tests/conftest.py: registers pytest markers")


def test_main_exit_status(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    assert cm.main(["--root", str(root)]) == 0
    (root / "packages/datanas-core/pytest.ini").write_text("[pytest]\n")
    assert cm.main(["--root", str(root)]) == 1
