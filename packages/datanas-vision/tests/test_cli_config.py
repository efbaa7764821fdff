"""The vision CLIs' domain options come from the dataclasses of :mod:`datanas_vision.cli_config` (issue 19): one
flag per field with the field's type, default and docstring help, the parsed options rebuild them, and a bad
value is refused on one line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from datanas_core.cli_options import dataclass_from_args, dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.search import SearchConfig
from datanas_vision import compare, search, train
from datanas_vision.cli_config import (
    VisionCompareConfig,
    VisionCompareSearch,
    VisionDataConfig,
    VisionMethodOptions,
    VisionSearchSettings,
    VisionTrainOptions,
)
from datanas_vision.retrain_config import RetrainConfig

#: CLI -> (parser builder, minimal argv, {dataclass: the fields it has as flags (None: all)}).
CLIS = {
    "search": (
        search.build_parser,
        [],
        {VisionDataConfig: None, VisionSearchSettings: None, VisionMethodOptions: None},
    ),
    "train": (
        train.build_parser,
        ["--genotype", "darts_v2"],
        {VisionDataConfig: None, VisionTrainOptions: None},
    ),
    "compare": (
        compare.build_parser,
        ["--out", "x"],
        {
            VisionDataConfig: None,
            VisionCompareConfig: None,
            VisionCompareSearch: None,
            VisionMethodOptions: VisionMethodOptions.REPEATED,
        },
    ),
}


@pytest.mark.parametrize("name", list(CLIS))
def test_every_field_is_a_flag_with_its_default_and_docstring_help(name: str) -> None:
    build, argv, classes = CLIS[name]
    parser = build()
    actions = {a.dest: a for a in parser._actions}
    for cls, names in classes.items():
        docs = dataclass_help(cls)
        for f in dataclasses.fields(cls):
            if names is not None and f.name not in names:
                continue
            action = actions.get(f.name)
            assert action is not None, f"{name}: {cls.__name__}.{f.name} has no flag"
            assert action.option_strings[0] == "--" + f.name.replace("_", "-")
            assert action.help == docs[f.name].rstrip("."), f"{name}: --{f.name} help"
            assert action.default == f.default, f"{name}: --{f.name} default"


@pytest.mark.parametrize("name", list(CLIS))
def test_parsed_defaults_rebuild_the_dataclasses(name: str) -> None:
    build, argv, classes = CLIS[name]
    args = build().parse_args(argv)
    for cls in classes:
        assert dataclass_from_args(cls, args) == cls()


def test_flags_reach_the_dataclasses() -> None:
    args = search.build_parser().parse_args(
        ["--data", "mnist", "--data-dir", "d", "--download", "--max-per-class", "7", "--no-augment",
         "--space", "nb201", "--C", "4", "--layers", "2", "--train-fraction", "0.7", "--batch-size", "16",
         "--estimator-option", "tau=linear:5:1", "--estimator-option", "samples=3", "--rule-option", "k=2",
         "--grad-clip", "1.5", "--schedule-unit", "step", "--a-lr-schedule", "cosine:1:0"]
    )  # fmt: skip
    data = dataclass_from_args(VisionDataConfig, args)
    assert data == VisionDataConfig(
        data="mnist", data_dir=Path("d"), download=True, max_per_class=7, augment=False
    )
    assert data.data_options().download and data.data_options().max_per_class == 7
    settings = dataclass_from_args(VisionSearchSettings, args)
    assert settings == VisionSearchSettings(space="nb201", C=4, layers=2, train_fraction=0.7, batch_size=16)
    assert settings.supernet_kwargs(10, 1) == {"C": 4, "num_classes": 10, "in_channels": 1, "N": 2}
    method = dataclass_from_args(VisionMethodOptions, args)
    assert method.estimator_option == ("tau=linear:5:1", "samples=3")  # repeatable: every one kept
    config = search.search_config(args, seed=3)
    assert config.estimator_options["tau"] == "linear:5:1" and config.estimator_options["samples"] == 3
    assert config.rule_options == {"k": 2}
    assert (config.grad_clip, config.schedule_unit) == (1.5, "step")
    assert config.a_lr_schedule["type"] == "cosine"  # parsed by SearchConfig
    assert config.w_weight_decay == SearchConfig().w_weight_decay  # not given: SearchConfig's default


def test_method_options_name_searchconfig_fields() -> None:
    """Every VisionMethodOptions field that sets a SearchConfig field has that field's name and value type."""
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    for f in dataclasses.fields(VisionMethodOptions):
        if f.name in (*VisionMethodOptions.REPEATED, "stages"):
            continue
        assert f.name in known, f.name
    assert set(VisionMethodOptions(grad_clip=2.0, a_weight_decay=1e-3).search_config_changes()) == {
        "grad_clip",
        "a_weight_decay",
    }


def test_train_and_compare_rebuild_retrain_config() -> None:
    args = train.build_parser().parse_args(
        ["--genotype", "g", "--C", "12", "--eval-every", "2", "--seed", "4"]
    )
    assert dataclass_from_args(RetrainConfig, args) == RetrainConfig(C=12, layers=5, epochs=30, seed=4)
    assert dataclass_from_args(VisionTrainOptions, args) == VisionTrainOptions(eval_every=2)
    args = compare.build_parser().parse_args(
        ["--out", "o", "--random", "3", "--jobs", "2", "--search-C", "6", "--train-epochs", "4"]
    )
    assert dataclass_from_args(VisionCompareConfig, args) == VisionCompareConfig(
        random=3, jobs=2, train_epochs=4
    )
    assert dataclass_from_args(VisionCompareSearch, args) == VisionCompareSearch(search_C=6)
    assert dataclass_from_args(RetrainConfig, args, epochs=args.train_epochs).epochs == 4


def test_the_dataclasses_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="--max-per-class must be a positive integer"):
        VisionDataConfig(max_per_class=0)
    with pytest.raises(ConfigError, match="--num-workers"):
        VisionDataConfig(num_workers=-1)
    with pytest.raises(ConfigError, match="--C must be a positive integer"):
        VisionSearchSettings(C=0)
    with pytest.raises(ConfigError, match="--train-fraction"):
        VisionSearchSettings(train_fraction=1.0)
    with pytest.raises(ConfigError, match="--eval-every"):
        VisionTrainOptions(eval_every=-1)
    with pytest.raises(ConfigError, match="--random must be >= 0"):
        VisionCompareConfig(random=-1)
    with pytest.raises(ConfigError, match="--jobs must be a positive integer"):
        VisionCompareConfig(jobs=0)
    with pytest.raises(ConfigError, match="--search-epochs"):
        VisionCompareSearch(search_epochs=0)
    with pytest.raises(ConfigError, match="--epochs must be a positive integer, got 0"):
        RetrainConfig(epochs=0)


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("datanas_vision.search", ["--C", "0"], "--C must be a positive integer, got 0"),
        ("datanas_vision.search", ["--train-fraction", "1.5"], "--train-fraction must be in (0, 1)"),
        ("datanas_vision.search", ["--data", "nope"], "invalid choice: 'nope'"),
        (
            "datanas_vision.train",
            ["--genotype", "darts_v2", "--eval-every", "-1"],
            "--eval-every must be >= 0",
        ),
        ("datanas_vision.compare", ["--jobs", "0"], "--jobs must be a positive integer, got 0"),
        (
            "datanas_vision.search",
            ["--progressive-decisions", "0.7", "0.1"],
            "--progressive-decisions: START END must be fractions of the architecture steps with "
            "0 <= START < END <= 1, got 0.7 0.1",
        ),
        (
            "datanas_vision.compare",
            ["--progressive-decisions", "0.8", "0.2"],
            "--progressive-decisions: START END must be fractions of the architecture steps with "
            "0 <= START < END <= 1, got 0.8 0.2",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_exit_status_2(
    tmp_path: Path, module: str, argv: list[str], message: str
) -> None:
    out = ["--out", str(tmp_path / "run")]
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv, *out], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_precision_and_compile_flags_reach_searchconfig() -> None:
    """--precision / --compile (the shared options of datanas_core.cli_options) set SearchConfig's fields; the
    defaults leave fp32 and eager; an unknown value is refused by argparse with the choices."""
    parser = search.build_parser()
    config = search.search_config(
        parser.parse_args(["--precision", "bf16", "--compile", "reduce-overhead"]), 0
    )
    assert (config.precision, config.compile) == ("bf16", "reduce-overhead")
    assert any("bf16" in a for a in config.approximations)
    config = search.search_config(parser.parse_args(["--preset", "darts", "--space", "nb201"]), 0)
    assert (config.precision, config.compile) == ("fp32", "off")
    with pytest.raises(SystemExit):
        parser.parse_args(["--compile", "fast"])


def test_progressive_decisions_is_the_shared_option() -> None:
    """--progressive-decisions comes from datanas_core.cli_options (declared once for every search CLI, issue
    16): it sets the window over the preset's, data_decide keeps its own without it, and the default is off."""
    from datanas_core.cli_options import SHARED_OPTIONS

    parser = search.build_parser()
    action = next(a for a in parser._actions if "--progressive-decisions" in a.option_strings)
    assert action.help == SHARED_OPTIONS["--progressive-decisions"].help
    argv = ["--progressive-decisions", "0.1", "0.7", "--precision", "bf16"]
    config = search.search_config(parser.parse_args(argv), 0)
    assert (config.progressive_decisions, config.precision) == ((0.1, 0.7), "bf16")
    assert search.search_config(parser.parse_args([]), 0).progressive_decisions is None
    decide = ["--preset", "data_decide", "--space", "nb201"]
    assert search.search_config(parser.parse_args(decide), 0).progressive_decisions == (0.3, 0.7)
    config = search.search_config(parser.parse_args([*decide, "--progressive-decisions", "0.2", "0.5"]), 0)
    assert config.progressive_decisions == (0.2, 0.5)
