"""Several seeds of one search, and a summary: mean ± std of metrics, agreement of the derived genotypes."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datanas_core.errors import ConfigError
from datanas_core.genotype import Genotype
from datanas_core.runtime._fs import atomic_write
from datanas_core.runtime._jsonutil import dumps, is_number
from datanas_core.runtime.rundir import RunDir

__all__ = ["MultiSeedSummary", "genotype_similarity", "run_seeds", "summarize_runs"]

logger = logging.getLogger(__name__)

_SKIP = {"epoch", "step", "time", "world_size", "dist_alpha_max_diff", "collapse_flag"}


def genotype_similarity(a: Genotype, b: Genotype) -> float:
    """Jaccard similarity of the kept ``(cell type, src, dst, op)`` sets (1.0: identical)."""
    sa = {(ct, e) for ct, c in a.cells.items() for e in c.edges}
    sb = {(ct, e) for ct, c in b.cells.items() for e in c.edges}
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


@dataclass
class MultiSeedSummary:
    """Per-seed rows, metric statistics and genotype agreement.

    Attributes:
        seeds: the seeds, in order.
        rows: per seed: ``{"seed", "status", "run_dir", metrics...}``.
        stats: per metric: ``{"mean", "std", "n"}`` (sample std; 0 for one value).
        identical_fraction: share of seed pairs whose genotypes are identical.
        most_common_count: how many seeds derived the most frequent genotype.
        unique_genotypes: number of distinct genotypes.
        mean_similarity: mean pairwise Jaccard similarity of the kept edges.
        per_cell_identical: per cell type, share of seed pairs with an identical cell.
    """

    seeds: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    identical_fraction: float | None = None
    most_common_count: int = 0
    unique_genotypes: int = 0
    mean_similarity: float | None = None
    per_cell_identical: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "rows": self.rows,
            "stats": self.stats,
            "identical_fraction": self.identical_fraction,
            "most_common_count": self.most_common_count,
            "unique_genotypes": self.unique_genotypes,
            "mean_similarity": self.mean_similarity,
            "per_cell_identical": self.per_cell_identical,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MultiSeedSummary:
        return cls(
            seeds=list(d.get("seeds", [])),
            rows=list(d.get("rows", [])),
            stats=dict(d.get("stats", {})),
            identical_fraction=d.get("identical_fraction"),
            most_common_count=int(d.get("most_common_count", 0)),
            unique_genotypes=int(d.get("unique_genotypes", 0)),
            mean_similarity=d.get("mean_similarity"),
            per_cell_identical=dict(d.get("per_cell_identical", {})),
        )

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        keys = list(metrics) if metrics is not None else _preferred(self.stats)
        out = [f"Seeds: {', '.join(map(str, self.seeds))}", ""]
        out.append("| seed | status | " + " | ".join(keys) + " |")
        out.append("|---|---|" + "---|" * len(keys))
        for r in self.rows:
            vals = [_fmt(r.get(k)) for k in keys]
            out.append(f"| {r['seed']} | {r.get('status', '?')} | " + " | ".join(vals) + " |")
        if self.stats:
            ms = [
                f"{self.stats[k]['mean']:.4g} ± {self.stats[k]['std']:.2g}" if k in self.stats else "-"
                for k in keys
            ]
            out.append("| **mean ± std** | | " + " | ".join(ms) + " |")
        out.append("")
        if self.identical_fraction is not None:
            n = len(self.seeds)
            out.append(
                f"Genotype agreement: {self.unique_genotypes} distinct genotype(s) over {n} seeds; "
                f"the most common "
                f"one was derived by {self.most_common_count}/{n} seeds; identical pairs "
                f"{self.identical_fraction:.0%}; mean edge Jaccard similarity {self.mean_similarity:.3f}."
            )
            if self.per_cell_identical:
                out.append(
                    "Identical pairs per cell type: "
                    + ", ".join(f"{ct} {v:.0%}" for ct, v in sorted(self.per_cell_identical.items()))
                    + "."
                )
        return "\n".join(out) + "\n"

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``multiseed.json`` and ``multiseed.md`` into ``out_dir``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        j = atomic_write(d / "multiseed.json", (dumps(self.to_dict(), indent=2) + "\n").encode())
        m = atomic_write(d / "multiseed.md", ("# Multi-seed summary\n\n" + self.to_markdown()).encode())
        return {"json": j, "md": m}


def _preferred(stats: Mapping[str, Any]) -> list[str]:
    first = [
        k
        for k in (
            "child_acc",
            "search_acc",
            "consistency_gap",
            "val_acc",
            "val_loss",
            "train_loss",
            "derived_params_M",
            "derived_flops_M",
        )
        if k in stats
    ]
    rest = sorted(k for k in stats if k not in first and not k.startswith(("collapse_", "lr", "reg")))
    return (first + rest)[:10]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _row_from_run(seed: int, run_dir: Path) -> tuple[dict[str, Any], Genotype | None]:
    rd = RunDir(run_dir, enabled=False)
    summary = rd.read_summary()
    row: dict[str, Any] = {"seed": seed, "run_dir": str(run_dir), "status": summary.get("status", "missing")}
    final = summary.get("final") or {}
    for k, v in final.items():
        if is_number(v) and k not in _SKIP:
            row[k] = float(v)
    for k, v in (summary.get("derived") or {}).items():
        if k in ("params_M", "flops_M") and is_number(v):
            row[f"derived_{k}"] = float(v)
    g = None
    gp = run_dir / RunDir.GENOTYPE
    if gp.is_file():
        g = Genotype.load(gp)
    return row, g


def summarize_runs(runs: Mapping[int, str | os.PathLike[str]]) -> MultiSeedSummary:
    """Summarise finished runs given as ``{seed: run_dir}``."""
    seeds = list(runs)
    rows, genos = [], {}
    for seed, d in runs.items():
        row, g = _row_from_run(seed, Path(d))
        rows.append(row)
        if g is not None:
            genos[seed] = g
    stats: dict[str, dict[str, float]] = {}
    keys = sorted({k for r in rows for k, v in r.items() if is_number(v) and k != "seed"})
    for k in keys:
        vals = [float(r[k]) for r in rows if is_number(r.get(k)) and math.isfinite(float(r[k]))]
        if not vals:
            continue
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        stats[k] = {"mean": mean, "std": std, "n": float(len(vals))}
    summary = MultiSeedSummary(seeds=seeds, rows=rows, stats=stats)
    gl = list(genos.values())
    if gl:
        counts = Counter(gl)
        summary.unique_genotypes = len(counts)
        summary.most_common_count = counts.most_common(1)[0][1]
        pairs = list(itertools.combinations(gl, 2))
        if pairs:
            summary.identical_fraction = sum(1 for a, b in pairs if a == b) / len(pairs)
            summary.mean_similarity = sum(genotype_similarity(a, b) for a, b in pairs) / len(pairs)
            cts = sorted(set.intersection(*(set(g.cells) for g in gl)))
            summary.per_cell_identical = {
                ct: sum(1 for a, b in pairs if a.cells[ct] == b.cells[ct]) / len(pairs) for ct in cts
            }
        else:
            summary.identical_fraction = 1.0
            summary.mean_similarity = 1.0
    return summary


def run_seeds(
    run_one: Callable[[int, Path], Any],
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    continue_on_error: bool = False,
) -> MultiSeedSummary:
    """Run ``run_one(seed, run_dir)`` for every seed, then write the summary.

    With one seed the run goes to ``out_dir`` itself and no summary files are written; with several,
    to ``out_dir/seed_<seed>``, and ``out_dir/multiseed.{json,md}`` hold the summary.

    Args:
        run_one: runs one search (typically a call to :func:`~datanas_core.runtime.run_search`).
        seeds: the seeds.
        out_dir: parent directory.
        continue_on_error: go on with the next seed when one fails (the failure is logged and the row's
            status says so); otherwise the first failure is raised.

    Raises:
        ConfigError: no seeds, or duplicates.
    """
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("run_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"duplicate seeds in {seeds}")
    out = Path(out_dir)
    dirs = {s: (out if len(seeds) == 1 else out / f"seed_{s}") for s in seeds}
    for s in seeds:
        try:
            run_one(s, dirs[s])
        except Exception:
            if not continue_on_error:
                raise
            logger.exception("seed %d failed; continuing with the next seed", s)
    summary = summarize_runs(dirs)
    if len(seeds) > 1:
        paths = summary.write(out)
        logger.info("multi-seed summary: %s\n%s", paths["md"], summary.to_markdown())
    return summary


def load_summary(out_dir: str | os.PathLike[str]) -> MultiSeedSummary:
    """Read ``multiseed.json`` written by :func:`run_seeds`."""
    return MultiSeedSummary.from_dict(
        json.loads((Path(out_dir) / "multiseed.json").read_text(encoding="utf-8"))
    )
