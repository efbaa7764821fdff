"""tools/peer_nb201.py: its table of finished peer runs (the runs themselves need xautodl, not installed in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import peer_nb201 as peer
import pytest


def _run(
    out: Path, seed: int, accs: list[float | None], arch: str = "|skip_connect~0|+|none~0|none~1|"
) -> None:
    history = [{"epoch": e, "arch": arch, "accuracy": a, "entropy": 0.99} for e, a in enumerate(accs)]
    doc = {"seed": seed, "final": history[-1], "history": history, "cpu_minutes": 1.5}
    (out / f"gdas_seed{seed}.json").write_text(json.dumps(doc))


def test_summary_lists_every_finished_seed_with_its_curve_and_the_mean(tmp_path: Path) -> None:
    _run(tmp_path, 0, [88.86, 75.53, 80.01])
    _run(tmp_path, 1, [None, 90.0, 70.0])
    (tmp_path / "darts_seed0.json").write_text("{}")  # another method: not in the gdas table
    text = peer.summarize(tmp_path, "gdas")
    rows = [line for line in text.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2
    assert "80.01" in rows[0] and "88.9 / 75.5 / 80.0" in rows[0]
    assert "- / 90.0 / 70.0" in rows[1]  # an epoch whose cell is not in the table
    assert "mean 75.00, min 70.00 over 2 seeds" in text


def test_no_finished_runs_is_said_not_raised(tmp_path: Path) -> None:
    assert peer.summarize(tmp_path, "gdas") == f"no finished gdas runs in {tmp_path}"


def test_method_and_table_are_required_choices() -> None:
    with pytest.raises(SystemExit):
        peer.parse_args(["--table", "t.csv", "--out", "o", "--method", "enas"])
    args = peer.parse_args(["--table", "t.csv", "--out", "o"])
    assert (args.method, args.C, args.layers, args.epochs, args.max_per_class) == ("gdas", 8, 1, 10, 500)
