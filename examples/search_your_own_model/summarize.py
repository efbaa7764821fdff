"""Print the Markdown tables of the README from the results/*.json files the examples wrote (--out)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table  # noqa: E402


def main(paths: list[str]) -> None:
    for p in paths:
        d = json.loads(Path(p).read_text())
        head = (
            f"**{Path(p).stem}**: {d['data']}, {d['train_images']} training images (half for the weights, half "
            f"for the architecture during the search), {d['test_images']} test images; search {d['search_epochs']} "
            f"epochs ({d['search_seconds']:.0f} s), retraining {d['retrain_epochs']} epochs each"
        )
        if "budget_mflops" in d:
            head += f"; budget {d['budget_mflops']:.2f} MFLOPs (range {d['range_mflops'][0]:.2f}..{d['range_mflops'][1]:.2f})"
        print(head + "\n")  # noqa: T201 - a script
        print(table(d) + "\n")  # noqa: T201
        if d.get("probabilities"):
            probs = "; ".join(f"{k}: {v}" for k, v in d["probabilities"].items())
            print(f"final probabilities ({probs})\n")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1:])
