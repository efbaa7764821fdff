"""The seg CLIs' domain options come from the dataclasses of :mod:`datanas_seg.cli_config` (issue 19): one
flag per field with the field's type, default and docstring help, and the parsed options rebuild them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from datanas_core.cli_options import dataclass_from_args, dataclass_help
from datanas_core.errors import ConfigError
from datanas_core.runtime.cli_args import RuntimeArgs
from datanas_seg import compare, search, train
from datanas_seg.cli_config import (
    SegCompareConfig,
    SegDataConfig,
    SegModelConfig,
    SegSearchBudget,
    SegTrainConfig,
)

CLIS = {
    "search": (search.build_parser, (SegDataConfig, SegModelConfig, SegSearchBudget)),
    "train": (train.build_parser, (SegDataConfig, SegModelConfig, SegTrainConfig)),
    "compare": (compare.build_parser, (SegDataConfig, SegModelConfig, SegTrainConfig, SegCompareConfig)),
}


@pytest.mark.parametrize("name", list(CLIS))
def test_every_field_is_a_flag_with_the_docstring_help(name: str) -> None:
    build, classes = CLIS[name]
    actions = {a.dest: a for a in build()._actions}
    for cls in classes:
        docs = dataclass_help(cls)
        for f in dataclasses.fields(cls):
            action = actions.get(f.name)
            assert action is not None, f"{name}: {cls.__name__}.{f.name} has no flag"
            assert action.option_strings[0] == "--" + f.name.replace("_", "-")
            assert action.help == docs[f.name].rstrip(".")


def test_parsed_defaults_rebuild_the_dataclasses() -> None:
    args = train.build_parser().parse_args(["--genotype", "g", "--data-dir", "d"])
    assert dataclass_from_args(SegDataConfig, args) == SegDataConfig(data_dir=Path("d"))
    assert dataclass_from_args(SegModelConfig, args) == SegModelConfig()
    assert dataclass_from_args(SegTrainConfig, args) == SegTrainConfig()
    args = search.build_parser().parse_args(["--data-dir", "d"])
    assert dataclass_from_args(SegDataConfig, args).class_weight == "balanced"  # the search's default
    assert dataclass_from_args(SegModelConfig, args) == SegModelConfig(C=8)
    assert dataclass_from_args(SegSearchBudget, args) == SegSearchBudget()


def test_flags_reach_the_dataclasses() -> None:
    args = compare.build_parser().parse_args(
        ["--genotype", "g", "--data-dir", "d", "--split", "0.5", "0.3", "0.2", "--cells-per-stage", "1", "2",
         "--num-stages", "4", "--iters", "9", "--test-mode", "whole", "--random", "3", "--jobs", "2"]
    )  # fmt: skip
    data = dataclass_from_args(SegDataConfig, args)
    model = dataclass_from_args(SegModelConfig, args)
    assert data.split == (0.5, 0.3, 0.2) and data.crop == 64
    assert model.cells_per_stage == (1, 2) and model.stages == (1, 2) and model.num_stages == 4
    assert dataclass_from_args(SegTrainConfig, args).test_mode == "whole"
    assert dataclass_from_args(SegCompareConfig, args) == SegCompareConfig(random=3, jobs=2)
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--genotype", "g", "--data-dir", "d", "--num-stages", "5"])


def test_the_dataclasses_refuse_bad_values() -> None:
    with pytest.raises(ConfigError, match="--iters must be >= 1"):
        SegTrainConfig(iters=0)
    assert SegTrainConfig(iters=0, init_weights=Path("m.pt")).iters == 0  # evaluate only
    with pytest.raises(ConfigError, match="--batch-size must be a positive integer"):
        SegDataConfig(batch_size=0)
    with pytest.raises(ConfigError, match="--C must be a positive integer"):
        SegModelConfig(C=0)
    with pytest.raises(ConfigError, match="--jobs"):
        SegCompareConfig(jobs=0)


@pytest.mark.parametrize("build", [train.build_parser, compare.build_parser])
def test_runtime_flags_come_from_runtime_args(build: Any) -> None:
    """``--out``, ``--device`` and ``--verbose`` are core's RuntimeArgs flags (issue 19); ``--seed`` is
    SegTrainConfig's and fills RuntimeArgs.seed too."""
    args = build().parse_args(["--genotype", "g", "--data-dir", "d"])
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs()
    argv = ["--genotype", "g", "--data-dir", "d", "--out", "o", "--device", "cpu", "-vv", "--seed", "3"]
    args = build().parse_args(argv)
    assert dataclass_from_args(RuntimeArgs, args) == RuntimeArgs(
        out=Path("o"), device="cpu", verbose=2, seed=3
    )


def test_compare_passes_the_runtime_flags_to_each_training() -> None:
    argv = ["--genotype", "g", "--data-dir", "d", "--out", "o", "--device", "cpu", "-vv", "--seed", "3"]
    child = compare._train_argv(compare.build_parser().parse_args(argv), Path("g.json"), Path("o/random0"))
    assert child[:4] == ["--genotype", "g.json", "--out", "o/random0"]
    assert child.count("--verbose") == 2 and child[child.index("--device") + 1] == "cpu"
    assert child[child.index("--seed") + 1] == "3"
    assert train.build_parser().parse_args(child).verbose == 2


def test_precision_and_compile_flags_reach_searchconfig() -> None:
    args = search.build_parser().parse_args(
        ["--data-dir", "x", "--precision", "bf16", "--compile", "default"]
    )
    config = search.search_config(args, 0)
    assert (config.precision, config.compile) == ("bf16", "default")
    config = search.search_config(search.build_parser().parse_args(["--data-dir", "x"]), 0)
    assert (config.precision, config.compile) == ("fp32", "off")


def test_progressive_decisions_flag_reaches_searchconfig() -> None:
    """--progressive-decisions (the shared option, issue 16) sets the window over the preset's (none for data);
    a bad window is one argparse line, exit status 2."""
    parser = search.build_parser()
    args = parser.parse_args(
        ["--data-dir", "x", "--progressive-decisions", "0.1", "0.7", "--precision", "bf16"]
    )
    config = search.search_config(args, 0)
    assert (config.progressive_decisions, config.precision) == ((0.1, 0.7), "bf16")
    assert search.search_config(parser.parse_args(["--data-dir", "x"]), 0).progressive_decisions is None
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--data-dir", "x", "--progressive-decisions", "0.7", "0.1"])
    assert exc.value.code == 2
