"""Issue 19 for the LM search: --config RUN_DIR/config.* re-runs, --resume RUN_DIR alone continues and
--resume RUN_DIR --epochs N extends (synthetic text, tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datanas_core.genotype import Genotype
from datanas_lm import search

TINY = ["--emsize", "6", "--nhid", "6", "--batch-size", "4", "--eval-batch-size", "2", "--bptt", "6",
        "--train-tokens", "48", "--eval-tokens", "24", "--no-progress", "--no-report"]  # fmt: skip


@pytest.mark.slow
def test_lm_search_reruns_resumes_alone_and_extends(
    patterned_corpus_dir: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    argv = ["--data", "textdir", "--data-dir", str(patterned_corpus_dir), *TINY, "--epochs", "1"]
    assert search.main([*argv, "--preset", "darts", "--out", str(run)]) == 0
    assert "== lm search ==" in capsys.readouterr().out
    rerun = tmp_path / "rerun"
    assert search.main(["--config", str(run / "config.json"), "--out", str(rerun)]) == 0
    assert Genotype.load(rerun / "genotype.json") == Genotype.load(run / "genotype.json")
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == "darts" and saved["cli_args"]["method"] == "darts"
    assert search.main(["--resume", str(run), "--epochs", "2"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epoch"] == 2 and summary["cli"]["metrics"]
    assert json.loads((run / "config.json").read_text())["settings"]["epochs"] == 2
