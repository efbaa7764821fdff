"""Every datanas command line: the same concept has the same flag, type and help everywhere (issue 19), every
option has help with its default shown once, and ``--help`` imports none of the heavy optional libraries."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from datanas_core.cli_options import SHARED_OPTIONS, dataclass_help
from datanas_core.runtime import cli_args
from datanas_core.runtime.cli_args import RuntimeArgs, add_runtime_args

#: module -> the attribute that builds its parser.
CLIS = {
    "datanas_vision.search": "build_parser",
    "datanas_vision.train": "build_parser",
    "datanas_vision.compare": "build_parser",
    "datanas_seg.search": "build_parser",
    "datanas_seg.train": "build_parser",
    "datanas_seg.compare": "build_parser",
    "datanas_lm.search": "build_parser",
    "datanas_lm.train": "build_parser",
    "datanas_lm.compare": "build_parser",
    "datanas_fewshot.search": "build_parser",
    "datanas_fewshot.train": "build_parser",
    "datanas_fewshot.cluster.__main__": "build_parser",
    "datanas_core.report": "_parser",
    "datanas_core.show": "_parser",
}

SEARCH_CLIS = [
    "datanas_vision.search",
    "datanas_seg.search",
    "datanas_lm.search",
    "datanas_fewshot.search",
    "datanas_fewshot.cluster.__main__",
]

#: Flags every search CLI has (issue 19: one flag per concept).
SEARCH_FLAGS = [
    "--preset",
    "--epochs",
    "--arch-warmup-epochs",
    "--samples",
    "--a-lr",
    "--w-lr",
    "--reg",
    "--rule",
    "--executor",
    "--seed",
    "--seeds",
    "--out",
    "--resume",
    "--device",
    "--threads",
    "--config",
    "--progressive-decisions",
    "--precision",
    "--compile",
    "--weight-sampling",
    "--schedule-unit",
    "--arch-travel",
    "--a-lr-warmup",
    "--a-lr-schedule",
]

#: Runtime flags whose default in a CLI differs from :class:`RuntimeArgs`' on purpose (passed to
#: ``add_runtime_args(defaults=...)``); every other runtime flag has RuntimeArgs' default.
RUNTIME_DEFAULTS: dict[str, dict[str, Any]] = {
    "datanas_lm.train": {"log_every": 100},  # an LM epoch has thousands of steps
    "datanas_lm.compare": {"out": Path("runs/lm-compare")},  # one folder per model under it
}

#: Options with a RuntimeArgs field's name that are not the runtime flag: seg's ``--seed`` is
#: ``SegTrainConfig.seed`` (the training dataclass the CLI rebuilds), show's ``--out`` an output file.
NOT_RUNTIME = {
    "datanas_seg.train": {"seed"},
    "datanas_seg.compare": {"seed"},
    "datanas_core.show": {"out"},
}

#: Libraries that ``--help`` must not import (seconds of start-up each). torch too (issue 19): the domain
#: packages' ``__init__`` are lazy (PEP 562) and the CLIs import torch-using modules only after parsing.
#: Measured 2026-12-06 on the shared 2-core dev box (best of 3, ``python -m MODULE --help``): every one of the 14
#: CLIs 0.07-0.11 s (report/show 0.07 s, the domain CLIs 0.09-0.11 s) vs 1.8 s for ``python -c "import torch"``;
#: before this change each ``--help`` took 1.9-2.2 s (it imported torch). Not a timed test on purpose.
HEAVY = ("torch", "timm", "torchvision", "mmseg", "mmengine", "mmcv", "learn2learn", "matplotlib", "sklearn")


def _parser(module: str) -> argparse.ArgumentParser:
    pytest.importorskip(module.split(".")[0])
    return getattr(importlib.import_module(module), CLIS[module])()


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in parser._actions for flag in a.option_strings}


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    out = {}
    for module in CLIS:
        try:
            out[module] = _parser(module)
        except pytest.skip.Exception:
            continue
    return out


@pytest.mark.parametrize("module", SEARCH_CLIS)
def test_every_search_cli_has_the_shared_flags(parsers: dict, module: str) -> None:
    if module not in parsers:
        pytest.skip(f"{module} not installed")
    missing = [f for f in SEARCH_FLAGS if f not in _options(parsers[module])]
    assert not missing, f"{module} lacks {missing}"


def test_shared_options_agree_across_clis(parsers: dict) -> None:
    """Same flag -> same kind of value, a help text, and (for --download) the same default everywhere;
    aliases of a shared option are spelled the same where they exist."""
    seen: dict[str, dict[str, tuple]] = {}
    for module, parser in parsers.items():
        opts = _options(parser)
        for name, spec in SHARED_OPTIONS.items():
            action = opts.get(name)
            if action is None:
                continue
            assert action.help and action.help.strip(), f"{module} {name}: no help"
            kind = (type(action).__name__, getattr(action.type, "__name__", action.type))
            seen.setdefault(name, {})[module] = kind
            for alias in spec.flags[1:]:
                if alias in opts:
                    assert opts[alias] is action, f"{module}: {alias} is not an alias of {name}"
    for name, kinds in seen.items():
        assert len(set(kinds.values())) == 1, f"{name} differs across CLIs: {kinds}"
    for module, parser in parsers.items():
        opts = _options(parser)
        for name, spec in SHARED_OPTIONS.items():  # options whose default is part of the concept
            if name in opts and "default" in spec.kwargs:
                assert opts[name].default == spec.kwargs["default"], f"{module} {name}: default differs"
        dl = opts.get("--download")
        if dl is not None:
            assert dl.default is False, f"{module}: --download must be off by default"
    assert len(seen["--epochs"]) >= 5 and len(seen["--preset"]) >= 5


@pytest.mark.parametrize("module", SEARCH_CLIS)
def test_search_config_options_are_the_shared_declaration(
    parsers: dict, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--progressive-decisions, --precision and --compile (issues 16/17) are declared once, in SHARED_OPTIONS:
    every search CLI has the table's action class, help, nargs, metavar and choices; parsed, they give the
    SearchConfig fields (config_changes); a bad window is one argparse line with exit status 2."""
    from datanas_core.cli_options import SEARCH_CONFIG_OPTIONS, add_options, config_changes
    from datanas_core.search.config import SearchConfig

    if module not in parsers:
        pytest.skip(f"{module} not installed")
    parser = parsers[module]
    opts = _options(parser)
    reference_parser = argparse.ArgumentParser()
    add_options(reference_parser, SEARCH_CONFIG_OPTIONS)
    reference = _options(reference_parser)
    for name in SEARCH_CONFIG_OPTIONS:
        action, ref = opts[name], reference[name]
        assert type(action) is type(ref), f"{module} {name}: not the shared action"
        assert action.help == SHARED_OPTIONS[name].help, f"{module} {name}: help differs from the table"
        assert (action.nargs, action.metavar, action.choices, action.default, action.dest) == (
            ref.nargs,
            ref.metavar,
            ref.choices,
            ref.default,
            ref.dest,
        ), f"{module} {name}"
    assert opts["--compile"].choices == ("off", "default", "reduce-overhead", "max-autotune")
    required = ["--data-dir", "d"] if module == "datanas_seg.search" else []  # seg's one required flag
    args = parser.parse_args([*required, "--progressive-decisions", "0.1", "0.7", "--precision", "bf16"])
    changes = config_changes(args)
    assert changes == {"progressive_decisions": (0.1, 0.7), "precision": "bf16"}
    assert SearchConfig(**changes).progressive_decisions == (0.1, 0.7)
    assert config_changes(parser.parse_args(required)) == {}  # defaults: the preset's / SearchConfig's
    for bad in (["0.7", "0.1"], ["0.5", "0.5"], ["-0.1", "0.5"], ["0.2", "1.5"], ["0.1", "x"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*required, "--progressive-decisions", *bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "--progressive-decisions" in lines[0] and " ".join(bad) in lines[0], err


#: Compare CLIs that run a search themselves (vision; seg and lm compare take --genotype, fewshot's cluster CLI is
#: a search CLI): they take the search's shared options and pass them on.
COMPARE_SEARCH_CLIS = ["datanas_vision.compare"]


@pytest.mark.parametrize("module", COMPARE_SEARCH_CLIS)
def test_compare_clis_take_the_shared_search_options(
    parsers: dict, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compare CLI that searches has --progressive-decisions, --precision and --compile from the shared
    declaration (same action, nargs, metavar, choices, default, dest; the table's help after a note that they
    apply to the search); a bad window is one argparse line with exit status 2."""
    from datanas_core.cli_options import SEARCH_CONFIG_OPTIONS, add_options, config_changes

    if module not in parsers:
        pytest.skip(f"{module} not installed")
    parser = parsers[module]
    opts = _options(parser)
    reference_parser = argparse.ArgumentParser()
    add_options(reference_parser, SEARCH_CONFIG_OPTIONS)
    reference = _options(reference_parser)
    for name in SEARCH_CONFIG_OPTIONS:
        action, ref = opts[name], reference[name]
        assert type(action) is type(ref), f"{module} {name}: not the shared action"
        assert action.help.endswith(SHARED_OPTIONS[name].help) and "search" in action.help.split(":")[0]
        assert (action.nargs, action.metavar, action.choices, action.default, action.dest) == (
            ref.nargs,
            ref.metavar,
            ref.choices,
            ref.default,
            ref.dest,
        ), f"{module} {name}"
    required = ["--out", "x"]
    args = parser.parse_args([*required, "--progressive-decisions", "0.2", "0.6", "--compile", "default"])
    assert config_changes(args) == {"progressive_decisions": (0.2, 0.6), "compile": "default"}
    assert config_changes(parser.parse_args(required)) == {}
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*required, "--progressive-decisions", "0.8", "0.2"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--progressive-decisions" in lines[0] and "0.8 0.2" in lines[0], lines


def test_a_bad_window_in_a_config_file_is_one_line(tmp_path: Path, parsers: dict) -> None:
    """--config FILE with a bad progressive_decisions window is refused before the run (ConfigError, one line),
    a good one is the default that a flag given overrides."""
    from datanas_core.cli_options import parse_cli
    from datanas_core.errors import ConfigError

    if "datanas_lm.search" not in parsers:
        pytest.skip("datanas_lm not installed")
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps({"progressive_decisions": [0.7, 0.1]}))
    good.write_text(json.dumps({"progressive_decisions": [0.2, 0.6], "precision": "bf16"}))
    with pytest.raises(ConfigError, match=r"progressive_decisions.*\[0\.7, 0\.1\]"):
        parse_cli(_parser("datanas_lm.search"), ["--config", str(bad)])
    args = parse_cli(_parser("datanas_lm.search"), ["--config", str(good)])
    assert (args.progressive_decisions, args.precision) == ([0.2, 0.6], "bf16")
    args = parse_cli(
        _parser("datanas_lm.search"), ["--config", str(good), "--progressive-decisions", "0", "1"]
    )
    assert args.progressive_decisions == [0.0, 1.0]


def test_runtime_flags_are_generated_from_runtime_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI's ``--out``, ``--seed``, ``--device``, ``--verbose``, ... is made by ``add_runtime_args`` from
    :class:`RuntimeArgs` (issue 19): a hand-written copy fails here even while it still matches, and a drifted
    default, type, flag spelling or help fails the comparison with the generated reference."""
    reference = {a.dest: a for a in add_runtime_args(argparse.ArgumentParser())._actions}
    fields = {f.name for f in dataclasses.fields(RuntimeArgs)}
    defaults, docs = RuntimeArgs(), dataclass_help(RuntimeArgs)
    made: list[argparse.Action] = []  # the actions add_runtime_args generated (kept alive: identity)
    own_help: dict[int, str] = {}  # id(action) -> the CLI's help=... override
    real = cli_args.add_dataclass_options

    def spy(parser: Any, cls: type, *args: Any, **kwargs: Any) -> None:
        before = len(parser._actions)
        real(parser, cls, *args, **kwargs)
        if cls is RuntimeArgs:
            for action in parser._actions[before:]:
                made.append(action)
                if action.dest in (kwargs.get("help") or {}):
                    own_help[id(action)] = kwargs["help"][action.dest]

    monkeypatch.setattr(cli_args, "add_dataclass_options", spy)
    checked: dict[str, set[str]] = {}
    for module in CLIS:
        try:
            parser = _parser(module)
        except pytest.skip.Exception:
            continue
        generated = {id(a) for a in made}
        for action in parser._actions:
            if action.dest not in fields or action.dest in NOT_RUNTIME.get(module, ()):
                continue
            where = f"{module} {'/'.join(action.option_strings)}"
            assert id(action) in generated, f"{where}: written by hand; use add_runtime_args(fields=[...])"
            ref = reference[action.dest]
            assert action.option_strings == ref.option_strings, where
            assert (type(action), action.type, action.nargs) == (type(ref), ref.type, ref.nargs), where
            assert action.metavar == ref.metavar, where
            expected = RUNTIME_DEFAULTS.get(module, {}).get(action.dest, getattr(defaults, action.dest))
            assert action.default == expected, f"{where}: default {action.default!r}, expected {expected!r}"
            if id(action) not in own_help:  # no per-CLI help: RuntimeArgs' docstring
                assert action.help == docs[action.dest].rstrip("."), where
            checked.setdefault(module, set()).add(action.dest)
    for module in ("datanas_seg.train", "datanas_lm.train", "datanas_lm.compare", "datanas_fewshot.train"):
        if module in checked:
            assert {"out", "verbose"} <= checked[module], module


@pytest.mark.parametrize("module", list(CLIS))
def test_every_option_has_help_and_one_default(parsers: dict, module: str) -> None:
    if module not in parsers:
        pytest.skip(f"{module} not installed")
    parser = parsers[module]
    for action in parser._actions:
        if action.option_strings and action.help is not argparse.SUPPRESS:
            assert action.help and action.help.strip(), f"{module} {action.option_strings}: no help"
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text
    for chunk in text.split("(default:")[1:]:
        assert "(default:" not in chunk.split(")", 1)[0]
    # no option's help shows two defaults
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            formatter = parser._get_formatter()
            shown = formatter._expand_help(action) if hasattr(formatter, "_expand_help") else action.help
            assert shown.lower().count("default") <= 2, f"{module} {action.option_strings}: {shown}"
            assert shown.count("(default:") <= 1, f"{module} {action.option_strings}: {shown}"


def test_help_imports_no_heavy_library() -> None:
    """``--help`` of every CLI in one fresh process: neither torch nor any heavy optional library gets
    imported."""
    script = f"""
import contextlib, io, json, runpy, sys
done = []
for module in {list(CLIS)!r}:
    try:
        __import__(module.split(".")[0])
    except ImportError:
        continue
    sys.argv = [module, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        except SystemExit:
            pass
    done.append(module)
print(json.dumps({{"done": done, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(doc["done"]) >= 2
    assert doc["heavy"] == [], f"--help imported {doc['heavy']}"


# ------------------------------------------------------------------------ the schedule and sampling flags
#: The budget-aware schedule and weight-sampling flags (one declaration in core's SHARED_OPTIONS, added by every
#: search CLI through SEARCH_CONFIG_OPTIONS) with values that differ from every CLI's default.
SCHEDULE_ARGV = [
    "--schedule-unit", "step", "--arch-travel", "24", "--a-lr-schedule", "cosine:1:0", "--a-lr-warmup", "0.2",
    "--weight-sampling", "uniform",
]  # fmt: skip

#: The flags a search CLI's parser requires (seg: --data-dir).
REQUIRED = {"datanas_seg.search": ["--data-dir", "d"]}


def _built_search_config(module: str, args: argparse.Namespace) -> Any:
    """The SearchConfig that the search CLI ``module`` runs with for the parsed ``args`` (seed 0): the function
    its run calls."""
    mod = importlib.import_module(module)
    if module == "datanas_lm.search":
        from datanas_lm.cli_config import SEARCH_SIZES, resolve_settings

        return mod.search_config(resolve_settings(SEARCH_SIZES, args.preset, args), args, 0)
    if module == "datanas_fewshot.search":
        return mod.search_config(args, 0, epochs=args.epochs)
    if module == "datanas_fewshot.cluster.__main__":
        return mod.search_config(args, 0, epochs=args.search_epochs)
    return mod.search_config(args, 0)  # vision, seg


def _schedule(config: Any) -> tuple:
    sched = config.a_lr_schedule or {}
    return (
        config.schedule_unit,
        config.arch_travel,
        config.a_lr_warmup,
        config.weight_sampling,
        sched.get("type"),
        sched.get("end"),
    )


@pytest.mark.parametrize("module", SEARCH_CLIS)
def test_schedule_flags_reach_the_search_config(parsers: dict, module: str) -> None:
    """--schedule-unit, --arch-travel, --a-lr-warmup, --a-lr-schedule and --weight-sampling parse in every search
    CLI into the SearchConfig it runs; not given, the preset's (or the vision search's budget-aware default)
    applies (the vision and LM searches without --preset: the budget-aware default)."""
    if module not in parsers:
        pytest.skip(f"{module} not installed")
    parser, required = parsers[module], REQUIRED.get(module, [])
    config = _built_search_config(module, parser.parse_args([*required, *SCHEDULE_ARGV]))
    assert _schedule(config) == ("step", 24.0, 0.2, "uniform", "cosine", 0.0)
    default = _built_search_config(module, parser.parse_args(required))
    if module in ("datanas_vision.search", "datanas_lm.search"):  # budget-aware unless --a-lr is given
        assert _schedule(default)[:4] == ("step", 24.0, 0.0, "distribution")
        explicit = _built_search_config(module, parser.parse_args([*required, "--a-lr", "0.01"]))
        assert (explicit.arch_travel, explicit.a_lr) == (None, 0.01)
        argv = [*required, "--a-lr", "0.01", "--arch-travel", "8"]
        assert _built_search_config(module, parser.parse_args(argv)).arch_travel == 8.0
        # a preset runs as published: the data preset's per-epoch recipe
        preset_argv = ["--preset", "data"] + (
            ["--space", "nb201"] if module == "datanas_vision.search" else []
        )
        preset = _built_search_config(module, parser.parse_args([*required, *preset_argv]))
        assert _schedule(preset)[:2] == ("epoch", None) and preset.a_lr == pytest.approx(
            3e-3 if "lm" in module else 3e-4
        )
    else:  # the preset's (data: the published per-epoch recipe)
        assert _schedule(default) == ("epoch", None, 0.0, "distribution", None, None)


BAD_VALUES = [
    (["--schedule-unit", "hour"], ["hour", "epoch", "step"]),
    (["--weight-sampling", "fair"], ["fair", "distribution", "uniform"]),
    (["--arch-travel", "0"], ["arch_travel", "> 0"]),
    (["--arch-travel", "far"], ["far", "number"]),
    (["--a-lr-warmup", "1.5"], ["1.5", "[0, 1)"]),
    (["--a-lr-schedule", "bogus:1"], ["bogus", "cosine", "linear"]),
    (["--a-lr-schedule", "linear:1:-1"], ["linear:1:-1", ">= 0"]),
]


@pytest.mark.parametrize("module", SEARCH_CLIS)
def test_bad_schedule_values_are_one_line_with_exit_status_2(
    parsers: dict, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value is refused while parsing: one line naming the flag, the value and the valid choices/range."""
    if module not in parsers:
        pytest.skip(f"{module} not installed")
    parser, required = parsers[module], REQUIRED.get(module, [])
    for argv, words in BAD_VALUES:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*required, *argv])
        assert exc.value.code == 2, argv
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and argv[0] in lines[0], (argv, lines)
        assert all(w in lines[0] for w in words), (argv, lines[0])


@pytest.mark.parametrize("module", SEARCH_CLIS)
def test_resume_keeps_the_schedule_flags(parsers: dict, module: str, tmp_path: Path) -> None:
    """``--resume RUN_DIR`` re-reads the flags from the run's saved options (cli_args) into the SearchConfig; a
    flag given with it wins."""
    from datanas_core.cli_options import CONFIG_KEY, cli_config, parse_cli

    if module not in parsers:
        pytest.skip(f"{module} not installed")
    required = REQUIRED.get(module, [])
    saved = _parser(module).parse_args([*required, *SCHEDULE_ARGV])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({CONFIG_KEY: cli_config(saved)}))
    resumed = parse_cli(_parser(module), ["--resume", str(run)])
    assert _schedule(_built_search_config(module, resumed)) == ("step", 24.0, 0.2, "uniform", "cosine", 0.0)
    changed = parse_cli(_parser(module), ["--resume", str(run), "--arch-travel", "12"])
    assert _built_search_config(module, changed).arch_travel == 12.0


def test_resuming_an_old_vision_run_keeps_its_schedule(tmp_path: Path) -> None:
    """Vision runs saved before the flags were shared hold them under VisionMethodOptions' old field names
    (schedule_unit, arch_travel, a_lr_warmup, a_lr_schedule; weight_sampling as the shared option): resuming
    such a run keeps its schedule."""
    from datanas_core.cli_options import CONFIG_KEY, parse_cli

    search = pytest.importorskip("datanas_vision.search")
    old = {
        "data": "digits", "space": "nb201", "epochs": 6, "estimator": "egs", "samples": 4, "preset": None,
        "a_lr": None, "estimator_option": None, "rule_option": None, "stages": None, "grad_clip": None,
        "schedule_unit": "epoch", "arch_travel": 8.0, "a_lr_warmup": 0.1, "a_lr_schedule": "linear:1:0.5",
        "weight_sampling": "uniform",
    }  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({CONFIG_KEY: old, "search_config": {"arch_warmup_epochs": 1}})
    )
    args = parse_cli(search.build_parser(), ["--resume", str(run)])
    config = search.search_config(args, 0)
    assert _schedule(config) == ("epoch", 8.0, 0.1, "uniform", "linear", 0.5)
    assert (config.epochs, config.arch_warmup_epochs) == (6, 1)


@pytest.mark.parametrize("module", COMPARE_SEARCH_CLIS)
def test_compare_passes_the_schedule_flags_to_its_search(parsers: dict, module: str) -> None:
    """compare takes the flags from the shared declaration and gives them to the search it runs."""
    if module not in parsers:
        pytest.skip(f"{module} not installed")
    compare = importlib.import_module(module)
    search = importlib.import_module("datanas_vision.search")
    args = parsers[module].parse_args(["--out", "x", *SCHEDULE_ARGV])
    forwarded = compare._search_config_argv(args)
    assert compare._search_config_argv(parsers[module].parse_args(["--out", "x"])) == []
    config = search.search_config(search.build_parser().parse_args(forwarded), 0)
    assert _schedule(config) == ("step", 24.0, 0.2, "uniform", "cosine", 0.0)


# ------------------------------------------------------------------------ the undecided-search advice
def _undecided_verdicts() -> list[str]:
    """The undecided-search verdict of a run with a fixed lr and of one with a budget-aware lr."""
    from types import SimpleNamespace

    from datanas_core.runtime.monitors import DecisionMonitor
    from datanas_core.search.config import SearchConfig

    out = []
    for config in (SearchConfig(epochs=4), SearchConfig(epochs=4, schedule_unit="step", arch_travel=24.0)):
        searcher = SimpleNamespace(config=config, steps_per_epoch=10)
        out.append(DecisionMonitor()._verdict(searcher, 0.99, 0.01, 1.0, False))
    return out


def test_undecided_advice_names_flags_every_search_cli_takes(parsers: dict) -> None:
    """Every flag the undecided-search verdict names (parsed out of its text) is an option of every domain
    search CLI, and the suggested settings parse into the SearchConfig each CLI runs."""
    from datanas_core.runtime.monitors import BUDGET_AWARE_ARGV, PROGRESSIVE_DECISIONS_ARGV

    fixed_lr, travel = _undecided_verdicts()
    assert " ".join(PROGRESSIVE_DECISIONS_ARGV) in fixed_lr and " ".join(BUDGET_AWARE_ARGV) in fixed_lr
    assert "--a-lr, now 0.0003" in fixed_lr
    assert "--arch-travel, now 24" in travel and "--a-lr" not in travel  # --a-lr is ignored there
    flags = {f for text in (fixed_lr, travel) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)}
    assert {
        "--progressive-decisions",
        "--schedule-unit",
        "--arch-travel",
        "--a-lr-schedule",
        "--a-lr",
    } <= flags
    checked = 0
    for module in SEARCH_CLIS:
        if module not in parsers:
            continue
        missing = sorted(flags - set(_options(parsers[module])))
        assert not missing, f"the undecided-search advice names {missing}, which {module} lacks"
        argv = [*REQUIRED.get(module, []), *PROGRESSIVE_DECISIONS_ARGV, *BUDGET_AWARE_ARGV]
        config = _built_search_config(module, parsers[module].parse_args(argv))
        assert config.progressive_decisions == (0.3, 0.7), module
        assert _schedule(config)[:2] == ("step", 24.0) and config.a_lr_schedule["type"] == "cosine", module
        checked += 1
    assert checked >= 2
