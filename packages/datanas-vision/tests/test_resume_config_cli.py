"""Issue 19: a run re-runs from its own config file, ``--resume RUN_DIR`` alone continues it, and
``--resume RUN_DIR --epochs N`` extends a finished search (digits, tiny sizes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from datanas_core.genotype import Genotype
from datanas_vision import search as search_cli

TINY = ["--epochs", "1", "--max-per-class", "2", "--batch-size", "10", "--C", "4", "--layers", "2",
        "--threads", "1", "--no-progress", "--no-report", "--consistency-batches", "1"]  # fmt: skip


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _epoch_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]


@pytest.mark.slow
def test_config_rerun_resume_alone_and_extension(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    assert search_cli.main([*TINY, "--a-lr", "0.01", "--out", str(run)]) == 0
    first = Genotype.load(run / "genotype.json")

    # the run directory's config file reproduces the run in a new directory
    rerun = tmp_path / "rerun"
    cfg = run / ("config.yaml" if (run / "config.yaml").is_file() else "config.json")
    assert search_cli.main(["--config", str(cfg), "--out", str(rerun)]) == 0
    assert Genotype.load(rerun / "genotype.json") == first
    a, b = (json.loads((d / "config.json").read_text()) for d in (run, rerun))
    assert a["search_config"] == b["search_config"] and a["cli_args"] == b["cli_args"]

    # --resume RUN_DIR alone: the run's own options; a finished run has nothing left to do
    assert search_cli.main(["--resume", str(run)]) == 0
    assert _summary(run)["epoch"] == 1 and len(_epoch_records(run)) == 1

    # --resume RUN_DIR --epochs N extends it
    assert search_cli.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert _summary(run)["epoch"] == 2 and _summary(run)["status"] == "completed"
    assert [r["epoch"] for r in _epoch_records(run)] == [0, 1]
    assert json.loads((run / "config.json").read_text())["search_config"]["epochs"] == 2
    assert _summary(run)["cli"]["run_dir"] == str(run)

    # a flag outside the allowed set is refused with the difference named
    with caplog.at_level(logging.ERROR):
        assert search_cli.main(["--resume", str(run), "--C", "8"]) == 2
    assert "config.C: saved 4, now 8" in caplog.text and "Only these may change on resume" in caplog.text


def test_extending_keeps_the_presets_warmup(tmp_path: Path) -> None:
    """A preset scales its warm-up to --epochs in a fresh run (drnas: 10 of 50); --resume RUN_DIR --epochs N
    keeps the run's warm-up, so extending changes nothing but the horizon."""
    from datanas_core.cli_options import CONFIG_KEY, cli_config, parse_cli

    fresh = parse_cli(search_cli.build_parser(), ["--preset", "drnas", "--epochs", "5"])
    sc = search_cli.search_config(fresh, 0)
    assert sc.arch_warmup_epochs == 1
    run = tmp_path / "run"
    run.mkdir()
    doc = {CONFIG_KEY: cli_config(fresh), "search_config": sc.to_dict()}
    (run / "config.json").write_text(json.dumps(doc))
    extended = parse_cli(search_cli.build_parser(), ["--resume", str(run), "--epochs", "20"])
    assert extended.preset == "drnas" and extended.epochs == 20
    cfg = search_cli.search_config(extended, 0)
    assert cfg.arch_warmup_epochs == 1 and cfg.epochs == 20
    assert parse_cli(search_cli.build_parser(), ["--preset", "drnas", "--epochs", "20"]).epochs == 20
    assert (
        search_cli.search_config(
            parse_cli(search_cli.build_parser(), ["--preset", "drnas", "--epochs", "20"]), 0
        ).arch_warmup_epochs
        == 4
    )  # a fresh run of 20 epochs scales it
    explicit = parse_cli(search_cli.build_parser(), ["--resume", str(run), "--arch-warmup-epochs", "3"])
    assert search_cli.search_config(explicit, 0).arch_warmup_epochs == 3
