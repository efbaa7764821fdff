"""Command-line tools: argument handling, and tiny end-to-end runs (pure-torch framework)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datanas_core.genotype import Genotype
from datanas_seg import compare, search, train


def test_compare_forwards_training_options_to_train() -> None:
    args = compare.build_parser().parse_args(
        [
            "--genotype", "g.json", "--data", "segfolder", "--data-dir", "d", "--iters", "7", "--C", "6",
            "--cells-per-stage", "1", "2", "1", "--auxiliary", "--dilations", "1", "3",
            "--class-weight", "none", "--jobs", "3", "--random", "2", "-vv",
        ]
    )  # fmt: skip
    argv = compare._train_argv(args, Path("x/genotype.json"), Path("x"))
    targs = train.build_parser().parse_args(argv)
    for dest in (
        "data",
        "iters",
        "C",
        "cells_per_stage",
        "auxiliary",
        "dilations",
        "class_weight",
        "verbose",
    ):
        assert getattr(targs, dest) == getattr(args, dest), dest
    assert str(targs.data_dir) == "d" and targs.genotype == "x/genotype.json"
    assert "--jobs" not in argv and "--random" not in argv


def test_train_rejects_bad_random_seed(segfolder: Path, tmp_path: Path) -> None:
    code = train.main(["--genotype", "random:x", "--data", "segfolder", "--data-dir", str(segfolder)])
    assert code == 2


@pytest.mark.slow
def test_search_then_train_tiny_pure_torch(segfolder: Path, tmp_path: Path) -> None:
    common = ["--data", "segfolder", "--data-dir", str(segfolder), "--framework", "torch", "--C", "4"]
    common += ["--crop-size", "16", "--batch-size", "2", "--head-channels", "4", "--threads", "1"]
    code = search.main(
        common
        + ["--epochs", "2", "--steps-per-epoch", "2", "--val-batches", "1", "--arch-warmup-epochs", "1"]
        + ["--out", str(tmp_path / "search"), "--no-progress", "--no-report"]
    )
    assert code == 0
    g = Genotype.load(tmp_path / "search" / "genotype.json")
    assert g.space == "seg.darts"
    code = train.main(
        common
        + ["--genotype", str(tmp_path / "search"), "--iters", "2"]  # the run directory itself
        + ["--out", str(tmp_path / "train"), "--export-config", str(tmp_path / "cfg.py")]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["mIoU"] <= 1.0 and metrics["train"]["iters"] == 2
    assert Genotype.load(tmp_path / "train" / "genotype.json") == g
    # the exported config trains on the loaded segfolder with this run's split (validation held out)
    text = (tmp_path / "cfg.py").read_text()
    assert f"'data_root': '{segfolder.resolve()}'" in text and "data/segfolder" not in text
    split = {s: (tmp_path / f"cfg.{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert split["val"] and not set(split["val"]) & set(split["train"])
    # the search run's summary and report show the result
    appended = json.loads((tmp_path / "search" / "summary.json").read_text())["results"][
        "retrain (segfolder)"
    ]
    assert appended["metrics"]["test_mIoU"] == metrics["test"]["mIoU"]
    assert "retrain (segfolder)" in (tmp_path / "search" / "report.md").read_text()


def test_search_defaults_and_weight_sampling_reach_the_config():
    from datanas_seg.search import build_parser, search_config

    base = ["--data-dir", "unused"]
    cfg = search_config(build_parser().parse_args(base), seed=0)
    assert cfg.estimator == "egs" and cfg.estimator_options["samples"] == 4
    assert (cfg.epochs, cfg.arch_warmup_epochs, cfg.a_lr, cfg.weight_sampling) == (
        24,
        8,
        1e-2,
        "distribution",
    )
    cfg = search_config(
        build_parser().parse_args([*base, "--weight-sampling", "uniform", "--samples", "0"]), seed=0
    )
    assert cfg.weight_sampling == "uniform" and cfg.estimator_options["samples"] == 2  # 0: the preset's M
    cfg = search_config(build_parser().parse_args([*base, "--preset", "darts"]), seed=0)
    assert cfg.estimator == "softmax" and "samples" not in cfg.estimator_options


@pytest.mark.slow
def test_ctrl_c_then_resume_alone_continues_with_the_runs_options(
    segfolder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from datanas_core.search import Searcher

    def interrupted(self: object, *a: object, **k: object) -> None:
        raise KeyboardInterrupt

    run = tmp_path / "search"
    argv = ["--data", "segfolder", "--data-dir", str(segfolder), "--framework", "torch", "--C", "4"]
    argv += [
        "--crop-size",
        "16",
        "--batch-size",
        "2",
        "--head-channels",
        "4",
        "--threads",
        "1",
        "--epochs",
        "2",
    ]
    argv += ["--steps-per-epoch", "1", "--val-batches", "1", "--arch-warmup-epochs", "0", "--no-report"]
    with monkeypatch.context() as m:
        m.setattr(Searcher, "fit", interrupted)
        assert search.main([*argv, "--out", str(run), "--no-progress"]) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"interrupted: resume with: python -m datanas_seg.search --resume {run}"
    command = shlex.split(line.removeprefix("interrupted: resume with: "))
    assert search.main(command[3:]) == 0  # --data-dir and the rest come from the run
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert json.loads((run / "config.json").read_text())["C"] == 4
