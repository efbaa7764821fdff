"""Summarise `python -m datanas_vision.search` run directories: one row per run.

Usage: python docs/results/demo/summarise.py RUN_DIR [RUN_DIR ...]

Columns: final normalised entropy and median top-op margin (DecisionMonitor), its verdict, the epochs over
which the derived cell stayed unchanged, the share of parameter-free ops in the derived cell, possible-collapse
warnings in the log (from metrics: epochs with ``collapse_param_free_share`` > 0.5), train accuracy and
wall-clock seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PARAM_FREE = {"skip_connect", "max_pool_3x3", "avg_pool_3x3", "none"}


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def summarise(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if "decision_entropy" in r]
    last = epochs[-1]
    genos = sorted((run / "genotypes").glob("epoch_*.json"))
    cells = [json.loads(p.read_text())["cells"] for p in genos]
    stable = 1
    while stable < len(cells) and cells[-stable - 1] == cells[-1]:
        stable += 1
    final = json.loads((run / "genotype.json").read_text())["cells"]
    ops = [e[2] for c in final.values() for e in c["edges"]]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "run": run.name,
        "epochs": len(epochs),
        "entropy": round(last["decision_entropy"], 3),
        "margin": round(last["decision_margin"], 3),
        "decided": summary["decision"]["decided"],
        "stable_epochs": stable,
        "param_free": f"{sum(o in PARAM_FREE for o in ops)}/{len(ops)}",
        "collapse_epochs": sum(bool(r.get("collapse_flag")) for r in epochs),
        "collapse_at_end": bool(last.get("collapse_flag")),
        "train_acc": round(last.get("train_acc", float("nan")), 3),
        "seconds": float((run / "seconds.txt").read_text()) if (run / "seconds.txt").is_file() else None,
    }


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        out(json.dumps(summarise(Path(arg))))
