"""The LM CLIs' model, budget and optimiser flags come from the settings dataclasses of
:mod:`datanas_lm.cli_config` (issue 19), ``--size`` picks their defaults, and Ctrl-C prints the one-line
``--resume RUN_DIR`` command that continues the run with its own options."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from datanas_core.cli_options import dataclass_from_args, dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.runtime.cli_args import RuntimeArgs
from datanas_lm import compare, presets, search, train
from datanas_lm.cli_config import (
    SEARCH_SIZES,
    TRAIN_SIZES,
    LMSearchSettings,
    LMSettings,
    LMTrainSettings,
    resolve_settings,
)

TINY = ["--emsize", "6", "--nhid", "6", "--batch-size", "4", "--eval-batch-size", "2", "--bptt", "6",
        "--train-tokens", "48", "--eval-tokens", "24", "--no-report"]  # fmt: skip


@pytest.mark.parametrize("module", [search, train, compare])
def test_settings_flags_come_from_the_dataclasses(module: Any) -> None:
    actions = {a.dest: a for a in module.build_parser()._actions}
    fields = [(LMSettings, search.MODEL_FLAGS)]
    if module is not search:
        fields.append((LMTrainSettings, search.TRAIN_FLAGS))
    for cls, names in fields:
        docs = dataclass_help(cls)
        for name in names:
            action = actions[name]
            assert action.default is None, f"{name}: the default comes from --size"
            assert action.help == docs[name].rstrip(".")
            hint = {f.name: f.type for f in dataclasses.fields(cls)}[name]
            if str(hint).startswith("Literal["):  # choices from the Literal
                literal = "Literal[" + ", ".join(repr(c) for c in action.choices) + "]"
                assert str(hint) == literal, (name, hint)
            else:
                assert action.type.__name__ in str(hint), (name, hint, action.type)


def test_sizes_are_the_single_source_of_the_preset_tables() -> None:
    assert presets.SEARCH_PRESETS["cpu"] == dataclasses.asdict(LMSearchSettings())
    assert presets.TRAIN_PRESETS["darts-full"] == dataclasses.asdict(TRAIN_SIZES["darts-full"])
    assert presets.search_preset("darts-full")["emsize"] == 300 and presets.train_preset("cpu")["epochs"] == 3


def test_resolve_settings_applies_given_flags_over_the_size() -> None:
    args = search.build_parser().parse_args(["--size", "darts-full", "--emsize", "8", "--nhid", "8"])
    s = resolve_settings(SEARCH_SIZES, args.preset, args)
    assert (s.emsize, s.nhid, s.batch_size, s.epochs) == (8, 8, 256, 50)
    args = train.build_parser().parse_args(["--train-tokens", "0", "--lr", "5", "--epochs", "2"])
    t = resolve_settings(TRAIN_SIZES, args.preset, args)
    assert t.train_tokens is None and t.lr == 5.0 and t.epochs == 2 and t.eval_tokens == 7000
    with pytest.raises(ConfigError, match="must be equal"):
        resolve_settings(TRAIN_SIZES, "cpu", {"emsize": 10})
    with pytest.raises(ConfigError, match="unknown size"):
        resolve_settings(TRAIN_SIZES, "gpu", {})
    assert search.merge_settings(presets.train_preset("cpu"), args)["lr"] == 5.0  # the old mapping form


def test_train_config_and_model_take_the_dataclass() -> None:
    cfg = train.train_config(TRAIN_SIZES["cpu"], seed=3)
    assert (cfg.epochs, cfg.batch_size, cfg.train_tokens_per_epoch, cfg.seed) == (3, 16, 60_000, 3)
    assert train.train_config(presets.train_preset("cpu"), seed=3) == cfg


@pytest.mark.slow
def test_ctrl_c_prints_one_resume_line_that_continues_the_search(
    patterned_corpus_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datanas_lm.task import PerplexityFromLoss

    original = PerplexityFromLoss.on_epoch_end
    calls = {"n": 0}

    def interrupt_at_the_second_epoch(self: Any, searcher: Any, record: dict[str, Any]) -> None:
        original(self, searcher, record)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(PerplexityFromLoss, "on_epoch_end", interrupt_at_the_second_epoch)
    run = tmp_path / "run"
    argv = [
        "--data",
        "textdir",
        "--data-dir",
        str(patterned_corpus_dir),
        *TINY,
        "--epochs",
        "3",
        "--no-progress",
    ]
    assert search.main([*argv, "--out", str(run)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"interrupted: resume with: python -m datanas_lm.search --resume {run}"
    monkeypatch.setattr(PerplexityFromLoss, "on_epoch_end", original)
    command = shlex.split(err[-1].removeprefix("interrupted: resume with: "))
    assert search.main(command[3:]) == 0  # the printed command, as the user would run it
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epoch"] == 3
    assert json.loads((run / "config.json").read_text())["settings"]["emsize"] == 6  # the run's own options


@pytest.mark.slow
def test_ctrl_c_in_lm_train_resumes_from_the_run_dir_alone(
    tiny_corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = train._EpochWriter.on_epoch_end

    def interrupt_after_the_first_epoch(self: Any, trainer: Any, record: Any) -> None:
        original(self, trainer, record)  # the epoch's checkpoint is written
        raise KeyboardInterrupt

    monkeypatch.setattr(train._EpochWriter, "on_epoch_end", interrupt_after_the_first_epoch)
    run = tmp_path / "train"
    argv = ["--genotype", "darts_v2", "--data", "textdir", "--data-dir", str(tiny_corpus_dir), *TINY]
    assert train.main([*argv, "--epochs", "2", "--out", str(run)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: resume with: python -m datanas_lm.train --resume {run}"
    )
    monkeypatch.setattr(train._EpochWriter, "on_epoch_end", original)
    assert train.main(["--resume", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epoch"] == 2
    assert json.loads((run / "config.json").read_text())["settings"]["emsize"] == 6


def test_compare_options_come_from_their_dataclass(caplog: pytest.LogCaptureFixture) -> None:
    from datanas_core.cli_options import dataclass_from_args
    from datanas_lm.cli_config import LMCompareOptions

    args = compare.build_parser().parse_args(["--genotype", "darts_v2", "--no-lstm", "--random", "2"])
    assert dataclass_from_args(LMCompareOptions, args) == LMCompareOptions(random=2, lstm=False)
    assert compare.main(["--genotype", "darts_v2", "--random", "-1"]) == 2
    assert "--random must be >= 0" in caplog.text


def test_runtime_flags_come_from_runtime_args_with_the_cli_defaults() -> None:
    """train's and compare's run flags are core's RuntimeArgs flags (issue 19); the two defaults that differ
    on purpose: train logs every 100 steps, compare writes under runs/lm-compare."""
    assert dataclass_from_args(RuntimeArgs, train.build_parser().parse_args([])) == RuntimeArgs(log_every=100)
    argv = ["--resume", "r", "--no-report", "-v", "--seed", "2", "--device", "cpu", "--log-every", "5"]
    assert dataclass_from_args(RuntimeArgs, train.build_parser().parse_args(argv)) == RuntimeArgs(
        resume=Path("r"), report=False, verbose=1, seed=2, device="cpu", log_every=5
    )
    args = compare.build_parser().parse_args(["--genotype", "darts_v2"])
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs(out=Path("runs/lm-compare"))
    args = compare.build_parser().parse_args(["--genotype", "darts_v2", "--out", "o", "--seed", "4", "-vv"])
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs(out=Path("o"), seed=4, verbose=2)


def _lm_search_config(argv: list[str]) -> Any:
    args = search.build_parser().parse_args(argv)
    return search.search_config(resolve_settings(SEARCH_SIZES, args.preset, args), args, 0)


def test_progressive_decisions_precision_and_compile_reach_searchconfig() -> None:
    """The shared --progressive-decisions / --precision / --compile (issues 16/17) set the LM search's
    SearchConfig; not given, the preset's window (data: none), fp32 and eager stay."""
    config = _lm_search_config(
        ["--progressive-decisions", "0.1", "0.7", "--precision", "bf16", "--compile", "default"]
    )
    assert (config.progressive_decisions, config.precision, config.compile) == ((0.1, 0.7), "bf16", "default")
    config = _lm_search_config([])
    assert (config.progressive_decisions, config.precision, config.compile) == (None, "fp32", "off")
    assert _lm_search_config(["--preset", "data_decide"]).progressive_decisions == (0.3, 0.7)
    assert _lm_search_config(
        ["--preset", "data_decide", "--progressive-decisions", "0", "0.5"]
    ).progressive_decisions == (0.0, 0.5)
    with pytest.raises(SystemExit) as exc:
        search.build_parser().parse_args(["--progressive-decisions", "0.5", "1.5"])
    assert exc.value.code == 2


def test_lm_search_decides_with_the_window_and_resume_keeps_it(
    patterned_corpus_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tiny LM search with --progressive-decisions 0 0.5 ends decided (config.json and manifest record the
    window); --resume RUN_DIR --epochs 2 keeps it (and may switch --precision), another window is refused."""
    run = tmp_path / "run"
    argv = [
        "--data",
        "textdir",
        "--data-dir",
        str(patterned_corpus_dir),
        *TINY,
        "--no-progress",
        "--epochs",
        "1",
    ]
    assert search.main([*argv, "--progressive-decisions", "0", "0.5", "--out", str(run)]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["search_config"]["progressive_decisions"] == [0.0, 0.5]
    assert saved["cli_args"]["progressive_decisions"] == [0.0, 0.5]
    manifest = json.loads((run / "manifest.json").read_text())
    assert "[0.0, 0.5]" in json.dumps(manifest).replace("\n", "")
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    decided = [r["decided_edges"] for r in last if "decided_edges" in r]
    assert decided and max(decided) >= 1
    assert search.main(["--resume", str(run), "--epochs", "2", "--precision", "bf16"]) == 0
    assert json.loads((run / "config.json").read_text())["search_config"]["progressive_decisions"] == [
        0.0,
        0.5,
    ]
    assert search.main(["--resume", str(run), "--epochs", "3", "--progressive-decisions", "0.2", "0.8"]) == 2
    assert "progressive_decisions[0]: saved 0.0, now 0.2" in caplog.text
