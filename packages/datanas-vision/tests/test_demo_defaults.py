"""The no-argument search (``make demo``): DATA's estimator with the budget-aware schedule, as the README says,
and a search that ends decided even on a tiny budget."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from datanas_core.search import SearchConfig
from datanas_vision import search as search_cli

README = Path(__file__).resolve().parents[3] / "README.md"


def _no_argument_config() -> SearchConfig:
    return search_cli.search_config(search_cli.build_parser().parse_args([]), seed=0)


def _readme_demo_command() -> list[str]:
    """The flags of the explicit command that the README's demo section says ``make demo`` runs."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### What `make demo` runs", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(python -m datanas_vision\.search .*?)\n```", section, re.S)
    assert block, "the README's demo section has no explicit `python -m datanas_vision.search ...` command"
    argv = shlex.split(block.group(1).replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "datanas_vision.search"]
    return argv[3:]


def test_no_argument_search_is_data_egs_with_the_budget_aware_schedule() -> None:
    cfg = _no_argument_config()
    assert cfg.estimator == "egs" and cfg.estimator_options == {"samples": 4}
    assert cfg.executor is None and not cfg.approximations  # native executor: DATA's exact gradient
    assert cfg.regularizers == ({"type": "adc", "weight": 0.1},)
    assert (cfg.schedule_unit, cfg.arch_travel) == ("step", 24.0)
    assert cfg.a_lr_schedule is not None and cfg.weight_sampling == "distribution"
    assert (cfg.epochs, cfg.arch_warmup_epochs, cfg.w_lr) == (15, 3, 0.1)


def test_readme_demo_command_is_the_no_argument_search() -> None:
    parser = search_cli.build_parser()
    explicit = parser.parse_args(_readme_demo_command())
    default = parser.parse_args([])
    assert search_cli.search_config(explicit, 0) == search_cli.search_config(default, 0)
    for name in ("data", "space", "C", "layers", "batch_size", "train_fraction"):
        assert getattr(explicit, name) == getattr(default, name), name


def test_explicit_flags_override_the_defaults() -> None:
    parse = search_cli.build_parser().parse_args
    a_lr = search_cli.search_config(parse(["--a-lr", "0.01"]), 0)
    assert (a_lr.arch_travel, a_lr.a_lr) == (None, 0.01)  # an explicit lr is used, not replaced by travel
    longer = search_cli.search_config(parse(["--epochs", "40"]), 0)
    assert longer.arch_warmup_epochs == 8  # a fifth of the epochs
    published = search_cli.search_config(parse(["--preset", "data", "--space", "darts_ext"]), 0)
    assert published.arch_travel is None and published.estimator_options == {"samples": 2}
    assert published.schedule_unit == "epoch" and published.w_lr == 0.025


def test_default_search_decides_on_a_tiny_budget(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    argv = ["--max-per-class", "8", "--C", "4", "--layers", "2", "--epochs", "3", "--batch-size", "8",
            "--threads", "1", "--no-progress", "--no-report", "--consistency-batches", "1",
            "--out", str(out)]  # fmt: skip
    assert search_cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["decision"]["decided"] is True
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in epochs if "decision_entropy" in r][-1]
    assert last["decision_entropy"] < 0.7
    printed = capsys.readouterr().out
    assert "decision: decided search" in printed
    assert f"python -m datanas_vision.compare --genotype {out} --random 5" in printed


def test_default_search_dry_run_measures_a_step(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """``--dry-run`` of the no-argument search (per-step schedule, weights-only warm-up): it failed with
    "per-step schedules need the number of steps per epoch" before the dry run set them."""
    out = tmp_path / "run"
    argv = ["--max-per-class", "8", "--C", "4", "--layers", "2", "--batch-size", "8", "--threads", "1",
            "--no-progress", "--dry-run", "--out", str(out)]  # fmt: skip
    assert search_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "dry run on cpu" in printed and "batch 8: step" in printed
    assert not (out / "summary.json").exists()  # nothing searched
