"""The report states the result: headline, warnings, heatmaps relative to uniform, retraining results appended
to a run, charts with and without matplotlib, and what a run writes to TensorBoard."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from datanas_core import get_space
from datanas_core.errors import ConfigError, MissingDependencyError
from datanas_core.runtime import append_result, build_report, find_run_dir
from datanas_core.runtime.charts import have_matplotlib, line_chart
from datanas_core.runtime.report import load_run, run_warnings
from datanas_core.runtime.svg import diverging_color, heatmap_svg
from datanas_core.runtime.tensorboard import alpha_image, genotype_text, log_record

SVG = "{http://www.w3.org/2000/svg}"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _probs(spread: float) -> list[list[float]]:
    """6 NB201 edges x 5 ops: op 1 (or op 2 on odd edges) gets ``spread`` more than the others."""
    rows = []
    for e in range(6):
        row = [0.2 - spread / 4] * 5
        row[1 + e % 2] = 0.2 + spread
        rows.append(row)
    return rows


def _write_run(
    path: Path,
    *,
    spread: float = 0.3,
    status: str = "completed",
    collapse: bool = False,
    summary_extra: dict[str, Any] | None = None,
) -> Path:
    path.mkdir(parents=True)
    g = get_space("nb201").from_string(ARCH)
    (path / "genotype.json").write_text(g.to_json())
    space = {
        "name": "nb201",
        "cells": {
            "cell": {
                "ops": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"],
                "edges": [[0, 1], [0, 2], [1, 2], [0, 3], [1, 3], [2, 3]],
            }
        },
    }
    (path / "space.json").write_text(json.dumps(space))
    config = {
        "data": "digits",
        "preset": "data_m4",
        "search_config": {
            "estimator": "egs",
            "estimator_options": {"samples": 4},
            "regularizers": [{"type": "adc", "weight": 0.1}],
            "epochs": 3,
        },
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "manifest.json").write_text(
        json.dumps({"argv": ["/x/packages/datanas-vision/src/datanas_vision/search.py", "--epochs", "3"]})
    )
    lines = []
    for e in range(3):
        rec: dict[str, Any] = {
            "kind": "epoch",
            "epoch": e,
            "step": 2 * (e + 1),
            "train_loss": 2.0 - 0.1 * e,
            "val_loss": 2.1 - 0.1 * e,
            "val_acc": 0.3 + 0.1 * e,
            "probs": {"cell": _probs(spread * (e + 1) / 3)},
            "genotype": g.to_dict(),
        }
        if collapse and e == 2:
            rec["collapse_flag"] = True
            rec["collapse"] = {
                "cell": {"edges": 6, "param_free": 4, "param_free_share": 0.67, "dominant_op": "skip_connect"}
            }
        lines.append(json.dumps(rec))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    final = {k: v for k, v in json.loads(lines[-1]).items() if k not in ("probs", "genotype", "collapse")}
    summary = {"status": status, "epoch": 3, "final": final, "genotype": g.to_dict(), **(summary_extra or {})}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_headline_states_task_method_metric_and_cell(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    paths = build_report(run)
    md = paths["md"].read_text()
    head = md[: md.index("## Run")]
    assert "## Result" in head
    assert "vision search on digits" in head and "data_m4 (egs (samples=4), reg adc:0.1, 3 epochs)" in head
    assert "val_acc 0.5" in head and "epoch 3" in head
    assert "figures/cell_cell.svg" in head and "0->1 nor_conv_3x3" in head
    assert "No warnings." in head
    html = paths["html"].read_text()
    assert html.index('class="headline"') < html.index('id="run"')


def test_headline_shows_benchmark_accuracy(tmp_path: Path) -> None:
    bench = {"arch": ARCH, "in_table": True, "cifar10": 93.5, "cifar10_rank": 12, "cifar10_percentile": 99.8}
    run = _write_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["final"]["benchmark"] = bench
    summary["final"]["benchmark/cifar100"] = 70.25
    (run / "summary.json").write_text(json.dumps(summary))
    md = build_report(run)["md"].read_text()
    head = md[: md.index("## Run")]
    assert "| benchmark | cifar10 93.5 (rank 12, percentile 99.8); cifar100 70.25 |" in head


def test_warnings_collapse_undecided_status_nan_and_generic_entries(tmp_path: Path) -> None:
    run = _write_run(
        tmp_path / "run",
        spread=0.001,
        status="failed",
        collapse=True,
        summary_extra={"nan_guard": "loss is NaN at step 5", "warnings": ["custom monitor says hi"]},
    )
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"kind": "event", "event": "warning", "message": "from an event"}) + "\n")
    warnings = run_warnings(load_run(run))
    text = "\n".join(warnings)
    assert "run status: failed" in text and "NaN guard tripped: loss is NaN at step 5" in text
    assert "possible collapse" in text and "4/6 kept edges parameter-free" in text
    assert "undecided search (cell)" in text
    assert "custom monitor says hi" in text and "from an event" in text
    md = build_report(run)["md"].read_text()
    assert "**Warnings**" in md[: md.index("## Run")]


def test_undecided_warning_defers_to_a_recorded_one(tmp_path: Path) -> None:
    run = _write_run(
        tmp_path / "run", spread=0.001, summary_extra={"warnings": [{"message": "Undecided: x"}]}
    )
    warnings = run_warnings(load_run(run))
    assert [w for w in warnings if "undecided" in w.lower()] == ["Undecided: x"]
    decided = _write_run(tmp_path / "decided", spread=0.3)
    assert run_warnings(load_run(decided)) == []
    # the decision monitor's verdict is used when the last epoch has one
    monitored = _write_run(tmp_path / "monitored", spread=0.001)
    lines = (monitored / "metrics.jsonl").read_text().splitlines()
    last = {**json.loads(lines[-1]), "decided": False, "decision_verdict": "UNDECIDED SEARCH: because"}
    (monitored / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    assert run_warnings(load_run(monitored)) == ["UNDECIDED SEARCH: because"]
    last["decided"] = True
    (monitored / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    assert run_warnings(load_run(monitored)) == []


def test_alpha_heatmaps_are_coloured_relative_to_uniform(tmp_path: Path) -> None:
    # a small deviation from 1/K still spans the colour scale: the largest probability is full red, the
    # smallest full blue
    run = _write_run(tmp_path / "run", spread=0.003)
    build_report(run)
    root = ET.parse(run / "figures" / "alpha_final_cell.svg").getroot()
    cells = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]
    fills = {c.get("fill") for c in cells}
    assert diverging_color(1.0) in fills and len(fills) >= 2
    at = {(c.get("data-row"), c.get("data-col")): c for c in cells}
    assert at[("0", "1")].get("fill") == diverging_color(1.0)  # 0.203: the largest
    assert at[("0", "1")].get("data-value") == "0.203"
    assert at[("0", "0")].get("fill") == diverging_color(-1.0)  # 0.19925: the smallest
    assert at[("1", "1")].get("fill") == diverging_color(-1.0) and at[("1", "2")].get(
        "fill"
    ) == diverging_color(1)
    assert "1/K=0.2" in (run / "figures" / "alpha_final_cell.svg").read_text()


def test_heatmap_center_is_white_and_sides_diverge() -> None:
    root = ET.fromstring(
        heatmap_svg(
            [[0.1, 0.2, 0.3]], row_labels=["e"], col_labels=list("abc"), vmin=0.1, vmax=0.3, center=0.2
        )
    )
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]
    assert fills == [diverging_color(-1.0), diverging_color(0.0), diverging_color(1.0)]
    assert diverging_color(0.0) == "#f7f7f7"


def test_append_result_updates_summary_and_report(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    build_report(run)
    assert find_run_dir(run) == run.resolve() and find_run_dir(run / "genotype.json") == run.resolve()
    assert find_run_dir("darts_v2") is None and find_run_dir(tmp_path) is None
    path = append_result(run, "retrain", {"test_top1": 0.9512, "params": 12345}, source=tmp_path / "t")
    summary = json.loads(path.read_text())
    assert summary["status"] == "completed"  # the rest of the summary is kept
    assert summary["results"]["retrain"]["metrics"] == {"test_top1": 0.9512, "params": 12345}
    md = (run / "report.md").read_text()
    head = md[: md.index("## Run")]
    assert "| retrain | test_top1 0.9512, params 12345 |" in head
    assert "## Retraining" in md
    append_result(run, "retrain", {"test_top1": 0.5}, report=False)
    append_result(run, "compare", {"searched_top1": 0.6})
    results = json.loads((run / "summary.json").read_text())["results"]
    assert results["retrain"]["metrics"] == {"test_top1": 0.5} and "compare" in results
    with pytest.raises(ConfigError):
        append_result(tmp_path / "nothing", "retrain", {})


@pytest.mark.parametrize("backend", ["svg", "matplotlib"])
def test_line_charts_mark_every_series(backend: str) -> None:
    if backend == "matplotlib" and not have_matplotlib():
        pytest.skip("matplotlib not installed")
    svg = line_chart(
        {"a": [(1, 2.0), (2, 1.0), (3, float("nan"))], "b": [(1, 3.0), (2, 2.5)], "empty": []},
        title="t",
        xlabel="epoch",
        ylabel="loss",
        backend=backend,
    )
    root = ET.fromstring(svg)
    names = [e.get("data-name") for e in root.iter() if e.get("class") == "series"]
    assert names == ["a", "b"]
    ET.fromstring(line_chart({}, backend=backend))
    with pytest.raises(ConfigError):
        line_chart({}, backend="png")


def test_charts_fall_back_to_the_builtin_writer_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    import datanas_core.runtime.charts as charts

    monkeypatch.setattr(charts, "have_matplotlib", lambda: False)
    svg = charts.line_chart({"a": [(1, 1.0), (2, 2.0)]}, title="t")
    assert "<polyline" in svg and 'class="series"' in svg and "matplotlib" not in svg.lower()
    with pytest.raises(MissingDependencyError, match=r"datanas-core\[report\]"):
        charts.line_chart({}, backend="matplotlib")


class _Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append(("scalar", tag, value, step))

    def add_histogram(self, tag: str, values: Any, step: int) -> None:
        self.calls.append(("histogram", tag, values, step))

    def add_image(self, tag: str, img: Any, step: int, dataformats: str = "CHW") -> None:
        assert dataformats == "HWC"
        self.calls.append(("image", tag, img, step))

    def add_text(self, tag: str, text: str, step: int) -> None:
        self.calls.append(("text", tag, text, step))


def test_tensorboard_gets_alpha_histograms_images_and_genotype_text() -> None:
    g = get_space("nb201").from_string(ARCH).to_dict()
    w = _Writer()
    probs = _probs(0.1)
    log_record(
        w, {"kind": "epoch", "epoch": 0, "step": 7, "val_acc": 0.5, "probs": {"cell": probs}, "genotype": g}
    )
    tags = {(kind, tag) for kind, tag, _, _ in w.calls}
    assert ("scalar", "epoch/val_acc") in tags
    assert not any("schema_version" in tag or tag.startswith("epoch/genotype") for _, tag in tags)
    assert ("histogram", "alpha/cell") in tags and ("image", "alpha_image/cell") in tags
    assert ("text", "genotype") in tags and all(step == 7 for *_, step in w.calls)
    hist = next(v for k, t, v, _ in w.calls if k == "histogram")
    assert len(hist) == 30
    img = alpha_image(probs, cell=4)
    assert img.shape == (24, 20, 3) and img.dtype.name == "uint8"
    assert "0->1 nor_conv_3x3" in genotype_text(g)
    log_record(w, {"kind": "event", "step": 1})  # ignored


def test_tensorboard_scalars_only_writer() -> None:
    class Scalars:
        tags: list[str] = []

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.tags.append(tag)

    w = Scalars()
    log_record(w, {"kind": "epoch", "step": 1, "loss": 1.0, "probs": {"cell": _probs(0.1)}})
    assert w.tags == ["epoch/loss"]
