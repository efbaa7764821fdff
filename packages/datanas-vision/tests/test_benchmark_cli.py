"""``python -m datanas_vision.search --benchmark PATH``: every epoch's NB201 cell scored, bad input rejected."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from datanas_core.space.nb201 import NB201_OPS
from datanas_vision import search as search_cli

TINY = ["--data", "digits", "--max-per-class", "4", "--epochs", "2", "--batch-size", "16", "--C", "4",
        "--layers", "1", "--threads", "1", "--no-progress", "--consistency-batches", "1"]  # fmt: skip


def _table(path: Path) -> Path:
    """A simple ``arch,cifar10,cifar100`` CSV with made-up values for all 15,625 NB201 cells."""
    lines = ["arch,cifar10,cifar100"]
    for i, ops in enumerate(itertools.product(NB201_OPS, repeat=6)):
        a, b, c, d, e, f = ops
        lines.append(f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|,{50 + i % 4000 / 100},{i % 70}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_benchmark_flag_scores_every_epoch(tmp_path: Path, capsys: Any) -> None:
    table = _table(tmp_path / "nb201.csv")
    run = tmp_path / "run"
    argv = [*TINY, "--space", "nb201", "--benchmark", str(table), "--out", str(run)]
    assert search_cli.main(argv) == 0
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r.get("kind") == "epoch"]
    assert len(epochs) == 2
    nb201 = (run / "nb201.txt").read_text().strip()
    last = epochs[-1]["benchmark"]
    assert last["arch"] == nb201 and last["in_table"] is True
    assert {"cifar10", "cifar10_rank", "cifar10_percentile", "cifar100"} <= set(last)
    assert json.loads((run / "summary.json").read_text())["final"]["benchmark"] == last
    assert json.loads((run / "config.json").read_text())["benchmark"] == str(table)
    assert "## Benchmark" in (run / "report.md").read_text()
    out = capsys.readouterr().out
    assert f"cifar10 {last['cifar10']:.2f} (rank {last['cifar10_rank']} of 15625" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--space", "darts", "--layers", "2"], "--benchmark scores NAS-Bench-201 cells; --space darts"),
        (["--space", "nb201"], "does not exist"),
    ],
)
def test_bad_benchmark_input_exits_2_with_a_message(
    tmp_path: Path, caplog: Any, flags: list[str], message: str
) -> None:
    argv = [*TINY, *flags, "--benchmark", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]
    with caplog.at_level(logging.ERROR):
        assert search_cli.main(argv) == 2
    assert message in caplog.text
    assert not (tmp_path / "r").exists()  # rejected before the search starts


def test_compare_scores_every_cell(tmp_path: Path) -> None:
    from datanas_vision.compare import main as compare_main

    table = _table(tmp_path / "nb201.csv")
    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    out = tmp_path / "cmp"
    argv = ["--out", str(out), "--space", "nb201", "--genotype", best, "--random", "1",
            "--max-per-class", "2", "--test-max-per-class", "1", "--train-epochs", "1", "--C", "4",
            "--layers", "1", "--batch-size", "10", "--threads", "1", "--benchmark", str(table)]  # fmt: skip
    assert compare_main(argv) == 0
    doc = json.loads((out / "compare.json").read_text())
    searched = next(r for r in doc["rows"] if r["kind"] == "searched")
    assert searched["benchmark"]["arch"] == best and searched["benchmark"]["in_table"] is True
    assert all("cifar10_rank" in r["benchmark"] for r in doc["rows"])
    assert "NB201 CIFAR-10 (rank)" in (out / "compare.md").read_text()


def test_compare_rejects_benchmark_outside_nb201(tmp_path: Path, caplog: Any) -> None:
    from datanas_vision.compare import main as compare_main

    argv = ["--out", str(tmp_path / "c"), "--genotype", "darts_v2", "--random", "1",
            "--benchmark", str(tmp_path / "t.csv")]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert compare_main(argv) == 2
    assert "use --space nb201, not darts" in caplog.text
