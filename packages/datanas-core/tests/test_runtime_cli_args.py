"""The runtime flags are generated from :class:`~datanas_core.runtime.RuntimeArgs` (issue 19): one flag per field
with its default and help, the parsed flags rebuild it, :class:`RuntimeOptions` shares its defaults, and a bad
count is refused."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from datanas_core.cli_options import add_dataclass_options, dataclass_from_args, dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.runtime import RuntimeArgs, RuntimeOptions, add_runtime_args


def _parser(*args: object, **kwargs: object) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_runtime_args(p, *args, **kwargs)  # type: ignore[arg-type]
    return p


def test_every_field_is_a_flag_with_its_default_and_help() -> None:
    actions = {a.dest: a for a in _parser()._actions}
    docs = dataclass_help(RuntimeArgs)
    for f in dataclasses.fields(RuntimeArgs):
        action = actions[f.name]
        assert action.option_strings[0] == "--" + f.name.replace("_", "-")
        assert action.default == f.default, f.name
        assert action.help == docs[f.name].rstrip("."), f.name
    assert actions["verbose"].option_strings == ["--verbose", "-v"]
    assert actions["resume"].metavar == "RUN_DIR" and actions["checkpoint_every"].metavar == "STEPS"
    assert {"config", "print_config"} <= set(actions)


def test_the_flags_keep_their_forms_and_rebuild_runtime_args() -> None:
    p = _parser()
    assert dataclass_from_args(RuntimeArgs, p.parse_args([])) == RuntimeArgs()
    args = p.parse_args(
        [
            "-vv",
            "--dry-run",
            "--no-report",
            "--resume",
            "r",
            "--progress",
            "--seeds",
            "0-2",
            "--keep-last",
            "2",
        ]
    )
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs(
        verbose=2, dry_run=True, report=False, resume=Path("r"), progress=True, seeds="0-2", keep_last=2
    )
    with pytest.raises(SystemExit):
        p.parse_args(["--no-dry-run"])  # a switch, as before: no --no- form


def test_runtime_options_share_the_defaults() -> None:
    opts = RuntimeOptions(out=Path("o"))
    flags = RuntimeArgs()
    for name in ("keep_last", "log_every", "progress", "report", "verbose", "checkpoint_every", "device"):
        assert getattr(opts, name) == getattr(flags, name), name
    assert opts.seeds == [flags.seed]


def test_a_bad_count_is_refused_with_the_flag_name(tmp_path: Path) -> None:
    p = _parser()
    for flag in ("--keep-last", "--log-every", "--checkpoint-every"):
        with pytest.raises(ConfigError, match=f"{flag} must be a positive integer, got 0"):
            RuntimeOptions.from_args(p.parse_args(["--out", str(tmp_path), flag, "0"]))


def test_a_field_subset_for_retraining_clis() -> None:
    p = _parser(["out", "seed", "verbose"], help={"out": "where it goes"}, required=["out"])
    actions = {a.dest: a for a in p._actions}
    assert {"out", "seed", "verbose"} <= set(actions)
    assert not {"resume", "seeds", "config", "dry_run"} & set(actions)
    assert actions["out"].help == "where it goes" and actions["out"].required
    assert p.parse_args(["--out", "o", "-v"]).verbose == 1


def test_add_dataclass_options_refuses_an_unknown_action() -> None:
    with pytest.raises(ConfigError, match="unknown action 'extend'"):
        add_dataclass_options(argparse.ArgumentParser(), RuntimeArgs, ["seeds"], actions={"seeds": "extend"})
