"""tools/study_nb201.py: the commands it runs and the tables it writes from finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import study_nb201 as study

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOL = "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"


def _table(tmp_path: Path) -> Path:
    p = tmp_path / "nb201.csv"
    p.write_text(
        f"ArchitectureString,CIFAR10TestAccuracy200Epochs\n{BEST},94.37\n{EMPTY},10.0\n{POOL},60.0\n"
    )
    return p


def _fake_run(run_dir: Path, archs: list[str], cpu_s: float) -> None:
    from datanas_core import get_space

    space = get_space("nb201")
    run_dir.mkdir(parents=True)
    lines = []
    for e, a in enumerate(archs):
        g = space.from_string(a).to_dict()
        probs = [[0.6, 0.1, 0.1, 0.1, 0.1]] * 6
        lines.append(
            {"kind": "epoch", "epoch": e, "genotype": g, "collapse_entropy": 0.5, "probs": {"cell": probs}}
        )
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    summary = {"status": "completed", "genotype": space.from_string(archs[-1]).to_dict()}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "study.json").write_text(json.dumps({"cpu_s": cpu_s, "wall_s": cpu_s, "command": "x"}))


def test_commands_carry_the_budget_and_one_thread(tmp_path: Path) -> None:
    args = study.build_parser().parse_args(["--table", str(_table(tmp_path))])
    for setting in study.SETTINGS:
        cmd = study.command(args, setting, 2, tmp_path / "run")
        text = " ".join(cmd)
        for flag in ("--max-per-class 500", "--C 8", "--layers 1", "--batch-size 64", "--epochs 10",
                     "--threads 1", "--space nb201", "--seed 2", "--rule argmax_edge"):  # fmt: skip
            assert flag in text, (setting, flag)
        assert f"--benchmark {tmp_path / 'nb201.csv'}" in text
        assert "--executor" in cmd  # explicit: exact for EGS/DARTS/DrNAS/SNAS, sparse for GDAS


def test_tables_from_finished_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _fake_run(runs / "egs_m4" / "seed_0", [POOL, BEST, BEST, BEST, BEST], 120.0)
    _fake_run(runs / "egs_m4" / "seed_1", [BEST, BEST, BEST, BEST, POOL], 180.0)
    (runs / "darts" / "seed_0").mkdir(parents=True)  # unfinished: left out
    out = tmp_path / "out"
    argv = ["--table", str(_table(tmp_path)), "--runs", str(runs), "--out", str(out), "--summarize"]
    assert study.main([*argv, "--settings", "egs_m4,darts", "--seeds", "0,1"]) == 0
    doc = json.loads((out / "results.json").read_text())
    (s,) = doc["summary"]
    assert s["setting"] == "egs_m4" and s["per_seed"] == [94.37, 60.0]
    assert s["mean"] == pytest.approx(77.185) and s["min"] == 60.0
    assert s["ranks"] == [1, 2] and s["stable"] == 1  # seed 1 changed its cell in the last epoch
    assert s["cpu_min_mean"] == pytest.approx(2.5)
    assert doc["runs"][0]["per_epoch_cifar10"] == [None] * 5  # the fake runs were not scored per epoch
    assert doc["table"]["cells"] == 3
    md = (out / "results.md").read_text()
    assert "| egs_m4 | EGS (DATA) | 2 | 77.19 | 60.00 | 94.37 / 60.00 |" in md
    assert "`" + BEST.replace("|", "\\|") + "`" in md  # escaped inside the table


def test_rows_of_runs_no_longer_on_disk_are_kept_from_the_previous_table(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    _fake_run(runs / "egs_m4" / "seed_0", [POOL, BEST], 60.0)
    _fake_run(runs / "darts" / "seed_0", [BEST, POOL], 60.0)
    argv = ["--table", str(_table(tmp_path)), "--runs", str(runs), "--out", str(out), "--summarize"]
    assert study.main([*argv, "--settings", "egs_m4,darts", "--seeds", "0"]) == 0
    # a later session: the old run directories are gone, darts seed 0 is re-run, gdas is new
    import shutil

    shutil.rmtree(runs)
    _fake_run(runs / "darts" / "seed_0", [POOL, BEST], 60.0)
    _fake_run(runs / "gdas" / "seed_0", [EMPTY, EMPTY], 60.0)
    assert study.main([*argv, "--settings", "darts,gdas", "--seeds", "0"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [(r["setting"], r["cifar10"]) for r in doc["runs"]] == [
        ("egs_m4", 94.37),
        ("darts", 94.37),
        ("gdas", 10.0),
    ]
    assert [s["setting"] for s in doc["summary"]] == ["egs_m4", "darts", "gdas"]
    # another budget: the previous table is not mixed in
    assert study.main([*argv, "--settings", "gdas", "--seeds", "0", "--epochs", "20"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["setting"] for r in doc["runs"]] == ["gdas"]


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown setting"):
        study.main(["--table", str(_table(tmp_path)), "--settings", "nope", "--list"])


@pytest.mark.parametrize("setting", sorted(study.SETTINGS))
def test_every_setting_resolves_to_a_search_config_that_no_cli_default_changes(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each setting's flags parse in the vision search CLI and build a SearchConfig that does not depend on the
    CLI's no-preset defaults (``DEFAULT_METHOD``), so a setting keeps its meaning when those change."""
    from types import MappingProxyType

    from datanas_core import cli_options
    from datanas_vision import search as vision_search

    flags = study.SETTINGS[setting][2]
    argv = [
        "--space",
        "nb201",
        "--epochs",
        "10",
        *flags,
        "--rule",
        "argmax_edge",
        "--out",
        str(tmp_path / "r"),
    ]

    def config() -> dict:
        return vision_search.search_config(
            cli_options.parse_cli(vision_search.build_parser(), argv), 0
        ).to_dict()

    before = config()
    assert before["epochs"] == 10 and before["rule"] == "argmax_edge"
    other = dict(vision_search.DEFAULT_METHOD)
    other.update(w_lr=0.5, schedule_unit="epoch", arch_travel=7.0, a_lr_schedule="linear:1:0.5")
    monkeypatch.setattr(vision_search, "DEFAULT_METHOD", MappingProxyType(other))
    assert config() == before, f"{setting} depends on the vision CLI's no-preset defaults"
