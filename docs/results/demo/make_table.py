"""Build the demo results table from the runs copied into ``runs/`` (see README.md for the commands).

Usage: python docs/results/demo/make_table.py [DIR]   (prints the Markdown table; DIR defaults to ``runs``,
the searches at commit 72a0205; ``runs_head`` holds the re-run at commits e07daab-16f950a)

``runs/search_s{S}/``: summary.json, metrics.jsonl, genotype.json, genotypes/, seconds.txt of search seed S;
``runs/compare_r{R}_s{S}.json``: ``compare.json`` of retraining seed R with the cell of search seed S (the
five random cells of retraining seed R are the same for every S).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from summarise import summarise  # noqa: E402


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def main() -> None:
    runs = HERE / (sys.argv[1] if len(sys.argv) > 1 else "runs")
    seeds = sorted(int(p.name.split("_s")[1]) for p in runs.glob("search_s*"))
    rseeds = sorted({int(p.name.split("_r")[1].split("_")[0]) for p in runs.glob("compare_r*_s*.json")})
    out(
        "| search seed | final entropy | median margin | verdict | collapse flag at end | cell unchanged "
        "(last epochs) | param-free edges | search (s) | searched cell, test top-1 per retraining seed | "
        "mean | random median per retraining seed | searched > random median (ties count as no) |"
    )
    out("|---|---|---|---|---|---|---|---|---|---|---|---|")
    all_random: dict[int, list[float]] = {}
    means = []
    for s in seeds:
        row = summarise(runs / f"search_s{s}")
        acc, med = [], []
        for r in rseeds:
            doc = json.loads((runs / f"compare_r{r}_s{s}.json").read_text())
            acc.append(100 * doc["summary"]["searched_top1"])
            med.append(100 * doc["summary"]["random_median"])
            all_random[r] = [100 * x["top1"] for x in doc["rows"] if x["kind"] == "random"]
        mean = statistics.mean(acc)
        means.append(mean)
        wins = sum(round(a - m, 2) > 0 for a, m in zip(acc, med, strict=True))  # equal counts as a tie
        out(
            f"| {s} | {row['entropy']:.3f} | {row['margin']:.3f} | "
            f"{'decided' if row['decided'] else 'undecided'} | {'yes' if row['collapse_at_end'] else 'no'} | "
            f"{row['stable_epochs']} of {row['epochs']} | {row['param_free']} | {row['seconds']:.0f} | "
            f"{' / '.join(f'{a:.2f}' for a in acc)} | **{mean:.2f}** | {' / '.join(f'{m:.2f}' for m in med)} | "
            f"{wins} of {len(acc)} |"
        )
    pooled = [a for r in rseeds for a in all_random[r]]
    out("")
    out(
        f"Random cells: {len(pooled)} ({len(rseeds)} retraining seeds x {len(pooled) // len(rseeds)} cells), "
        f"median {statistics.median(pooled):.2f}, mean {statistics.mean(pooled):.2f}, "
        f"range {min(pooled):.2f}-{max(pooled):.2f}. Searched cells: mean over seeds {statistics.mean(means):.2f}."
    )


if __name__ == "__main__":
    main()
