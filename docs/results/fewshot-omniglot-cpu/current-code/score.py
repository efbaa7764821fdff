"""Summarise the files in this folder: python3 score.py (meta-test accuracy in %, higher is better)."""

import json
import statistics as st
import sys
from pathlib import Path

HERE = Path(__file__).parent


def accuracy(doc: dict, i: int = 0) -> float:
    return doc["results"][i]["meta_test"]["mean"] * 100


for s in (0, 1, 2):
    searched, random, medians = [], [], []
    for t in (0, 1, 2):
        searched.append(accuracy(json.loads((HERE / f"results_default_seed{s}_train{t}.json").read_text())))
        doc = json.loads((HERE / f"results_random_matched_seed{s}_train{t}.json").read_text())
        vals = [accuracy(doc, i) for i in range(len(doc["results"]))]
        random += vals
        medians.append(st.median(vals))
    mean, median = st.mean(searched), st.median(random)
    sys.stdout.write(
        f"search seed {s}: searched {[round(a, 2) for a in searched]} mean {mean:.2f} | random medians per "
        f"training seed {[round(m, 2) for m in medians]} | median of {len(random)} random {median:.2f} -> "
        f"{'above' if mean > median else 'not above'}\n"
    )
