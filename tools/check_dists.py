"""Build and check the distributions of every datanas package.

For each package under ``packages/`` this builds an sdist and a wheel (``python -m build --no-isolation``,
the wheel built from the sdist), then checks each wheel:

1. no ``Requires-Dist`` is a direct reference (``name @ file:///...`` or any other URL): a wheel that names a
   local path installs nowhere but on the machine that built it;
2. each domain package requires ``datanas-core`` by a version range that admits the local core version;
3. every file under ``src/<import_name>/`` (genotype JSON, ``py.typed``, ...) is inside the wheel, and the
   wheel ships no top-level ``tests`` package;
4. the wheel installs alone in a fresh virtualenv, offline (``--no-index --find-links dist``), so that a
   domain package must get ``datanas-core`` from the built core wheel through its range; then every module of
   the package imports there (a module may instead raise ``MissingDependencyError`` for an optional extra).

Fresh virtualenvs with torch weigh ~5 GB each, so third-party dependencies are not reinstalled: the fresh
venv gets a ``.pth`` file naming a "shadow" directory of symlinks into this workspace's site-packages, holding
only the dependency closure of the wheel's own (extra-free) requirements. Anything the wheel uses but does not
declare is therefore missing there, exactly as on a user's machine; and the workspace's editable datanas
installs are never visible (they are not in the closure, and ``.pth`` files of the shadow are not processed).

Usage::

    python tools/check_dists.py                  # build into dist/ and check
    python tools/check_dists.py --build-only     # what `make build` runs
    python tools/check_dists.py --no-build       # check the wheels already in dist/
"""

from __future__ import annotations

import argparse
import email.parser
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PACKAGES_DIR = ROOT / "packages"
CORE = "datanas-core"


@dataclass(frozen=True)
class WheelInfo:
    """What the checks need to know about one built wheel."""

    path: Path
    name: str  # canonical distribution name, e.g. "datanas-seg"
    version: str
    requires: tuple[str, ...]  # raw Requires-Dist values
    files: frozenset[str]  # archive member names


# ---------------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested in tools/tests/test_check_dists.py)


def import_name(dist_name: str) -> str:
    """Return the top-level import name of a datanas distribution (``datanas-seg`` -> ``datanas_seg``)."""
    return canonicalize_name(dist_name).replace("-", "_")


def parse_metadata(text: str) -> tuple[str, str, tuple[str, ...]]:
    """Parse a core-metadata file into ``(canonical name, version, Requires-Dist values)``."""
    msg = email.parser.Parser().parsestr(text, headersonly=True)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        raise ValueError("METADATA lacks Name or Version")
    return canonicalize_name(name), version, tuple(msg.get_all("Requires-Dist") or ())


def read_wheel(path: Path) -> WheelInfo:
    """Read the name, version, requirements and file list of a wheel."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(meta) != 1:
            raise ValueError(f"{path.name}: expected one *.dist-info/METADATA, found {meta}")
        name, version, requires = parse_metadata(zf.read(meta[0]).decode("utf-8"))
    return WheelInfo(path, name, version, requires, frozenset(names))


def direct_reference_problems(requires: Iterable[str]) -> list[str]:
    """Return one message per requirement that is a direct reference (``@ file:``, ``@ https:``...)."""
    problems = []
    for raw in requires:
        try:
            req = Requirement(raw)
        except Exception as exc:  # packaging raises InvalidRequirement; report anything unparsable
            problems.append(f"unparsable Requires-Dist {raw!r}: {exc}")
            continue
        if req.url is not None or "file:" in raw:
            problems.append(f"Requires-Dist {raw!r} is a direct reference; depend on a version range instead")
    return problems


def core_range_problems(wheel: WheelInfo, core_version: str) -> list[str]:
    """Check that a domain wheel requires ``datanas-core`` by a range that admits ``core_version``."""
    if wheel.name == CORE:
        return []
    reqs = [Requirement(r) for r in wheel.requires if canonicalize_name(Requirement(r).name) == CORE]
    base = [r for r in reqs if r.marker is None]
    if not base:
        return [f"{wheel.name} does not require {CORE} unconditionally (found {[str(r) for r in reqs]})"]
    problems = []
    for req in base:
        if not str(req.specifier):
            problems.append(f"{wheel.name}: {CORE} requirement {str(req)!r} has no version range")
        elif not req.specifier.contains(Version(core_version), prereleases=True):
            problems.append(
                f"{wheel.name}: {CORE} range {str(req.specifier)!r} does not admit the local core version "
                f"{core_version}; bump the range in packages/{wheel.name}/pyproject.toml"
            )
    return problems


def package_data_problems(wheel: WheelInfo, src_dir: Path) -> list[str]:
    """Problems with the files of ``wheel`` against its sources in ``src_dir``.

    Reports files under ``src_dir/<import name>/`` missing from the wheel, a missing ``__init__.py`` or
    LICENSE, and a top-level ``tests`` package.
    """
    problems = []
    pkg = import_name(wheel.name)
    base = src_dir / pkg
    if not base.is_dir():
        return [f"{wheel.name}: no source package {base}"]
    for path in sorted(base.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        member = path.relative_to(src_dir).as_posix()
        if member not in wheel.files:
            problems.append(f"{wheel.name}: {member} is not in {wheel.path.name}")
    if f"{pkg}/__init__.py" not in wheel.files:
        problems.append(
            f"{wheel.name}: {pkg}/__init__.py is missing (a namespace package, not a regular one)"
        )
    if not any(re.fullmatch(r"[^/]+\.dist-info/(licenses/)?LICENSE", n) for n in wheel.files):
        problems.append(f"{wheel.name}: the wheel carries no LICENSE file")
    if any(n.startswith("tests/") for n in wheel.files):
        problems.append(f"{wheel.name}: the wheel ships a top-level 'tests' package")
    return problems


def requirement_applies(req: Requirement, extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` applies on this interpreter when the given extras are requested."""
    if req.marker is None:
        return True
    env = dict(default_environment())
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras))


def dependency_closure(
    roots: Iterable[str],
    requires_of: Mapping[str, Sequence[str]],
) -> tuple[set[str], set[str]]:
    """Walk requirements from ``roots`` through ``requires_of`` (canonical name -> Requires-Dist values).

    Returns ``(found, missing)``: canonical names reached that ``requires_of`` knows, and those it does not.
    Extras requested on a requirement (``x[y]``) are followed.
    """
    found: set[str] = set()
    missing: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = []
    for raw in roots:
        req = Requirement(raw)
        if requirement_applies(req):
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in requires_of:
            missing.add(name)
            continue
        found.add(name)
        for raw in requires_of[name]:
            req = Requirement(raw)
            # A requirement guarded by `extra == "x"` applies only when x was requested.
            if requirement_applies(req, extras):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return found, missing


def top_level_entries(files: Iterable[str]) -> set[str]:
    """First path components of a distribution's RECORD entries that live in site-packages."""
    tops = set()
    for f in files:
        first = f.split("/", 1)[0]
        if first in ("..", "") or first.startswith("__editable__") or first.endswith(".pth"):
            continue
        tops.add(first)
    return tops


# ---------------------------------------------------------------------------------------------------------
# Steps with side effects


def package_dirs() -> list[Path]:
    """Every package directory (one with a pyproject.toml) under packages/."""
    return sorted(p.parent for p in PACKAGES_DIR.glob("*/pyproject.toml"))


def build_all(dist: Path) -> None:
    """Build sdist + wheel of every package into ``dist``."""
    dist.mkdir(parents=True, exist_ok=True)
    for pkg in package_dirs():
        print(f"building {pkg.name} ...", flush=True)
        cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(pkg)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"building {pkg.name} failed:\n{proc.stdout}{proc.stderr}")


def find_wheels(dist: Path) -> dict[str, WheelInfo]:
    """Newest wheel per package in ``dist``; fails if a package has none."""
    wheels: dict[str, WheelInfo] = {}
    for pkg in package_dirs():
        name = canonicalize_name(pkg.name)
        found = sorted(dist.glob(f"{import_name(name)}-*.whl"))
        if not found:
            raise SystemExit(f"no wheel for {name} in {dist}; run `make build`")
        infos = sorted((read_wheel(w) for w in found), key=lambda w: Version(w.version))
        wheels[name] = infos[-1]
    return wheels


def workspace_site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def workspace_requires() -> dict[str, tuple[Path, list[str], set[str]]]:
    """Third-party distributions of this interpreter: name -> (site dir, Requires-Dist, top-level entries)."""
    site = workspace_site_packages()
    out: dict[str, tuple[Path, list[str], set[str]]] = {}
    for dist in importlib_metadata.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"] or "")
        if not name or name.startswith("datanas-") or name in out:
            continue
        out[name] = (site, list(dist.requires or []), top_level_entries(str(f) for f in dist.files or []))
    return out


def make_shadow(
    shadow: Path, names: Iterable[str], workspace: Mapping[str, tuple[Path, list[str], set[str]]]
) -> None:
    """Fill ``shadow`` with symlinks to the site-packages entries of the given distributions."""
    shadow.mkdir(parents=True, exist_ok=True)
    for name in names:
        site, _, tops = workspace[name]
        for top in tops:
            src, dst = site / top, shadow / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src, target_is_directory=src.is_dir())


IMPORT_ALL = r"""
import importlib, pkgutil, sys
name, prefix = sys.argv[1], sys.argv[2]
pkg = importlib.import_module(name)
paths = [str(p) for p in getattr(pkg, "__path__", [])]
outside = [p for p in paths if not p.startswith(prefix)]
if outside:
    sys.exit(f"{name} imported from {outside}, not from the fresh venv {prefix}")
skipped = []
for mod in pkgutil.walk_packages(pkg.__path__, name + "."):
    try:
        importlib.import_module(mod.name)
    except ImportError as exc:
        # An optional host adapter without its extra must raise MissingDependencyError (house rule).
        if type(exc).__name__ != "MissingDependencyError":
            raise
        skipped.append(mod.name)
print(f"  imported {name} (+ submodules); needs an extra: {skipped or 'none'}")
"""


def install_and_import(
    wheel: WheelInfo,
    wheels: Mapping[str, WheelInfo],
    dist: Path,
    tmp: Path,
    workspace: Mapping[str, tuple[Path, list[str], set[str]]],
) -> list[str]:
    """Install ``wheel`` alone into a fresh venv (offline, deps from dist/ + its closure) and import it."""
    requires_of: dict[str, Sequence[str]] = {n: w[1] for n, w in workspace.items()}
    requires_of.update({n: w.requires for n, w in wheels.items()})
    found, missing = dependency_closure([wheel.name], requires_of)
    if missing:
        return [
            f"{wheel.name}: dependencies not installed in the workspace ({sorted(missing)}); run `make setup`"
        ]
    venv_dir = tmp / f"venv-{wheel.name}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
    vpy = venv_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    shadow = tmp / f"shadow-{wheel.name}"
    make_shadow(shadow, sorted(found - set(wheels)), workspace)
    (site / "_datanas_check_thirdparty.pth").write_text(f"{shadow}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = [sys.executable, "-m", "pip", "--python", str(vpy), "install", "--disable-pip-version-check", "-q"]
    proc = subprocess.run(
        [*pip, "--no-index", "--find-links", str(dist), str(wheel.path)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return [f"{wheel.name}: offline install of {wheel.path.name} failed:\n{proc.stdout}{proc.stderr}"]
    proc = subprocess.run(
        [str(vpy), "-c", IMPORT_ALL, import_name(wheel.name), str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
    )
    if proc.returncode != 0:
        return [f"{wheel.name}: import in a fresh venv failed:\n{proc.stdout}{proc.stderr[-4000:]}"]
    print(proc.stdout.strip())
    return []


def check(dist: Path, *, install: bool = True) -> list[str]:
    """Run every check on the wheels in ``dist``; return the problems found."""
    wheels = find_wheels(dist)
    core_version = wheels[CORE].version
    problems: list[str] = []
    for name, wheel in wheels.items():
        print(f"checking {wheel.path.name}", flush=True)
        problems += [f"{name}: {p}" for p in direct_reference_problems(wheel.requires)]
        problems += core_range_problems(wheel, core_version)
        problems += package_data_problems(wheel, PACKAGES_DIR / name / "src")
        sdists = list(dist.glob(f"{import_name(name)}-{wheel.version}.tar.gz"))
        if not sdists:
            problems.append(f"{name}: no sdist {import_name(name)}-{wheel.version}.tar.gz in {dist}")
    if install:
        workspace = workspace_requires()
        with tempfile.TemporaryDirectory(prefix="datanas-check-dists-") as tmp:
            for wheel in wheels.values():
                print(f"installing {wheel.path.name} alone in a fresh venv", flush=True)
                problems += install_and_import(wheel, wheels, dist, Path(tmp), workspace)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the sdists and wheels go")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--build-only", action="store_true", help="build, do not check")
    mode.add_argument("--no-build", action="store_true", help="check what is already in --dist")
    parser.add_argument(
        "--install", action=argparse.BooleanOptionalAction, default=True, help="install+import in fresh venvs"
    )
    args = parser.parse_args(argv)
    dist = args.dist.resolve()
    if not args.no_build:
        if dist.exists():
            shutil.rmtree(dist)
        build_all(dist)
        print(f"built: {' '.join(sorted(p.name for p in dist.iterdir()))}")
        if args.build_only:
            return 0
    problems = check(dist, install=args.install)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print("check_dists: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
