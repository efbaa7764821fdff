"""The ``datanas`` console script: discovery from entry points, dispatch, errors, and a help without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datanas import cli

GENOTYPES = Path(__file__).resolve().parents[1] / "src" / "datanas_core" / "genotypes"
INSTALLED_DOMAINS = ("vision", "seg", "lm", "fewshot")


def test_every_installed_domain_and_core_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for domain in INSTALLED_DOMAINS:
        assert f"{domain} commands:" in out
        assert f"  {domain} search " in out
    for core_cmd in ("report", "show"):
        assert f"\n  {core_cmd} " in out


def test_discovered_targets_point_at_main_functions() -> None:
    commands = cli.discover_commands()
    assert set(INSTALLED_DOMAINS) <= set(commands)
    for domain, cmds in commands.items():
        for name, cmd in cmds.items():
            assert cmd.domain == domain and cmd.name == name
            assert cmd.function == "main", cmd.target
            assert cmd.summary(), f"{cmd.target} has no module docstring to list"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["frobnicate"], "unknown domain or command 'frobnicate'; valid: "),
        (["vision", "frob"], "unknown vision command 'frob'; valid: compare, search, train"),
    ],
)
def test_unknown_names_are_one_line_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_domain_without_command_lists_its_commands_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lm"]) == 2
    err = capsys.readouterr().err
    assert "lm search" in err and "vision search" not in err


def test_dispatch_runs_the_core_command_with_its_arguments(tmp_path: Path) -> None:
    out = tmp_path / "cell.svg"
    assert cli.main(["show", str(GENOTYPES / "NB201_BEST.json"), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith("<svg")


def test_console_script_help_imports_no_torch() -> None:
    code = (
        "import sys; from datanas.cli import main; main(['--help']); print(json.dumps(sorted(sys.modules)))"
    )
    res = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    )
    modules = json.loads(res.stdout.strip().splitlines()[-1])
    heavy = [
        m for m in modules if m.split(".")[0] in {"torch", "timm", "torchvision", "mmseg", "datanas_core"}
    ]
    assert heavy == []


def test_python_dash_m_datanas_is_the_console_script() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "datanas", "vision", "search", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "--epochs" in res.stdout
