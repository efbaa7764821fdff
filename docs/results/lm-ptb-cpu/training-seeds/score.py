"""Summarise the comparisons in this folder: python3 score.py (test perplexity, lower is better)."""

import json
import statistics as st
import sys
from pathlib import Path

HERE = Path(__file__).parent


def load(variant: str, s: int, t: int) -> dict:
    return json.loads((HERE / f"comparison_{variant}_seed{s}_train{t}.json").read_text())


# the random cells and the LSTM were trained in the comparisons of search seed 0 of `preset_data`
rand: dict[str, list[float]] = {}
for t in (0, 1, 2):
    for r in load("preset_data", 0, t)["rows"]:
        if r["name"].startswith("random_") or r["name"] == "lstm":
            rand.setdefault(r["name"], []).append(r["test_ppl"])
lstm = rand.pop("lstm")
every = [v for vals in rand.values() for v in vals]
median15 = st.median(every)
median_means = st.median(st.mean(v) for v in rand.values())
sys.stdout.write(
    f"random cells (training seeds 0/1/2): { {k: [round(x, 2) for x in v] for k, v in rand.items()} }\n"
)
sys.stdout.write(
    f"median of the 15 random results {median15:.2f}; of the 5 cells' means {median_means:.2f}\n"
)
sys.stdout.write(f"LSTM {[round(x, 2) for x in lstm]} mean {st.mean(lstm):.2f}\n")
for variant in ("default", "preset_data"):
    for s in (0, 1, 2):
        vals = [load(variant, s, t)["rows"][0]["test_ppl"] for t in (0, 1, 2)]
        m = st.mean(vals)
        verdict = "below both medians" if m < min(median15, median_means) else "not below both"
        sys.stdout.write(
            f"{variant:12s} search seed {s}: {[round(v, 2) for v in vals]} mean {m:.2f} ({verdict})\n"
        )
