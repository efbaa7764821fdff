"""Retraining results appended to a search run survive the search's own summary writes (issue 19): the
summary is read-modify-written under ``RUN_DIR/.summary.lock`` and ``write_summary`` keeps the ``results``
sections that other processes added."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from datanas_core.runtime import append_result
from datanas_core.runtime.rundir import SUMMARY_LOCK, RunDir


def _run_dir(tmp_path: Path) -> Path:
    rd = RunDir(tmp_path / "run", tensorboard=False)
    rd.write_config({"seed": 0})
    rd.write_summary({"status": "running", "epoch": 1})
    return rd.path


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text(encoding="utf-8"))


def test_final_search_summary_keeps_appended_results(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    append_result(run, "retrain (cifar10)", {"test_top1": 0.91}, report=False)
    # the still-running search finishes and writes its summary, built without the results
    RunDir(run, tensorboard=False).write_summary({"status": "completed", "epoch": 4})
    doc = _summary(run)
    assert doc["status"] == "completed" and doc["epoch"] == 4
    assert doc["results"]["retrain (cifar10)"]["metrics"] == {"test_top1": 0.91}


def test_a_summary_with_its_own_results_merges_section_by_section(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    append_result(run, "retrain", {"test_top1": 0.5}, report=False)
    append_result(run, "compare", {"searched_top1": 0.6}, report=False)
    RunDir(run, tensorboard=False).write_summary(
        {"status": "completed", "results": {"retrain": {"metrics": {}}}}
    )
    results = _summary(run)["results"]
    assert results["retrain"] == {"metrics": {}}  # the writer's own section replaces the file's
    assert results["compare"]["metrics"] == {"searched_top1": 0.6}  # the other one stays


def test_concurrent_appends_and_summary_writes_lose_nothing(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    sections = [f"retrain {i}" for i in range(8)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def search_writes() -> None:
        i = 0
        try:
            while not stop.is_set():
                RunDir(run, tensorboard=False).write_summary({"status": "running", "step": i})
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def retrain(name: str) -> None:
        try:
            for k in range(5):
                append_result(run, name, {"round": k}, report=False)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writer = threading.Thread(target=search_writes)
    writer.start()
    workers = [threading.Thread(target=retrain, args=(name,)) for name in sections]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    writer.join()
    RunDir(run, tensorboard=False).write_summary({"status": "completed"})
    assert not errors, errors
    doc = _summary(run)
    assert doc["status"] == "completed"
    assert sorted(doc["results"]) == sorted(sections)
    assert all(doc["results"][s]["metrics"] == {"round": 4} for s in sections)


def test_restart_moves_the_summary_aside_but_not_its_lock(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    assert (run / SUMMARY_LOCK).is_file()
    moved = RunDir(run, tensorboard=False).move_aside()
    assert moved is not None and (moved / "summary.json").is_file()
    assert (run / SUMMARY_LOCK).is_file() and not (moved / SUMMARY_LOCK).exists()
