"""Summarise search run directories into the table of README.md: python summarise.py RUN_DIR..."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in epochs if r.get("kind") == "epoch"]
    last = epochs[-1]
    n = len(epochs)
    tail = epochs[n - max(1, n // 5) :]  # the last 20 % of the epochs
    cells = [json.dumps(r["genotype"]["cells"], sort_keys=True) for r in tail]
    stable = len(set(cells)) == 1
    nb201 = (run / "nb201.txt").read_text().strip() if (run / "nb201.txt").is_file() else "-"
    return (
        f"| {run.name} | {last['decision_entropy']:.3f} | {last['decision_margin']:.3f} | "
        f"{'yes' if last['decided'] else 'no'} | {last['collapse_param_free_share']:.2f} | "
        f"{'yes' if stable else 'no'} | {last.get('train_acc', float('nan')):.3f} | "
        f"{last.get('child_acc', float('nan')):.3f} ± {last.get('child_acc_se', float('nan')):.3f} | `{nb201}` |"
    )


if __name__ == "__main__":
    lines = [
        "| run | final entropy | median margin | decided | param-free share | cell stable (last 20 %) "
        "| train acc | child acc ± se | NB201 cell |",
        "|---|---|---|---|---|---|---|---|---|",
        *(row(Path(arg)) for arg in sys.argv[1:]),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
