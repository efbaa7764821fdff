"""datanas_core.cli_options: the shared options table, --config / --resume defaults, the genotype resolver and
the summary block."""

from __future__ import annotations

import argparse
import dataclasses as dataclasses_module
import io
import json
from pathlib import Path
from typing import Literal

import pytest

from datanas_core.cli_options import (
    CONFIG_KEY,
    SHARED_OPTIONS,
    HelpFormatter,
    add_options,
    cli_config,
    parse_cli,
    parse_reg,
    print_summary,
    regularizer_specs,
    resolve_genotype,
)
from datanas_core.errors import ConfigError, GenotypeError
from datanas_core.genotype import Genotype
from datanas_core.runtime import add_runtime_args


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_options(p, ["--epochs", "--a-lr", "--reg", "--preset", "--arch-warmup-epochs", "--executor"])
    p.add_argument("--width", type=int, default=8, help="a domain option")
    add_runtime_args(p)
    return p


def test_types_choices_and_aliases_come_from_the_table() -> None:
    p = _parser()
    args = p.parse_args(["--epochs", "3", "--a-lr", "0.01", "--arch-warmup", "2", "--reg", "adc:0.2"])
    assert args.epochs == 3 and args.a_lr == 0.01 and args.arch_warmup_epochs == 2 and args.reg == ["adc:0.2"]
    with pytest.raises(SystemExit):
        p.parse_args(["--executor", "fast"])  # the SearchConfig Literal's choices
    with pytest.raises(ConfigError, match="unknown shared option '--nope'; valid: --preset"):
        add_options(argparse.ArgumentParser(), ["--nope"])


def test_help_shows_each_default_once() -> None:
    text = " ".join(_parser().format_help().split())
    assert "(default: 8)" in text and "(default: None)" not in text
    assert text.count("(default: True)") == 1  # --report (BooleanOptionalAction states its own)
    assert all(o.help for o in SHARED_OPTIONS.values())


def test_config_file_supplies_defaults_and_flags_override(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({CONFIG_KEY: {"epochs": 7, "width": 16, "reg": ["none"], "out": "elsewhere"}}))
    args = parse_cli(_parser(), ["--config", str(cfg), "--width", "4"])
    assert (args.epochs, args.width, args.reg, args.out) == (7, 4, ["none"], None)  # out is never restored
    args = parse_cli(_parser(), ["--config", str(cfg), "--reg", "adc"])
    assert args.reg == ["adc"]  # a repeatable flag given replaces the file's list (not appended to it)
    yaml = pytest.importorskip("yaml")
    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump({"epochs": 5, "unknown": 1}))  # plain option files; unknown keys ignored
    assert parse_cli(_parser(), ["--config", str(y)]).epochs == 5
    y.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_cli(_parser(), ["--config", str(y)])
    with pytest.raises(ConfigError, match="cannot read the config file"):
        parse_cli(_parser(), ["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"executor": "fast"}))
    with pytest.raises(ConfigError, match="'fast' in the config is not one of exact, sparse"):
        parse_cli(_parser(), ["--config", str(bad)])


def test_resume_reads_the_runs_own_options(tmp_path: Path) -> None:
    run = tmp_path / "run"
    original = _parser().parse_args(["--epochs", "3", "--width", "16", "--out", str(run)])
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": "x", CONFIG_KEY: cli_config(original)}))
    args = parse_cli(_parser(), ["--resume", str(run)])
    assert (args.epochs, args.width, args.out, args.resume) == (3, 16, None, run)
    assert parse_cli(_parser(), ["--resume", str(run), "--epochs", "6"]).epochs == 6
    # several seeds: the first seed's config; each seed keeps its own seed
    multi = tmp_path / "multi"
    (multi / "seed_0").mkdir(parents=True)
    opts = cli_config(_parser().parse_args(["--width", "32", "--seeds", "0,1"]))
    (multi / "seed_0" / "config.json").write_text(json.dumps({CONFIG_KEY: {**opts, "seed": 0}}))
    args = parse_cli(_parser(), ["--resume", str(multi)])
    assert args.width == 32 and args.seeds == "0,1"


def test_one_genotype_resolver(tmp_path: Path) -> None:
    nb = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    g = resolve_genotype(nb)
    assert g.space == "nb201"
    path = tmp_path / "g.json"
    g.save(path)
    assert resolve_genotype(path) == g and resolve_genotype(str(path)) == g
    run = tmp_path / "run"
    run.mkdir()
    g.save(run / "genotype.json")
    assert resolve_genotype(run) == g  # a directory holding genotype.json
    with pytest.raises(GenotypeError, match="next to config.json"):
        resolve_genotype(str(run), run_dirs_only=True)  # genotype.json alone does not make a run directory
    (run / "config.json").write_text("{}")
    assert resolve_genotype(str(run), run_dirs_only=True) == g
    assert resolve_genotype(str(run)) == g  # a search run directory
    assert resolve_genotype(g.to_dict()) == g and resolve_genotype(g.to_json()) == g
    assert resolve_genotype("My-Cell", bundled={"my_cell": lambda: g}) == g
    with pytest.raises(GenotypeError, match="bundled genotypes: my_cell"):
        resolve_genotype("nope", bundled={"my_cell": lambda: g})
    empty = tmp_path / "unfinished"
    empty.mkdir()
    with pytest.raises(GenotypeError, match="has not finished"):
        resolve_genotype(empty)
    with pytest.raises(
        GenotypeError, match="neither an existing JSON file or search run directory nor a JSON"
    ):
        resolve_genotype(nb, nb201=False)


def test_reg_specs() -> None:
    assert regularizer_specs(["none"]) == []
    assert parse_reg("adc:0.5", ["adc"]) == {"type": "adc", "weight": 0.5}
    with pytest.raises(ConfigError, match="valid: adc, none"):
        parse_reg("adx", ["adc"])


def test_summary_block_printed_and_merged_into_summary_json(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    buf = io.StringIO()
    g = Genotype.from_dict(
        resolve_genotype("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|").to_dict()
    )
    block = print_summary(
        "demo", run_dir=tmp_path, genotype=g, metrics={"val_acc": 0.123456}, warnings=["w1"], stream=buf
    )
    text = buf.getvalue().splitlines()
    assert text[0] == "== demo ==" and text[1] == f"run directory: {tmp_path}"
    assert text[2].startswith("genotype: nb201; ") and "metrics: val_acc=0.1235" in text
    assert text[-1] == "warning: w1"
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["status"] == "completed" and doc["cli"] == json.loads(json.dumps(block))


def test_print_config_writes_a_config_file_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_cli(_parser(), ["--epochs", "9", "--reg", "none", "--print-config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    path = tmp_path / ("c.yaml" if printed.lstrip()[0] != "{" else "c.json")
    path.write_text(printed)
    args = parse_cli(_parser(), ["--config", str(path)])
    assert (args.epochs, args.reg, args.print_config) == (9, ["none"], False)


def test_runs_without_the_options_group_use_top_level_and_settings(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"width": 12, "settings": {"epochs": 4, "width": 99}}))
    args = parse_cli(_parser(), ["--resume", str(run)])
    assert (args.width, args.epochs) == (12, 4)  # top-level keys win over the settings group


def test_dataclass_fields_become_typed_flags_with_docstring_help() -> None:
    import dataclasses

    from datanas_core.cli_options import add_dataclass_options, dataclass_help

    @dataclasses.dataclass
    class Train:
        """Retraining.

        Attributes:
            epochs: training
                epochs.
            lr, min_lr: cosine from ``lr`` to ``min_lr``.
            mode: what to run.
            aux: auxiliary head (``None``: automatic).
            clip: gradient clip.
        """

        epochs: int = 3
        lr: float = 0.1
        min_lr: float = 0.0
        mode: Literal["fast", "slow"] = "fast"
        aux: bool | None = None
        clip: float | None = 5.0

    assert dataclass_help(Train)["epochs"] == "training epochs."
    assert dataclass_help(Train)["min_lr"] == "cosine from lr to min_lr."
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_dataclass_options(p, Train, ["epochs", "lr", "min_lr", "mode", "aux", "clip"], defaults={"epochs": 7})
    args = p.parse_args(["--min-lr", "0.01", "--mode", "slow", "--no-aux"])
    assert (args.epochs, args.lr, args.min_lr, args.mode, args.aux, args.clip) == (
        7,
        0.1,
        0.01,
        "slow",
        False,
        5.0,
    )
    text = " ".join(p.format_help().split())
    assert "training epochs (default: 7)" in text and "(default: 0.0)" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--mode", "medium"])

    @dataclasses.dataclass
    class Undocumented:
        x: int = 1

    with pytest.raises(ConfigError, match="Undocumented.x has no help"):
        add_dataclass_options(argparse.ArgumentParser(), Undocumented, ["x"])


@dataclasses_module.dataclass(frozen=True)
class _Seg:
    """Segmentation options (module level: the type hints resolve here).

    Attributes:
        split: train/val/test fractions.
        stages: cells per stage.
        root: data folder.
        C: width.
        classes: 2 or 3 classes.
    """

    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    stages: tuple[int, ...] = (1,)
    root: Path | None = None
    C: int = 8
    classes: Literal[2, 3] = 2


def test_dataclass_options_take_tuples_paths_flags_and_aliases_and_rebuild_the_dataclass() -> None:
    from datanas_core.cli_options import add_dataclass_options, dataclass_from_args

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_dataclass_options(p, _Seg, aliases={"stages": ["--cells"]}, flags={"C": "--width"}, required=["root"])
    args = p.parse_args(
        ["--root", "d", "--cells", "1", "2", "--split", "0.5", "0.25", "0.25", "--classes", "3"]
    )
    cfg = dataclass_from_args(_Seg, args, C=4)
    assert cfg == _Seg(split=(0.5, 0.25, 0.25), stages=(1, 2), root=Path("d"), C=4, classes=3)
    assert dataclass_from_args(_Seg, {"stages": [2, 2], "other": 1}) == _Seg(stages=(2, 2))
    assert p.parse_args(["--root", "d", "--width", "16"]).C == 16
    with pytest.raises(SystemExit):
        p.parse_args([])  # --root is required
    with pytest.raises(SystemExit):
        p.parse_args(["--root", "d", "--split", "0.5", "0.5"])  # exactly three values
    with pytest.raises(SystemExit):
        p.parse_args(["--root", "d", "--classes", "4"])


def test_command_parses_runs_and_ends_every_cli_the_same_way(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from datanas_core.cli_options import command, new_parser
    from datanas_core.errors import RunInterrupted

    def build() -> argparse.ArgumentParser:
        p = new_parser("python -m demo", "a demo command")
        p.add_argument("--n", type=int, default=1, help="a number")
        p.add_argument("--verbose", "-v", action="count", default=0, help="more log output")
        return p

    seen: list[int] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args.n)
        if args.n == 2:
            raise ConfigError("n must not be 2")
        if args.n == 3:
            raise RunInterrupted("runs/demo")
        return 0

    main = command(build, run)
    assert main.__module__ == run.__module__ and main.__name__ == "main"
    assert main(["--n", "5"]) == 0 and seen == [5]
    assert main(["--n", "2"]) == 2 and "n must not be 2" in caplog.text
    assert main(["--n", "3"]) == 130
    assert capsys.readouterr().err.strip().endswith("--resume runs/demo")
    with pytest.raises(SystemExit) as exc:
        main(["--n", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m demo: error:")


def test_check_positive_names_the_flag() -> None:
    import dataclasses

    from datanas_core.cli_options import check_positive

    @dataclasses.dataclass
    class Sizes:
        batch_size: int = 0
        crop_size: int | None = None

    check_positive(Sizes(batch_size=2), "batch_size", "crop_size", threads=None, jobs=3)
    with pytest.raises(ConfigError, match="--batch-size must be a positive integer, got 0"):
        check_positive(Sizes(), "batch_size")
    with pytest.raises(ConfigError, match="--jobs must be a positive integer, got True"):
        check_positive(jobs=True)


def test_resume_alone_supplies_required_options(tmp_path: Path) -> None:
    def build() -> argparse.ArgumentParser:
        p = _parser()
        p.add_argument("--data-dir", type=Path, required=True, help="the data")
        return p

    with pytest.raises(SystemExit):
        parse_cli(build(), [])  # still required without a saved run
    run = tmp_path / "run"
    run.mkdir()
    saved = cli_config(build().parse_args(["--data-dir", "d", "--width", "4"]))
    (run / "config.json").write_text(json.dumps({CONFIG_KEY: saved}))
    args = parse_cli(build(), ["--resume", str(run)])
    assert str(args.data_dir) == "d" and args.width == 4
    assert str(parse_cli(build(), ["--resume", str(run), "--data-dir", "e"]).data_dir) == "e"
