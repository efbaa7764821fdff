"""The "search your own model" examples run end to end at tiny size (synthetic images)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "search_your_own_model"
TINY = [
    "--synthetic",
    "--per-class",
    "2",
    "--test-per-class",
    "1",
    "--image-size",
    "8",
    "--width",
    "4",
    "--search-epochs",
    "2",
    "--retrain-epochs",
    "1",
    "--random",
    "2",
    "--batch-size",
    "8",
]


def _load(name: str):  # noqa: ANN202
    assert EXAMPLES.is_dir(), f"{EXAMPLES} is missing from the repository"
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet_blocks_example(tmp_path) -> None:
    out = _load("resnet_blocks").main([*TINY, "--out", str(tmp_path / "a.json")])
    assert out["rows"][0]["name"] == "searched" and len(out["rows"]) == 3
    assert set(out["rows"][0]["choices"]) == {"stage1", "stage2", "stage3"}
    assert (tmp_path / "a.json").is_file()


@pytest.mark.slow
def test_mobilenet_flops_example(tmp_path) -> None:
    out = _load("mobilenet_flops").main([*TINY, "--run-dir", str(tmp_path / "run")])
    assert len(out["rows"][0]["choices"]) == 5
    budget = out["budget_mflops"] * 1e6
    assert all(r["flops"] <= budget for r in out["rows"][1:])  # the random baseline fits the budget
    assert (tmp_path / "run" / "report.md").is_file()


def test_cell_space_guide_runs() -> None:
    guide = EXAMPLES.parent / "write_a_cell_space" / "my_space.py"
    assert guide.is_file(), f"{guide} is missing from the repository"
    spec = importlib.util.spec_from_file_location("my_space_guide", guide)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.check()
    assert report.checks[-1] == "fixed_code"
