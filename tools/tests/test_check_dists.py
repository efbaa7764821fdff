"""Tests of tools/check_dists.py: fast unit tests of its checks, and the full build+install check (slow)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import check_dists as cd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _metadata(name: str, version: str, requires: list[str]) -> str:
    lines = ["Metadata-Version: 2.3", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def _make_wheel(dist: Path, name: str, version: str, requires: list[str], files: dict[str, str]) -> Path:
    stem = f"{cd.import_name(name)}-{version}"
    path = dist / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in files.items():
            zf.writestr(member, text)
        zf.writestr(f"{stem}.dist-info/METADATA", _metadata(name, version, requires))
        zf.writestr(f"{stem}.dist-info/licenses/LICENSE", "Apache License")
    (dist / f"{stem}.tar.gz").write_bytes(b"")
    return path


# --- Requires-Dist ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requirement",
    [
        "datanas-core @ file:///home/me/datanas/packages/datanas-core",
        "datanas-core@file:///tmp/x",
        "datanas-core @ https://example.org/datanas_core-0.1.0-py3-none-any.whl",
    ],
)
def test_direct_references_are_rejected(requirement: str) -> None:
    problems = cd.direct_reference_problems(["torch>=2.1", requirement])
    assert len(problems) == 1
    assert requirement in problems[0] and "direct reference" in problems[0]


def test_version_ranges_are_accepted() -> None:
    reqs = ["datanas-core (>=0.1,<0.2)", "torch>=2.1", 'mmcv-lite<2.2.0,>=2.0.0rc4; extra == "mmseg"']
    assert cd.direct_reference_problems(reqs) == []


def test_read_wheel_parses_metadata(tmp_path: Path) -> None:
    reqs = ["datanas-core (>=0.1,<0.2)", 'ftfy ; extra == "mmseg"']
    path = _make_wheel(tmp_path, "datanas-seg", "0.1.0", reqs, {"datanas_seg/__init__.py": ""})
    info = cd.read_wheel(path)
    assert (info.name, info.version, info.requires) == ("datanas-seg", "0.1.0", tuple(reqs))
    assert "datanas_seg/__init__.py" in info.files


def test_parse_metadata_requires_name_and_version() -> None:
    with pytest.raises(ValueError, match="Name or Version"):
        cd.parse_metadata("Metadata-Version: 2.3\nName: x\n\n")


# --- core range -------------------------------------------------------------------------------------------


def _info(name: str, requires: list[str]) -> cd.WheelInfo:
    return cd.WheelInfo(Path(f"{name}.whl"), name, "0.1.0", tuple(requires), frozenset())


def test_core_range_admitting_local_core_passes() -> None:
    assert cd.core_range_problems(_info("datanas-seg", ["datanas-core (>=0.1,<0.2)"]), "0.1.0") == []
    assert cd.core_range_problems(_info("datanas-seg", ["datanas-core>=0.1,<0.2"]), "0.1.7") == []


def test_core_range_excluding_local_core_fails() -> None:
    problems = cd.core_range_problems(_info("datanas-seg", ["datanas-core (>=0.1,<0.2)"]), "0.2.0")
    assert len(problems) == 1 and "does not admit the local core version 0.2.0" in problems[0]


def test_missing_or_unbounded_core_requirement_fails() -> None:
    assert (
        "does not require datanas-core" in cd.core_range_problems(_info("datanas-lm", ["torch"]), "0.1.0")[0]
    )
    only_extra = _info("datanas-lm", ['datanas-core>=0.1; extra == "x"'])
    assert "unconditionally" in cd.core_range_problems(only_extra, "0.1.0")[0]
    assert "no version range" in cd.core_range_problems(_info("datanas-lm", ["datanas-core"]), "0.1.0")[0]


def test_core_itself_needs_no_core_range() -> None:
    assert cd.core_range_problems(_info("datanas-core", ["torch>=2.1"]), "0.1.0") == []


# --- package data -----------------------------------------------------------------------------------------


def _src_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "datanas_vision" / "genotypes").mkdir(parents=True)
    (src / "datanas_vision" / "__init__.py").write_text("")
    (src / "datanas_vision" / "genotypes" / "data.json").write_text("{}")
    (src / "datanas_vision" / "__pycache__").mkdir()
    (src / "datanas_vision" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    return src


def test_package_data_missing_from_wheel_is_reported(tmp_path: Path) -> None:
    src = _src_tree(tmp_path)
    wheel = cd.WheelInfo(
        Path("w.whl"), "datanas-vision", "0.1.0", (), frozenset({"datanas_vision/__init__.py"})
    )
    problems = cd.package_data_problems(wheel, src)
    assert problems == [
        "datanas-vision: datanas_vision/genotypes/data.json is not in w.whl",
        "datanas-vision: the wheel carries no LICENSE file",
    ]


def test_complete_wheel_passes_and_tests_package_is_rejected(tmp_path: Path) -> None:
    src = _src_tree(tmp_path)
    files = {
        "datanas_vision/__init__.py",
        "datanas_vision/genotypes/data.json",
        "x.dist-info/licenses/LICENSE",
    }
    wheel = cd.WheelInfo(Path("w.whl"), "datanas-vision", "0.1.0", (), frozenset(files))
    assert cd.package_data_problems(wheel, src) == []
    with_tests = cd.WheelInfo(Path("w.whl"), "datanas-vision", "0.1.0", (), frozenset(files | {"tests/t.py"}))
    assert cd.package_data_problems(with_tests, src) == [
        "datanas-vision: the wheel ships a top-level 'tests' package"
    ]


def test_namespace_package_without_init_is_rejected(tmp_path: Path) -> None:
    src = _src_tree(tmp_path)
    (src / "datanas_vision" / "__init__.py").unlink()
    wheel = cd.WheelInfo(
        Path("w.whl"), "datanas-vision", "0.1.0", (), frozenset({"datanas_vision/genotypes/data.json"})
    )
    assert any("__init__.py" in p for p in cd.package_data_problems(wheel, src))


# --- dependency closure (what the fresh venv may see) -----------------------------------------------------


def test_dependency_closure_follows_markers_and_extras() -> None:
    requires_of = {
        "a": ["b>=1", 'c; extra == "x"', 'old; python_version < "3"', "Mixed_Case"],
        "b": ["d"],
        "c": [],
        "d": [],
        "mixed-case": [],
    }
    assert cd.dependency_closure(["a"], requires_of) == ({"a", "b", "d", "mixed-case"}, set())
    assert cd.dependency_closure(["a[x]"], requires_of) == ({"a", "b", "c", "d", "mixed-case"}, set())
    assert cd.dependency_closure(["a", "ghost"], requires_of)[1] == {"ghost"}


def test_top_level_entries_skip_scripts_and_editable_hooks() -> None:
    files = [
        "torch/__init__.py",
        "torch-2.14.1.dist-info/RECORD",
        "../../../bin/torchrun",
        "__editable__.datanas_core-0.1.0.pth",
        "datanas_core.pth",
        "functorch/__init__.py",
    ]
    assert cd.top_level_entries(files) == {"torch", "torch-2.14.1.dist-info", "functorch"}


# --- the whole check on fake dists ------------------------------------------------------------------------


def _fake_repo(tmp_path: Path, seg_requires: list[str]) -> tuple[Path, Path]:
    packages, dist = tmp_path / "packages", tmp_path / "dist"
    dist.mkdir()
    for name, requires in (("datanas-core", ["torch>=2.1"]), ("datanas-seg", seg_requires)):
        mod = cd.import_name(name)
        (packages / name / "src" / mod).mkdir(parents=True)
        (packages / name / "src" / mod / "__init__.py").write_text("")
        (packages / name / "pyproject.toml").write_text("")
        _make_wheel(dist, name, "0.1.0", requires, {f"{mod}/__init__.py": ""})
    return packages, dist


def test_check_rejects_a_wheel_with_a_file_requirement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages, dist = _fake_repo(tmp_path, ["datanas-core @ file:///work/packages/datanas-core", "torch"])
    monkeypatch.setattr(cd, "PACKAGES_DIR", packages)
    problems = cd.check(dist, install=False)
    assert any("file:///work/packages/datanas-core" in p for p in problems)
    assert any("no version range" in p for p in problems)


def test_check_accepts_clean_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packages, dist = _fake_repo(tmp_path, ["datanas-core (>=0.1,<0.2)", "torch>=2.1"])
    monkeypatch.setattr(cd, "PACKAGES_DIR", packages)
    assert cd.check(dist, install=False) == []


def test_package_metadata_in_the_repo_has_ranges_not_paths() -> None:
    """The real pyprojects: dependencies are ranges; a local path appears only in a poetry dev group."""
    import tomllib

    core = tomllib.loads((ROOT / "packages/datanas-core/pyproject.toml").read_text())["project"]
    assert core["dependencies"] == ["torch>=2.1"]
    for pyproject in sorted((ROOT / "packages").glob("datanas-*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        deps = data["project"]["dependencies"]
        extras = [r for group in data["project"].get("optional-dependencies", {}).values() for r in group]
        assert cd.direct_reference_problems(deps + extras) == [], pyproject
        if data["project"]["name"] != "datanas-core":
            info = cd.WheelInfo(pyproject, data["project"]["name"], "0", tuple(deps), frozenset())
            assert cd.core_range_problems(info, core["version"]) == [], pyproject
            dev = data["tool"]["poetry"]["group"]["dev"]["dependencies"]
            assert dev["datanas-core"] == {"path": "../datanas-core", "develop": True}


# --- the real thing ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1200)  # five builds and five fresh venvs; ~2 min here, slower on a loaded CI machine
def test_built_wheels_install_alone_and_import(tmp_path: Path) -> None:
    """Build all five sdists + wheels, check their metadata, install each alone offline and import it."""
    assert cd.main(["--dist", str(tmp_path / "dist")]) == 0
    built = sorted(p.name for p in (tmp_path / "dist").iterdir())
    assert len([b for b in built if b.endswith(".whl")]) == 5, built
    assert len([b for b in built if b.endswith(".tar.gz")]) == 5, built
