"""Vision CLIs end in one line and a status, never a traceback: bad --out, hostile genotypes, Ctrl-C,
an ignored --data-dir, a resume override after a NaN stop."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from datanas_core.runtime import RunDir
from datanas_vision import search as search_cli
from datanas_vision import train as train_cli

TINY = ["--epochs", "1", "--max-per-class", "2", "--batch-size", "10", "--C", "4", "--layers", "3",
        "--threads", "1", "--no-progress", "--no-report", "--consistency-batches", "1"]  # fmt: skip


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


@pytest.mark.slow
def test_out_is_a_file_subprocess_one_line_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "datanas_vision.search", *TINY, "--out", str(f)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "is a file, not a directory" in last and str(f) in last


def test_out_is_a_file_for_search(tmp_path: Path, errors: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert search_cli.main([*TINY, "--out", str(f)]) == 2
    assert "is a file, not a directory" in errors.text and f.read_text() == "x"


def test_out_is_a_file_for_train(tmp_path: Path, errors: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    argv = ["--genotype", "darts_v2", "--epochs", "1", "--C", "4", "--layers", "2", "--max-per-class", "2",
            "--no-progress", "--out", str(f)]  # fmt: skip
    assert train_cli.main(argv) == 2
    assert "is a file, not a directory" in errors.text


def test_read_only_out(
    tmp_path: Path, errors: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *a: Any, **k: Any) -> None:
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system", str(self))
        real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert search_cli.main([*TINY, "--out", str(tmp_path / "ro" / "run")]) == 2
    assert "cannot create run directory" in errors.text and "Read-only file system" in errors.text


@pytest.mark.parametrize(
    ("content", "match"),
    [(b'{"space": "darts"\xff}', "not UTF-8"), (b"[" * 50_000 + b"]" * 50_000, "nested too deeply")],
)
def test_hostile_genotype_file_in_train_and_show(
    tmp_path: Path,
    errors: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    match: str,
) -> None:
    from datanas_core import show

    g = tmp_path / "g.json"
    g.write_bytes(content)
    assert train_cli.main(["--genotype", str(g), "--epochs", "1", "--no-progress"]) == 2
    assert match in errors.text
    assert show.main([str(g)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_ctrl_c_prints_the_exact_resume_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datanas_core.search import Searcher

    def interrupted(self: Any, *a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Searcher, "fit", interrupted)
    run = tmp_path / "run"
    assert search_cli.main([*TINY, "--out", str(run)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"interrupted: resume with: python -m datanas_vision.search --resume {run}"
    assert "Traceback" not in "\n".join(err)


def test_data_dir_with_digits_is_reported(tmp_path: Path, errors: pytest.LogCaptureFixture) -> None:
    from datanas_vision.data import DataOptions, load_dataset

    load_dataset("digits", tmp_path, DataOptions(max_per_class=2))
    assert f"--data-dir {tmp_path} is ignored" in errors.text and "cifar10" in errors.text


def test_bad_choice_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        search_cli.main(["--space", "nope"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope'" in err and "darts" in err and "usage" not in err


@pytest.mark.slow
def test_resume_accepts_the_documented_overrides_and_lists_other_differences(
    tmp_path: Path, errors: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    assert search_cli.main([*TINY, "--out", str(run)]) == 0
    more = [*TINY[:1], "2", *TINY[2:]]  # --epochs 2
    assert search_cli.main([*more, "--C", "6", "--resume", str(run)]) == 2
    assert "config.C: saved 4, now 6" in errors.text and "may change on resume" in errors.text
    errors.set_level(logging.INFO)
    assert search_cli.main([*more, "--w-lr", "0.01", "--a-lr", "0.001", "--resume", str(run)]) == 0
    assert "resume overrides: w_lr" in errors.text and "epochs 1 -> 2" in errors.text


def test_debug_adds_the_traceback_to_a_logged_error(tmp_path: Path, errors: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    argv = ["--genotype", str(f), "--epochs", "1", "--no-progress"]
    assert train_cli.main(argv) == 2
    record = next(r for r in errors.records if r.levelno == logging.ERROR)
    assert record.exc_info is None
    errors.clear()
    assert train_cli.main([*argv, "--debug"]) == 2
    record = next(r for r in errors.records if r.levelno == logging.ERROR)
    assert record.exc_info is not None and "Traceback" in errors.text


@pytest.mark.slow
def test_two_searches_on_one_out_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "datanas_vision.search", *TINY, "--epochs", "3", "--out", str(run)]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], errs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    last = errs[loser].strip().splitlines()[-1]
    assert f"in use by another search (pid {procs[winner].pid})" in last or "already holds a run" in last
    assert "Traceback" not in errs[loser]
    events = [r["event"] for r in RunDir(run).read_metrics("event")]
    assert events == ["start", "completed"]  # one run's records only, nothing interleaved
    assert RunDir(run).read_summary()["status"] == "completed"
